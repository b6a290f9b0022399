"""The Debian package manager's locks: who holds one, and running apt once they are free.

apt and dpkg lock with ``fcntl`` record locks (apt-pkg's ``GetLock``, dpkg's ``lock-frontend``),
so ``F_GETLK`` names the holding process without taking the lock. A machine's first minutes
often have ``unattended-upgrades`` or a provisioning ``apt-get`` holding them; apt itself gives up
at once unless told to wait (``-o DPkg::Lock::Timeout=N``, apt >= 1.9.11, which covers the dpkg
locks but not the lists lock ``apt-get update`` takes), so the wait is done here, bounded.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from devstack.base import InstallError

__all__ = ["SYSTEM_LOCKS", "lock_holder", "run_apt", "wait_for_locks"]

# The system's apt and dpkg locks (Debian's default Dir::State, Dir::Cache and dpkg admin dir).
SYSTEM_LOCKS = (
    Path("/var/lib/dpkg/lock-frontend"),
    Path("/var/lib/dpkg/lock"),
    Path("/var/lib/apt/lists/lock"),
    Path("/var/cache/apt/archives/lock"),
)
POLL_S = 1.0
_LOCK_MESSAGE = re.compile(r"Could not get lock .*|Unable to lock .*|Unable to acquire the dpkg .*")
# struct flock on Linux with a 64-bit off_t: short l_type, l_whence; off_t l_start, l_len; pid_t l_pid.
_FLOCK = "hhqqi4x"


def _say(message: str) -> None:
    """Tell the user what apt is doing (stderr: stdout is the status table)."""
    print(f"devstack apt: {message}", file=sys.stderr, flush=True)


def lock_holder(path: Path) -> int | None:
    """The pid of the process holding a write-conflicting record lock on `path` (None: free or absent).

    An open file description lock (``F_OFD_SETLK``) has no owning process; it is reported as -1.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return None
    finally:
        os.close(fd)  # we hold no lock on it, so closing releases nothing
    lock_type, _, _, _, pid = struct.unpack(_FLOCK, answer)
    return None if lock_type == fcntl.F_UNLCK else pid


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def wait_for_locks(
    locks: Sequence[Path],
    timeout: float,
    *,
    say: Callable[[str], None] = _say,
) -> float:
    """Wait until no process holds any of `locks`, at most `timeout` seconds; the seconds left.

    Says once per holder whom it waits for; raises :class:`InstallError` naming the holder when
    the time is up.
    """
    deadline = time.monotonic() + timeout
    announced: set[tuple[Path, int]] = set()
    while True:
        held = [(path, pid) for path in locks if (pid := lock_holder(path)) is not None]
        left = deadline - time.monotonic()
        if not held:
            return max(0.0, left)
        path, pid = held[0]
        holder = f"PID {pid} ({_process_name(pid)})" if pid > 0 else "another process"
        if left <= 0:
            raise InstallError(
                f"the package lock {path} is still held by {holder} after {timeout:.0f} s; "
                "let that finish (or stop it) and run `lakehouse stack up` again"
            )
        if (path, pid) not in announced:
            say(f"waiting up to {left:.0f} s for the package lock {path} held by {holder}")
            announced.add((path, pid))
        time.sleep(min(POLL_S, left))


def run_apt(
    cmd: Sequence[str],
    *,
    locks: Sequence[Path],
    lock_timeout: float,
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = 1800.0,
    say: Callable[[str], None] = _say,
) -> subprocess.CompletedProcess[str]:
    """Run the apt command `cmd` once `locks` are free, waiting for them at most `lock_timeout` s.

    apt is told to wait for the dpkg locks itself for the time left (``DPkg::Lock::Timeout``),
    which closes the gap between our look and its attempt; a run that still lost the race for
    a lock ("Could not get lock ...") is retried within the same bound. Other failures are
    returned as they are, for the caller to report.
    """
    deadline = time.monotonic() + lock_timeout
    while True:
        left = wait_for_locks(locks, max(0.0, deadline - time.monotonic()), say=say)
        full = [cmd[0], "-o", f"DPkg::Lock::Timeout={int(left)}", *cmd[1:]]
        proc = subprocess.run(
            full, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        locked = _LOCK_MESSAGE.search(proc.stdout + proc.stderr)
        if proc.returncode == 0 or locked is None:
            return proc
        if time.monotonic() >= deadline:
            raise InstallError(
                f"{' '.join(cmd)}: the package lock stayed busy for {lock_timeout:.0f} s "
                f"({locked.group(0).strip()})"
            )
        say(f"{cmd[0]} lost the race for a lock ({locked.group(0).strip()}); waiting and trying again")
        time.sleep(POLL_S)
