"""Oracle MySQL 9.7 as a private ``mysqld`` with GTIDs and binlog settings for CDC (Aurora MySQL 3 stand-in).

Debian bookworm ships no MySQL server and the mirror no longer carries 8.0 or 8.4; Debian sid has
``mysql-server-core`` 9.7, the LTS after 8.4, which speaks the same binlog and GTID protocol as
Aurora MySQL 3. ``install`` fetches the dependency closure of ``mysql-server-core`` and
``mysql-client-core`` from sid on the mirror the system's apt sources name, with a private apt
configuration under ``<stack>/mysql8/apt`` (the system's apt state is never touched), unpacks the
.debs with ``dpkg -x`` into ``<stack>/mysql8/root`` and writes a stamp. sid's binaries need a newer
glibc and libstdc++ than bookworm's, so every one of them runs under sid's own dynamic loader
(``root/usr/lib/<triplet>/ld-linux*.so --library-path root/usr/lib/<triplet> <binary>``): that is
why ``/proc/<pid>/exe`` is the loader and why my.cnf names every directory explicitly.
Data, binlogs, logs, pid file and socket live under ``<stack>/mysql8/`` too.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from devstack.base import (
    DevstackError,
    InstallError,
    PidFileService,
    ServiceStartError,
    run_command,
    start_detached,
    tail,
    terminate,
    wait_for_port,
)
from devstack.private_apt import AptSource, PrivateApt, system_mirror
from devstack.settings import StackSettings
from devstack.tls import ensure_certificates, install_server_files

__all__ = ["MySQL8Service"]

SUITE = "sid"
PACKAGES = ("mysql-server-core", "mysql-client-core")
# perl is needed only by the helper scripts mysqld_safe and mysqldumpslow, never by mysqld.
_UNNEEDED = re.compile(r"^(perl|perl-base|perl-modules-.*|libperl.*)$")
# The client tools worth keeping; the packages bring some twenty more of 6-8 MB each (~100 MB).
_KEPT_TOOLS = frozenset({"mysql", "mysqladmin", "mysqlbinlog", "mysqldump", "mysql_tzinfo_to_sql", "perror"})
# platform.machine() -> (Debian architecture, multiarch triplet, dynamic loader of sid's libc6).
_ARCHES = {
    "x86_64": ("amd64", "x86_64-linux-gnu", "ld-linux-x86-64.so.2"),
    "aarch64": ("arm64", "aarch64-linux-gnu", "ld-linux-aarch64.so.1"),
}
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 120.0
INIT_TIMEOUT_S = 300.0
# sockaddr_un.sun_path holds 108 bytes; longer stack paths put the socket in the temp dir.
MAX_SOCKET_PATH = 100

# What CDC needs on MySQL 8.0 / Aurora MySQL 3 and on 9.7 alike: SELECT for snapshots, RELOAD for
# FLUSH, REPLICATION CLIENT for SHOW BINARY LOG STATUS (SHOW MASTER STATUS on 8.0) and SHOW BINARY
# LOGS, REPLICATION SLAVE for the GTID binlog dump. @@gtid_executed/@@gtid_purged need nothing.
CDC_GRANTS = "SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT"


def _progress(message: str) -> None:
    # The first install takes a while; say what is happening (stderr: stdout is the status table).
    print(f"devstack mysql8: {message}", file=sys.stderr, flush=True)


def _sql_str(value: str) -> str:
    """Quote a string literal for MySQL (backslash and quote escaped; NO_BACKSLASH_ESCAPES is off)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MySQL8Service(PidFileService):
    """Private MySQL 9.7 under ``<stack>/mysql8`` listening on 127.0.0.1:<mysql8_port>."""

    name = "mysql8"
    process = "mysqld"
    scheme = "mysql"
    stop_timeout = STOP_TIMEOUT_S

    def __init__(self, settings: StackSettings) -> None:
        """Bind the service to the stack settings; nothing is touched until a method runs."""
        self.settings = settings
        self.base = settings.service_dir(self.name)
        self.root = self.base / "root"  # the unpacked sid packages
        self.apt_dir = self.base / "apt"
        self.data_dir = self.base / "data"
        self.binlog_dir = self.base / "binlog"
        self.log_dir = self.base / "log"
        self.run_dir = self.base / "run"
        self.tmp_dir = self.base / "tmp"
        self.cnf = self.base / "my.cnf"
        self.stamp = self.base / "installed.stamp"
        self.initialized = self.base / "initialized.stamp"
        self.install_log = self.base / "install.log"
        self.pid_file = self.run_dir / "mysqld.pid"
        self.error_log = self.log_dir / "error.log"
        self.out_log = self.log_dir / "mysqld.out"
        self.tls_dir = self.base / "tls"
        machine = platform.machine()
        if machine not in _ARCHES:
            machine = "x86_64"  # install() refuses it with a clear message
        self.arch, triplet, loader = _ARCHES[machine]
        self.lib_dir = self.root / "usr" / "lib" / triplet
        self.loader = self.lib_dir / loader
        self.mysqld = self.root / "usr" / "sbin" / "mysqld"
        self.client = self.root / "usr" / "bin" / "mysql"

    # ------------------------------------------------------------------ protocol

    def install(self) -> None:
        """Fetch MySQL from Debian sid with a private apt, unpack it and stamp it; a no-op once stamped."""
        if self.is_installed():
            return
        if platform.machine() not in _ARCHES:
            raise InstallError(f"mysql8 runs on {', '.join(_ARCHES)} only, not {platform.machine()}")
        for tool in ("apt-get", "apt-cache", "apt-config", "dpkg"):
            if shutil.which(tool) is None:
                raise InstallError(
                    f"`{tool}` not found: the MySQL 8 family server is installed from Debian packages"
                )
        started = time.monotonic()
        self.base.mkdir(parents=True, exist_ok=True)
        self.stamp.unlink(missing_ok=True)
        self.install_log.write_text("")
        if self.settings.mysql8_mirror:
            mirror = AptSource(self.settings.mysql8_mirror, (SUITE,), None)
        else:
            mirror = system_mirror()
        shutil.rmtree(self.apt_dir, ignore_errors=True)
        apt = PrivateApt(self.apt_dir, mirror, self.arch, self.install_log, suite=SUITE)
        _progress(
            f"1/4 apt-get update: Debian {SUITE} from {mirror.uri} (private lists under {self.apt_dir})"
        )
        apt.update()
        packages = self._closure(apt)
        records = apt.run("apt-cache", ["show", "--no-all-versions", *packages])
        size = sum(int(n) for n in re.findall(r"^Size: (\d+)", records, re.MULTILINE))
        _progress(f"2/4 downloading {len(packages)} packages ({size / 1e6:.1f} MB)")
        debs = self.base / "debs"
        shutil.rmtree(debs, ignore_errors=True)
        debs.mkdir()
        apt.run("apt-get", ["download", *packages], cwd=debs)
        self._unpack(sorted(debs.glob("*.deb")))
        shutil.rmtree(debs, ignore_errors=True)
        shutil.rmtree(self.apt_dir, ignore_errors=True)  # lists and cache: ~100 MB, not needed again
        version = self._run_bin(self.mysqld, ["--version"], what="mysqld --version").strip()
        self.stamp.write_text(f"{version}\n")
        _progress(
            f"installed {version.split(' Ver ', 1)[-1]} in {time.monotonic() - started:.1f}s, "
            f"{_tree_size(self.root) / 1e6:.0f} MB in {self.root}"
        )

    def init(self) -> None:
        """Write my.cnf and initialise the data directory once (an interrupted attempt is redone)."""
        for path in (self.log_dir, self.binlog_dir):
            path.mkdir(parents=True, exist_ok=True)
        self._make_private_dirs()
        self._write_config()
        if self.initialized.is_file() and (self.data_dir / "mysql.ibd").is_file():
            return
        # Nothing worth keeping: no system tables, or binlogs of a server that is gone.
        self.initialized.unlink(missing_ok=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.binlog_dir, ignore_errors=True)
        self.binlog_dir.mkdir()
        init_file = self.run_dir / "init.sql"
        # sql_log_bin=0 first, so the accounts never reach the binlog and gtid_executed starts empty.
        init_file.write_text(self._users_sql())
        init_file.chmod(0o600)
        _progress(f"initialising {self.data_dir}")
        try:
            self._run_bin(
                self.mysqld,
                [
                    f"--defaults-file={self.cnf}",
                    *self._user_arg(),
                    "--initialize-insecure",
                    f"--init-file={init_file}",
                ],
                what="mysqld --initialize-insecure",
                timeout=INIT_TIMEOUT_S,
                error=ServiceStartError,
            )
        except DevstackError as exc:
            raise ServiceStartError(
                f"{self._redact(str(exc))}\n--- {self.error_log} ---\n{tail(self.error_log)}"
            ) from None
        finally:
            init_file.unlink(missing_ok=True)
        self.initialized.write_text("")

    def start(self) -> None:
        """Start mysqld detached under sid's loader, wait for the port, then (re)apply users and grants."""
        if self.is_running():
            return
        self.pid_file.unlink(missing_ok=True)  # stale: the process is gone
        host, port = self.settings.host, self.settings.mysql8_port
        self._claim_port()
        self._make_private_dirs()
        self._write_config()
        # A kill -9 leaves the socket and its lock file (holding the dead pid) behind.
        for stale in (self.socket, Path(f"{self.socket}.lock")):
            stale.unlink(missing_ok=True)
        command = [*self._loader_prefix(), self.mysqld, f"--defaults-file={self.cnf}", *self._user_arg()]
        pid = start_detached(command, log_path=self.out_log, cwd=self.base)
        try:
            wait_for_port(host, port, timeout=START_TIMEOUT_S, pid=pid, what="mysqld")
            self._bootstrap_users()
        except DevstackError as exc:
            terminate(pid, timeout=STOP_TIMEOUT_S, what="mysqld")
            raise ServiceStartError(f"{exc}\n--- {self.error_log} ---\n{tail(self.error_log)}") from exc

    def tls_missing(self) -> bool:
        """True when the running server was started from a config without the stack's TLS files
        (it then serves the self-signed certificate of --initialize): restart it."""
        return self.is_running() and "ssl_cert=" not in self.cnf.read_text()

    # ------------------------------------------------------------------ install

    def is_installed(self) -> bool:
        """True when the stamp is written and the loader and mysqld are in place."""
        return self.stamp.is_file() and self.loader.exists() and self.mysqld.is_file()

    def _closure(self, apt: PrivateApt) -> list[str]:
        """The packages to fetch: every dependency of PACKAGES inside the suite, perl left out."""
        listing = apt.run(
            "apt-cache",
            [
                "depends",
                "--recurse",
                "--no-recommends",
                "--no-suggests",
                "--no-conflicts",
                "--no-breaks",
                "--no-replaces",
                "--no-enhances",
                *PACKAGES,
            ],
        )
        # Top-level lines are package names; indented ones are relations, <name> virtual packages.
        names = {line.strip() for line in listing.splitlines() if line and not line[0].isspace()}
        packages = sorted(
            n for n in names if not n.startswith("<") and not _UNNEEDED.match(n) and " " not in n
        )
        if not set(PACKAGES) <= set(packages):
            raise InstallError(
                f"Debian {SUITE} on this mirror has no {' '.join(PACKAGES)} (see {self.install_log}); "
                "point LAKEHOUSE_MYSQL8_MIRROR at a Debian mirror that carries sid"
            )
        return packages

    def _unpack(self, debs: list[Path]) -> None:
        """dpkg -x every .deb into a fresh tree, swap it in, and check that mysqld's libraries resolve."""
        _progress(f"3/4 unpacking {len(debs)} packages into {self.root}")
        partial = self.base / "root.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        for deb in debs:
            run_command(["dpkg", "-x", deb, partial], what=f"dpkg -x {deb.name}", error=InstallError)
        if self.root.is_symlink():
            self.root.unlink()
        shutil.rmtree(self.root, ignore_errors=True)
        partial.rename(self.root)
        for tool in (self.root / "usr" / "bin").iterdir():
            if tool.name not in _KEPT_TOOLS and not tool.is_dir():
                tool.unlink()
        if not (self.loader.exists() and self.mysqld.is_file()):
            raise InstallError(f"the unpacked packages lack {self.loader} or {self.mysqld}")
        _progress("4/4 checking that mysqld's libraries resolve inside the tree")
        listing = run_command(
            [*self._loader_prefix(), "--list", self.mysqld], what="ld.so --list mysqld", error=InstallError
        )
        missing = [line.strip() for line in listing.splitlines() if "not found" in line]
        if missing:
            raise InstallError(f"mysqld needs libraries the packages did not bring: {'; '.join(missing)}")

    # ------------------------------------------------------------------ running binaries

    def _loader_prefix(self) -> list[str | Path]:
        return [self.loader, "--library-path", self.lib_dir]

    def _run_bin(
        self,
        binary: Path,
        args: Sequence[str | Path],
        *,
        what: str,
        input_text: str | None = None,
        timeout: float = 60,
        error: type[DevstackError] = InstallError,
    ) -> str:
        """Run one of sid's binaries under sid's loader and return its stdout."""
        command = [*self._loader_prefix(), binary, *args]
        return run_command(command, input_text=input_text, timeout=timeout, error=error, what=what)

    @staticmethod
    def _user_arg() -> list[str]:
        # mysqld refuses to run as root unless told to; CI and the dev boxes run the stack as root.
        return ["--user=root"] if os.geteuid() == 0 else []

    # ------------------------------------------------------------------ config

    @property
    def socket(self) -> Path:
        """The Unix socket: under run/ unless that path is too long for sun_path, then in a private temp dir."""
        here = self.run_dir / "mysqld.sock"
        if len(str(here)) <= MAX_SOCKET_PATH:
            return here
        return (
            Path(tempfile.gettempdir())
            / f"lakehouse-mysql8-{os.geteuid()}-{self.settings.mysql8_port}"
            / "mysqld.sock"
        )

    def _make_private_dirs(self) -> None:
        # root@localhost has no password and is reachable only through the socket (skip-name-resolve:
        # 'localhost' never matches a TCP client), so the socket's folder is the owner's alone.
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.chmod(0o750)
        for folder in {self.run_dir, self.socket.parent}:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = folder.lstat()
            if folder.is_symlink() or info.st_uid != os.geteuid():
                raise ServiceStartError(f"mysql8: {folder} must be a folder owned by uid {os.geteuid()}")
            folder.chmod(0o700)

    def _write_config(self) -> None:
        s = self.settings
        share = self.root / "usr" / "share" / "mysql"
        # The stack's CA instead of the self-signed files --initialize makes; plain connections
        # stay allowed (require_secure_transport is off). mysqld runs as the caller: no chown.
        ca, cert, key = install_server_files(ensure_certificates(s.stack_dir), self.tls_dir, None)
        # Every directory is explicit: mysqld runs under the loader, so it cannot find its basedir
        # from /proc/self/exe. A private defaults file also skips Debian's conf.d.
        cnf = f"""# Written by devstack on every start; edit devstack/mysql8.py instead.
[client]
port={s.mysql8_port}
socket={self.socket}

[mysqld]
basedir={self.root / "usr"}
plugin_dir={self.root / "usr" / "lib" / "mysql" / "plugin"}
lc_messages_dir={share}
character_sets_dir={share / "charsets"}
datadir={self.data_dir}
tmpdir={self.tmp_dir}
secure_file_priv={self.tmp_dir}
socket={self.socket}
pid_file={self.pid_file}
log_error={self.error_log}
port={s.mysql8_port}
bind_address={s.host}
mysqlx=OFF
skip-name-resolve
character-set-server=utf8mb4
default-time-zone=+00:00
server_id=1
log_bin={self.binlog_dir / "binlog"}
gtid_mode=ON
enforce_gtid_consistency=ON
binlog_format=ROW
binlog_row_image=FULL
binlog_row_metadata=FULL
binlog_expire_logs_seconds=604800
innodb_buffer_pool_size=256M
max_connections=300
ssl_ca={ca}
ssl_cert={cert}
ssl_key={key}
"""
        self.cnf.write_text(cnf)
        self.cnf.chmod(0o644)

    # ------------------------------------------------------------------ users

    def _users_sql(self) -> str:
        """Create or refresh the admin and CDC accounts (caching_sha2_password), outside the binlog."""
        s = self.settings
        admin, cdc = s.admin_user, s.cdc_user
        admin_pw = _sql_str(s.admin_password.get_secret_value())
        cdc_pw = _sql_str(s.cdc_password.get_secret_value())
        auth = "IDENTIFIED WITH caching_sha2_password BY"
        return f"""SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS '{admin}'@'%' {auth} {admin_pw};
ALTER USER '{admin}'@'%' {auth} {admin_pw};
GRANT ALL PRIVILEGES ON *.* TO '{admin}'@'%' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS '{cdc}'@'%' {auth} {cdc_pw};
ALTER USER '{cdc}'@'%' {auth} {cdc_pw};
REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{cdc}'@'%';
GRANT {CDC_GRANTS} ON *.* TO '{cdc}'@'%';
"""

    def _bootstrap_users(self) -> None:
        """Apply :meth:`_users_sql` as root over the socket; retried while the server finishes starting."""
        client_args = [f"--socket={self.socket}", "-uroot", "--batch", "--skip-column-names"]
        deadline = time.monotonic() + 30
        while True:
            try:
                self._run_bin(
                    self.client,
                    ["--no-defaults", *client_args],
                    input_text=self._users_sql(),
                    what="mysql8: create users",
                    error=ServiceStartError,
                )
                return
            except DevstackError as exc:
                # Never echo the SQL's passwords (a syntax error quotes the text near it).
                if time.monotonic() > deadline or "ERROR 2002" not in str(exc):
                    raise ServiceStartError(self._redact(str(exc))) from None
                time.sleep(0.5)

    def _redact(self, text: str) -> str:
        for secret in (self.settings.admin_password, self.settings.cdc_password):
            value = secret.get_secret_value()
            text = text.replace(_sql_str(value)[1:-1], "***").replace(value, "***")
        return text

    # ------------------------------------------------------------------ process

    def _owns(self, cmdline: str) -> bool:
        # /proc/<pid>/exe is sid's ld-linux, so the command line tells: our mysqld, our my.cnf.
        cmdline = f"{cmdline} "
        return f"{self.mysqld} " in cmdline and f"--defaults-file={self.cnf} " in cmdline

    def _port(self) -> int:
        return self.settings.mysql8_port

    def _stopped_note(self) -> str:
        return "" if self.is_installed() else f"not installed; up fetches it from Debian {SUITE} (~60 MB)"


def _tree_size(root: Path) -> int:
    """Bytes in the regular files under ``root`` (symlinks not followed)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total
