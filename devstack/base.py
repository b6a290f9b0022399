"""The Service protocol and the process helpers every local service shares.

Services run as plain detached processes (no systemd on the dev boxes): each keeps its config,
data, logs and pid file under ``<stack>/<service>/`` so the whole stack can be wiped by removing
one directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DevstackError",
    "InstallError",
    "ServiceStartError",
    "ServiceStopError",
    "Service",
    "ServiceStatus",
    "ensure_apt_packages",
    "PidFileService",
    "pid_alive",
    "process_cmdline",
    "read_pid",
    "run_command",
    "service_env",
    "start_detached",
    "port_open",
    "wait_for_port",
    "wait_for_port_free",
    "wait_for_exit",
    "terminate",
    "tail",
]

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
# How long an apt-get of ours waits while another process holds the package locks.
APT_LOCK_TIMEOUT_S = 600.0


class DevstackError(RuntimeError):
    """Base class of every local-stack failure; the message says what to look at."""


class InstallError(DevstackError):
    """A service's binaries are missing and could not be installed."""


class ServiceStartError(DevstackError):
    """A service did not come up (the message includes the tail of its log)."""


class ServiceStopError(DevstackError):
    """A service did not stop in time."""


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``python -m devstack status``."""

    name: str
    state: str  # "running" | "stopped"
    endpoint: str
    pid: int | None
    data_dir: Path
    note: str = ""

    @property
    def running(self) -> bool:
        """True when the service process is alive."""
        return self.state == "running"

    def line(self) -> str:
        """Human status line: name, state, endpoint, pid and data dir."""
        pid = str(self.pid) if self.pid else "-"
        note = f"  ({self.note})" if self.note else ""
        return f"{self.name:<8} {self.state:<8} {self.endpoint:<28} pid={pid:<8} {self.data_dir}{note}"


@runtime_checkable
class Service(Protocol):
    """What the stack needs from one local service; add a module implementing it to the registry."""

    name: str

    def install(self) -> None:
        """Install missing binaries (apt-get for system packages)."""

    def init(self) -> None:
        """First-time setup of the data directory; a no-op once done."""

    def start(self) -> None:
        """Start the service detached and wait until it accepts connections; bootstrap users."""

    def stop(self) -> None:
        """Stop the service cleanly and wait for the process to exit; a no-op when stopped."""

    def is_running(self) -> bool:
        """True when the service process is alive (stale pid files count as stopped)."""

    def describe(self) -> ServiceStatus:
        """Status row with endpoint URL and pid."""


# --------------------------------------------------------------------------- commands


PORT_RELEASE_TIMEOUT_S = 10.0
"""How long a start waits for a killed predecessor's listening socket to close."""


class PidFileService:
    """A service that is one process named by a pid file: which live process is ours, its clean
    stop, and its status row.

    Subclasses set `name`, `process` (how errors name the process), `scheme` (of the endpoint URL),
    `pid_file`, `stop_timeout`, `data_dir` (shown in the status row) and `settings`, and say where
    they listen (`_port`) and why a stopped one may not start (`_stopped_note`, e.g. not installed
    yet). By default a live pid is ours when its command line names `process` (`_owns`), and the
    endpoint is ``scheme://host:port`` (`_endpoint`).
    """

    name: str
    process: str
    scheme: str
    pid_file: Path
    data_dir: Path
    stop_timeout: float
    settings: Any

    def _owns(self, cmdline: str) -> bool:
        """True when `cmdline` (a live pid's) is this service's process, not a recycled pid."""
        return self.process in cmdline

    def _port(self) -> int:
        raise NotImplementedError

    def _endpoint(self) -> str:
        return f"{self.scheme}://{self.settings.host}:{self._port()}"

    def _stopped_note(self) -> str:
        return ""

    def _claim_port(self) -> None:
        """Raise unless this service's port is free, waiting out a just-killed predecessor.

        After a kill -9 the old process's main thread is a zombie (its pid counts as dead) while its
        other threads may still hold the listening socket for a moment.
        """
        host, port = self.settings.host, self._port()
        if not wait_for_port_free(host, port, timeout=PORT_RELEASE_TIMEOUT_S):
            raise ServiceStartError(f"port {host}:{port} is already used by another process")

    def _pid(self) -> int | None:
        pid = read_pid(self.pid_file)
        if pid is not None and pid_alive(pid) and self._owns(process_cmdline(pid)):
            return pid
        return None

    def stop(self) -> None:
        """SIGTERM the process (a clean shutdown), SIGKILL after the stop timeout; a no-op when stopped."""
        pid = self._pid()
        if pid is not None:
            terminate(pid, timeout=self.stop_timeout, what=self.process)
        self.pid_file.unlink(missing_ok=True)

    def is_running(self) -> bool:
        """True when the pid file names a live process of this service and stack dir."""
        return self._pid() is not None

    def describe(self) -> ServiceStatus:
        """Status row: endpoint, pid and data dir; notes a port taken by another process."""
        pid = self._pid()
        note = ""
        if pid is None and port_open(self.settings.host, self._port()):
            note = "port used by another process"
        elif pid is None:
            note = self._stopped_note()
        return ServiceStatus(
            self.name, "running" if pid else "stopped", self._endpoint(), pid, self.data_dir, note
        )


def service_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for service processes: the caller's, but with TZ pinned to UTC.

    Tests set a hostile TZ in their own process on purpose; the servers must not inherit it, or
    MariaDB's SYSTEM time zone and PostgreSQL's initdb time zone would depend on who started them.
    Aurora defaults to UTC too.
    """
    env = dict(os.environ)
    env["TZ"] = "UTC"
    env.setdefault("LANG", "C.UTF-8")
    env.pop("PGHOST", None)
    env.pop("PGPORT", None)
    if extra:
        env.update(extra)
    return env


def run_command(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    input_text: str | None = None,
    timeout: float = 300,
    error: type[DevstackError] = DevstackError,
    what: str | None = None,
    new_session: bool = False,
) -> str:
    """Run ``cmd`` and return stdout; raise ``error`` with stderr on a non-zero exit.

    SQL with passwords goes through ``input_text`` (stdin), never argv, so it does not show in ps.
    """
    args = [str(c) for c in cmd]
    label = what or " ".join(args[:3])
    try:
        proc = subprocess.run(
            args,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=service_env(),
            start_new_session=new_session,
            check=False,
        )
    except FileNotFoundError as exc:
        raise error(f"{label}: command not found ({args[0]})") from exc
    except subprocess.TimeoutExpired as exc:
        raise error(f"{label}: timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise error(f"{label} failed (exit {proc.returncode}): {detail}")
    return proc.stdout


_apt_updated = False
_DETACHED: list[subprocess.Popen[bytes]] = []


def ensure_apt_packages(packages: Sequence[str], missing: Sequence[str]) -> None:
    """Install Debian ``packages`` when any path in ``missing`` is absent.

    ``apt-get update`` runs once per process. A policy-rc.d that exits 101 keeps apt from
    starting the packaged services (we run private instances on our own ports instead). While
    another process holds the package locks (unattended-upgrades on a fresh machine, say), each
    command waits for them, up to ``APT_LOCK_TIMEOUT_S`` and saying whom it waits for.
    """
    global _apt_updated
    if not missing:
        return
    if os.geteuid() != 0:
        raise InstallError(
            f"missing {', '.join(missing)}; installing {' '.join(packages)} needs root "
            f"(run: apt-get install -y {' '.join(packages)})"
        )
    if shutil.which("apt-get") is None:
        raise InstallError(f"missing {', '.join(missing)} and apt-get is not available")
    # Imported here: devstack.package_lock builds on this module's InstallError.
    from devstack.package_lock import _say

    env = service_env({"DEBIAN_FRONTEND": "noninteractive"})
    _say(f"installing {' '.join(packages)} with apt-get (a minute or two)")
    backup: bytes | None = POLICY_RC_D.read_bytes() if POLICY_RC_D.exists() else None
    POLICY_RC_D.write_text("#!/bin/sh\n# devstack: do not start packaged services during install\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        if not _apt_updated:
            _apt(["apt-get", "update", "-q"], env)
            _apt_updated = True
        _apt(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env)
    finally:
        if backup is None:
            POLICY_RC_D.unlink(missing_ok=True)
        else:
            POLICY_RC_D.write_bytes(backup)


def _apt(cmd: list[str], env: dict[str, str]) -> None:
    # Imported here: devstack.package_lock builds on this module's InstallError.
    from devstack.package_lock import SYSTEM_LOCKS, run_apt

    proc = run_apt(cmd, locks=SYSTEM_LOCKS, lock_timeout=APT_LOCK_TIMEOUT_S, env=env)
    if proc.returncode != 0:
        raise InstallError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


# --------------------------------------------------------------------------- processes


def read_pid(path: Path) -> int | None:
    """Return the pid stored in ``path`` (first line), or None when absent or garbage."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, PermissionError):
        return None
    return int(first) if first.isdigit() else None


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Field 3 (after the parenthesised command) is the state; Z = zombie, X = dead.
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def process_cmdline(pid: int) -> str:
    """Command line of ``pid`` as one string ('' when unknown) — used to reject recycled pids."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, *, timeout: float, pid: int | None = None, what: str = "") -> None:
    """Wait until host:port accepts connections; fail early if ``pid`` dies meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if pid is not None and not pid_alive(pid):
            raise ServiceStartError(f"{what or 'process'} (pid {pid}) exited before opening {host}:{port}")
        time.sleep(0.2)
    raise ServiceStartError(f"{what or 'service'} did not open {host}:{port} within {timeout:.0f}s")


def wait_for_port_free(host: str, port: int, *, timeout: float) -> bool:
    """True once host:port is free; False when it stays taken for ``timeout`` seconds.

    Right after a kill -9 the process's main thread is a zombie (so the pid counts as dead) while
    its other threads still hold the listening socket for a moment.
    """
    deadline = time.monotonic() + timeout
    while port_open(host, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; True when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        _reap(pid)
        time.sleep(0.1)
    return not pid_alive(pid)


def _reap(pid: int) -> None:
    # A child we started ourselves in this process would stay a zombie until reaped.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def terminate(pid: int, *, timeout: float, what: str) -> None:
    """SIGTERM ``pid`` and wait; SIGKILL as a last resort, then raise if it is still there."""
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_for_exit(pid, timeout):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if not wait_for_exit(pid, 10):
        raise ServiceStopError(f"{what} (pid {pid}) survived SIGTERM for {timeout:.0f}s and SIGKILL")


def start_detached(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``cmd`` in its own session (setsid), output appended to ``log_path``; return its pid.

    A new session and no inherited stdin/terminal mean the service outlives the calling process
    (a pytest run, a shell) and does not get its SIGINT/SIGHUP.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else service_env(),
            start_new_session=True,
            close_fds=True,
        )
    # Keep the Popen object alive so its __del__ does not warn "subprocess is still running".
    _DETACHED.append(proc)
    return proc.pid


def tail(path: Path, lines: int = 15) -> str:
    """Last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.rstrip().splitlines()[-lines:])
