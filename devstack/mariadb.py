"""MariaDB 10.11 as a private ``mariadbd`` with binlog settings for CDC (Aurora MySQL stand-in)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from devstack.base import (
    DevstackError,
    PidFileService,
    ServiceStartError,
    ensure_apt_packages,
    run_command,
    start_detached,
    tail,
    wait_for_port,
)
from devstack.settings import StackSettings
from devstack.tls import ensure_certificates, install_server_files

__all__ = ["MariaDBService"]

MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")
CLIENT = Path("/usr/bin/mariadb")
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 120.0

# Grants from the project brief; BINLOG MONITOR is MariaDB's name for SHOW BINLOG STATUS rights.
CDC_GRANTS = "SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR"


def _sql_str(value: str) -> str:
    """Quote a string literal for MariaDB (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MariaDBService(PidFileService):
    """Private MariaDB server under ``<stack>/mariadb`` listening on 127.0.0.1:<mariadb_port>."""

    name = "mariadb"
    process = "mariadbd"
    scheme = "mysql"
    stop_timeout = STOP_TIMEOUT_S

    def __init__(self, settings: StackSettings) -> None:
        """Bind the service to the stack settings; nothing is touched until a method runs."""
        self.settings = settings
        self.base = settings.service_dir(self.name)
        self.data_dir = self.base / "data"
        self.cnf = self.base / "my.cnf"
        self.socket = self.base / "mysqld.sock"
        self.pid_file = self.base / "mysqld.pid"
        self.error_log = self.base / "error.log"
        self.out_log = self.base / "mariadbd.out"
        self.tls_dir = self.base / "tls"

    # ------------------------------------------------------------------ protocol

    def install(self) -> None:
        """apt-get install mariadb-server/-client when the binaries are missing."""
        missing = [str(p) for p in (MARIADBD, INSTALL_DB, CLIENT) if not p.exists()]
        ensure_apt_packages(["mariadb-server", "mariadb-client"], missing)

    def init(self) -> None:
        """Write my.cnf and run mariadb-install-db once (a half-initialised datadir is redone)."""
        self.base.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if (self.data_dir / "mysql").is_dir():
            self._chown(recursive=False)
            return
        if self.data_dir.exists():
            # Left over from an interrupted first run: no system tables, nothing worth keeping.
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir()
        self._chown(recursive=True)
        run_command(
            [INSTALL_DB, f"--defaults-file={self.cnf}", "--user=mysql", "--skip-test-db"],
            what="mariadb-install-db",
            timeout=300,
            error=ServiceStartError,
        )

    def start(self) -> None:
        """Start mariadbd detached, wait for the port, then (re)apply users and grants."""
        if self.is_running():
            return
        self.pid_file.unlink(missing_ok=True)  # stale: the process is gone
        host, port = self.settings.host, self.settings.mariadb_port
        self._claim_port()
        self.socket.unlink(missing_ok=True)
        pid = start_detached([MARIADBD, f"--defaults-file={self.cnf}"], log_path=self.out_log, cwd=self.base)
        try:
            wait_for_port(host, port, timeout=START_TIMEOUT_S, pid=pid, what="mariadbd")
            self._bootstrap_users()
        except DevstackError as exc:
            raise ServiceStartError(f"{exc}\n--- {self.error_log} ---\n{tail(self.error_log)}") from exc

    def tls_missing(self) -> bool:
        """True when the running server was started from a config without TLS (restart it)."""
        return self.is_running() and "ssl_cert=" not in self.cnf.read_text()

    # ------------------------------------------------------------------ internals

    def _port(self) -> int:
        return self.settings.mariadb_port

    def _chown(self, *, recursive: bool) -> None:
        # mariadbd drops to user mysql, which must own its datadir, socket and pid/log locations.
        targets = [str(self.base)] if recursive else [str(self.base), str(self.data_dir)]
        run_command(
            ["chown", *(["-R"] if recursive else []), "mysql:mysql", *targets], what="chown mariadb dir"
        )
        try:
            run_command(["runuser", "-u", "mysql", "--", "test", "-w", str(self.base)], what="access check")
        except DevstackError as exc:
            raise ServiceStartError(
                f"mariadb: user mysql cannot write {self.base}; every parent folder must be "
                "traversable (chmod o+x) by other users"
            ) from exc

    def _write_config(self) -> None:
        s = self.settings
        # TLS with the stack's own CA (tests verify it as clients verify the RDS bundle); plain
        # connections stay allowed (require_secure_transport is off).
        ca, cert, key = install_server_files(ensure_certificates(s.stack_dir), self.tls_dir, "mysql")
        # A private defaults file skips Debian's conf.d, so charset must be set here (else latin1).
        cnf = f"""# Written by devstack on every start; edit devstack/mariadb.py instead.
[client]
port={s.mariadb_port}
socket={self.socket}

[mariadbd]
user=mysql
port={s.mariadb_port}
bind-address={s.host}
socket={self.socket}
datadir={self.data_dir}
pid-file={self.pid_file}
log-error={self.error_log}
skip-name-resolve
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
default-time-zone=+00:00
server_id=1
log_bin=mysql-bin
binlog_format=ROW
binlog_row_image=FULL
# Required: the 10.11 default NO_LOG makes mysql-replication return UNKNOWN_COLn names.
binlog_row_metadata=FULL
binlog_expire_logs_seconds=604800
gtid_strict_mode=ON
innodb_buffer_pool_size=256M
max_connections=300
ssl_ca={ca}
ssl_cert={cert}
ssl_key={key}
"""
        self.cnf.write_text(cnf)
        self.cnf.chmod(0o644)

    def _client(self, sql: str, *, what: str) -> str:
        # root@localhost authenticates by unix_socket (we are root), so no root password exists.
        return run_command(
            [CLIENT, f"--defaults-file={self.cnf}", "-uroot", "--batch", "--skip-column-names"],
            input_text=sql,
            what=what,
            timeout=60,
        )

    def _bootstrap_users(self) -> None:
        """Create/refresh the admin and CDC users; kept out of the binlog so CDC readers never see it."""
        s = self.settings
        admin, cdc = s.admin_user, s.cdc_user
        sql = f"""SET SESSION sql_log_bin=0;
CREATE USER IF NOT EXISTS '{admin}'@'%' IDENTIFIED BY {_sql_str(s.admin_password.get_secret_value())};
ALTER USER '{admin}'@'%' IDENTIFIED BY {_sql_str(s.admin_password.get_secret_value())};
GRANT ALL PRIVILEGES ON *.* TO '{admin}'@'%' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS '{cdc}'@'%' IDENTIFIED BY {_sql_str(s.cdc_password.get_secret_value())};
ALTER USER '{cdc}'@'%' IDENTIFIED BY {_sql_str(s.cdc_password.get_secret_value())};
GRANT {CDC_GRANTS} ON *.* TO '{cdc}'@'%';
"""
        # The port can open a moment before the socket accepts root; retry briefly.
        deadline = time.monotonic() + 30
        while True:
            try:
                anon = self._client("SELECT host FROM mysql.user WHERE user='';", what="mariadb: list users")
                break
            except DevstackError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        # Anonymous users would shadow '%' accounts for local connections.
        drops = "".join(f"DROP USER IF EXISTS ''@{_sql_str(h)};\n" for h in anon.split() if h)
        try:
            self._client(sql + drops + "FLUSH PRIVILEGES;\n", what="mariadb: create users")
        except DevstackError as exc:
            # Never echo the SQL (it holds passwords); the client's error text does not.
            raise ServiceStartError(str(exc)) from None
