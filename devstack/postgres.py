"""PostgreSQL 15 as a private cluster with logical decoding and wal2json (Aurora PostgreSQL stand-in)."""

from __future__ import annotations

import shutil
from pathlib import Path

from devstack.base import (
    DevstackError,
    PidFileService,
    ServiceStartError,
    ServiceStopError,
    ensure_apt_packages,
    pid_alive,
    read_pid,
    run_command,
    tail,
    terminate,
)
from devstack.settings import StackSettings
from devstack.tls import ensure_certificates, install_server_files

__all__ = ["PostgresService"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
WAL2JSON = Path("/usr/lib/postgresql/15/lib/wal2json.so")
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 120
INCLUDE_LINE = "include_if_exists = 'devstack.conf'"


def _sql_str(value: str) -> str:
    """Quote a string literal for PostgreSQL (standard_conforming_strings is on)."""
    return "'" + value.replace("'", "''") + "'"


class PostgresService(PidFileService):
    """Private PostgreSQL 15 cluster under ``<stack>/postgres`` on 127.0.0.1:<postgres_port>."""

    name = "postgres"
    process = "postgres"
    scheme = "postgresql"
    stop_timeout = STOP_TIMEOUT_S

    def __init__(self, settings: StackSettings) -> None:
        """Bind the service to the stack settings; nothing is touched until a method runs."""
        self.settings = settings
        self.base = settings.service_dir(self.name)
        self.data_dir = self.base / "data"
        self.log = self.base / "server.log"
        self.pid_file = self.data_dir / "postmaster.pid"

    # ------------------------------------------------------------------ protocol

    def install(self) -> None:
        """apt-get install postgresql-15 and wal2json when missing."""
        needed = [PG_BIN / "initdb", PG_BIN / "pg_ctl", PG_BIN / "postgres", PG_BIN / "psql", WAL2JSON]
        missing = [str(p) for p in needed if not p.exists()]
        ensure_apt_packages(["postgresql-15", "postgresql-client-15", "postgresql-15-wal2json"], missing)

    def init(self) -> None:
        """initdb once (scram-sha-256 for TCP, trust on the private socket), then write devstack.conf."""
        self.base.mkdir(parents=True, exist_ok=True)
        # The socket directory is the service dir, so postgres must own it.
        run_command(["chown", "postgres:postgres", str(self.base)], what="chown postgres dir")
        if not (self.data_dir / "PG_VERSION").is_file():
            if self.data_dir.exists():
                shutil.rmtree(self.data_dir)  # interrupted initdb: nothing worth keeping
            self._as_postgres(
                [
                    PG_BIN / "initdb",
                    "-D",
                    self.data_dir,
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                what="initdb",
            )
            conf = self.data_dir / "postgresql.conf"
            with conf.open("a") as fh:
                fh.write(f"\n# devstack settings (rewritten on every start)\n{INCLUDE_LINE}\n")
        self._write_config()

    def start(self) -> None:
        """pg_ctl start (waits until ready), then create/refresh the roles."""
        if self.is_running():
            return
        self._clear_stale_pid()
        self._claim_port()
        try:
            # pg_ctl forks the postmaster; a new session keeps it clear of the caller's signals.
            self._as_postgres(
                [
                    PG_BIN / "pg_ctl",
                    "-D",
                    self.data_dir,
                    "-l",
                    self.log,
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "start",
                ],
                what="pg_ctl start",
                timeout=START_TIMEOUT_S + 30,
                new_session=True,
            )
            self._bootstrap_roles()
        except DevstackError as exc:
            raise ServiceStartError(f"{exc}\n--- {self.log} ---\n{tail(self.log)}") from exc

    def stop(self) -> None:
        """pg_ctl stop -m fast; SIGTERM/SIGKILL the postmaster if pg_ctl cannot."""
        pid = self._pid()
        if pid is None:
            return
        try:
            self._as_postgres(
                [
                    PG_BIN / "pg_ctl",
                    "-D",
                    self.data_dir,
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(STOP_TIMEOUT_S),
                    "stop",
                ],
                what="pg_ctl stop",
                timeout=STOP_TIMEOUT_S + 30,
                error=ServiceStopError,
            )
        except ServiceStopError:
            terminate(pid, timeout=30, what="postgres")

    def tls_missing(self) -> bool:
        """True when the running server was started from a config without TLS (restart it)."""
        conf = self.data_dir / "devstack.conf"
        return self.is_running() and (not conf.is_file() or "ssl = on" not in conf.read_text())

    # ------------------------------------------------------------------ internals

    def _port(self) -> int:
        return self.settings.postgres_port

    def _clear_stale_pid(self) -> None:
        # After a kill -9 the lock file stays; if its pid was recycled by another process,
        # postgres would refuse to start ("lock file already exists").
        # The socket lock file is checked the same way and outlives a kill -9 too.
        if self._pid() is not None:
            return
        self.pid_file.unlink(missing_ok=True)
        for lock in self.base.glob(".s.PGSQL.*.lock"):
            if not pid_alive(read_pid(lock)):
                lock.unlink(missing_ok=True)

    def _as_postgres(
        self,
        cmd: list[str | Path],
        *,
        what: str,
        timeout: float = 300,
        new_session: bool = False,
        error: type[DevstackError] = ServiceStartError,
    ) -> str:
        return run_command(
            ["runuser", "-u", "postgres", "--", *cmd],
            what=what,
            timeout=timeout,
            new_session=new_session,
            error=error,
        )

    def _write_config(self) -> None:
        s = self.settings
        # TLS with the stack's own CA; pg_hba's "host" lines match TLS and plain connections alike.
        # The key must be the server user's and unreadable by others, or postgres refuses to start.
        ca, cert, key = install_server_files(ensure_certificates(s.stack_dir), self.base / "tls", "postgres")
        conf = f"""# Written by devstack on every start; edit devstack/postgres.py instead.
listen_addresses = '{s.host}'
port = {s.postgres_port}
unix_socket_directories = '{self.base}'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_connections = 200
shared_buffers = 128MB
# initdb copies the caller's TZ; pin UTC like Aurora so results do not depend on who ran initdb.
timezone = 'UTC'
log_timezone = 'UTC'
password_encryption = 'scram-sha-256'
ssl = on
ssl_ca_file = '{ca}'
ssl_cert_file = '{cert}'
ssl_key_file = '{key}'
"""
        if self._knows_setting("output_plugin_libraries"):
            # PostgreSQL 15.20 (and the matching minors of other majors) only lets non-superuser
            # replication users decode with approved output plugins; wal2json must be listed.
            conf += "output_plugin_libraries = 'pgoutput, test_decoding, wal2json'\n"
        path = self.data_dir / "devstack.conf"
        path.write_text(conf)
        run_command(["chown", "postgres:postgres", str(path)], what="chown devstack.conf")

    def _knows_setting(self, name: str) -> bool:
        """Whether the installed server has a configuration parameter (minor releases add some)."""
        out = run_command(
            ["runuser", "-u", "postgres", "--", PG_BIN / "postgres", "--describe-config"],
            what="postgres --describe-config",
        )
        return any(line.split("\t", 1)[0] == name for line in out.splitlines())

    def _bootstrap_roles(self) -> None:
        """Create/refresh lakehouse_admin (SUPERUSER) and cdc (LOGIN REPLICATION BYPASSRLS: the sample
        world's tenant tables have row-level security, which a snapshot must read past) via the local socket."""
        s = self.settings
        admin_pw = _sql_str(s.admin_password.get_secret_value())
        cdc_pw = _sql_str(s.cdc_password.get_secret_value())
        sql = f"""DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{s.admin_user}') THEN CREATE ROLE {s.admin_user}; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{s.cdc_user}') THEN CREATE ROLE {s.cdc_user}; END IF;
END $$;
ALTER ROLE {s.admin_user} WITH LOGIN SUPERUSER PASSWORD {admin_pw};
ALTER ROLE {s.cdc_user} WITH LOGIN REPLICATION BYPASSRLS PASSWORD {cdc_pw};
"""
        run_command(
            [
                PG_BIN / "psql",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.base),
                "-p",
                str(s.postgres_port),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ],
            input_text=sql,
            what="postgres: create roles",
            timeout=60,
        )
