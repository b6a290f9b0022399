"""Verified TLS to MariaDB, MySQL 9.7 and PostgreSQL, against the stack's own CA (``<stack>/tls``).

The servers serve a certificate for ``localhost`` / 127.0.0.1 signed by the stack's CA, as RDS
serves one signed by a CA of its global bundle. Checked for real: snapshot reads, the binlog
stream and the PostgreSQL replication stream over ``verify-full``, the server confirming that they
are encrypted; a server reached under another name (127.0.0.2, through a TCP relay) and a CA file
of another CA are refused with an error naming the setting and the host, never the password.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from connectors.config import RetryConfig
from connectors.mysql import MySQLSource, MySQLSourceConfig
from connectors.mysql.connection import connect as mysql_connect
from connectors.postgres import PostgresSource
from connectors.postgres import arrow_reader as pg_arrow_reader
from connectors.postgres.connection import connect as pg_connect
from connectors.source import SourceError
from devstack.settings import StackSettings
from devstack.tls import make_certificates
from tests.postgres_support import make_config as pg_config

FAST_FAILURE = RetryConfig(attempts=2, initial_seconds=0.1, max_seconds=0.1)


@pytest.fixture
def stack_ca(stack: StackSettings) -> str:
    return str(stack.stack_dir / "tls" / "ca.pem")


@pytest.fixture
def other_ca(tmp_path: Path) -> str:
    """A CA file of another authority: valid PEM, but it signed nothing the servers serve."""
    ca_pem, _, _ = make_certificates(ca_name_text="some other CA")
    path = tmp_path / "other-ca.pem"
    path.write_bytes(ca_pem)
    return str(path)


@contextlib.contextmanager
def relay(target_port: int, host: str = "127.0.0.2") -> Iterator[int]:
    """A TCP relay on `host` (another loopback address) to 127.0.0.1:`target_port`: the server is
    then reached under a name its certificate does not carry. Yields the relay's port."""
    listener = socket.create_server((host, 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", target_port))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def _mysql_tls_user(db: Any) -> Iterator[tuple[str, SecretStr]]:
    """A CDC user the server accepts over TLS only (REQUIRE SSL): whatever it connects, the server
    itself refuses unless the connection is encrypted."""
    user, password = f"tls_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    grants = "RELOAD, REPLICATION SLAVE, REPLICATION CLIENT" + (
        ", BINLOG MONITOR" if db.flavor == "mariadb" else ""
    )
    admin = db.admin_connect()
    with admin.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s REQUIRE SSL", (password,))
        cur.execute(f"GRANT {grants} ON *.* TO '{user}'@'%'")
        cur.execute(f"GRANT SELECT ON `{db.name}`.* TO '{user}'@'%'")
    try:
        yield user, SecretStr(password)
    finally:
        with admin.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")


@pytest.fixture
def mysql_tls_user(mysql_any_db: Any) -> Iterator[tuple[str, SecretStr]]:
    yield from _mysql_tls_user(mysql_any_db)


def mysql_config(db: Any, **overrides: Any) -> MySQLSourceConfig:
    settings: dict[str, Any] = {
        "name": f"tls_{db.name}",
        "host": "localhost",
        "port": db.port,
        "user": db.cdc_user,
        "password": db.cdc_password,
        "database": db.name,
        "server_id": 100_000 + secrets.randbelow(2**30),
        "batch_max_seconds": 0.3,
        "retry": FAST_FAILURE,
    }
    return MySQLSourceConfig(**(settings | overrides))


# -- config ------------------------------------------------------------------------------------


def test_config_names_the_tls_and_auth_fields() -> None:
    base = {"name": "s", "user": "u", "database": "d"}
    with pytest.raises(ValidationError, match=r"tls.ca_file is required with tls.mode = 'verify-full'"):
        MySQLSourceConfig(**base, tls={"mode": "verify-full"})
    with pytest.raises(ValidationError, match=r"tls.ca_file is only used with"):
        MySQLSourceConfig(**base, tls={"mode": "require", "ca_file": "/x.pem"})
    with pytest.raises(ValidationError, match=r"auth = 'iam' .* needs TLS: set tls.mode"):
        MySQLSourceConfig(**base, auth="iam", region="us-east-1")
    with pytest.raises(ValidationError, match=r"auth = 'iam' needs `region`"):
        MySQLSourceConfig(**base, auth="iam", tls={"mode": "require"})
    with pytest.raises(ValidationError, match=r"password is not used with auth = 'iam'") as caught:
        MySQLSourceConfig(
            **base, auth="iam", region="us-east-1", tls={"mode": "require"}, password="hunter2-secret"
        )
    assert "hunter2-secret" not in str(caught.value)
    assert MySQLSourceConfig(**base).tls.mode == "prefer"  # today's behaviour stays the default


def test_a_missing_ca_file_is_named(mysql_db: Any) -> None:
    config = mysql_config(mysql_db, tls={"mode": "verify-full", "ca_file": "/nowhere/ca.pem"})
    with pytest.raises(SourceError, match=r"tls.ca_file '/nowhere/ca.pem' does not exist"):
        mysql_connect(config)


# -- MariaDB and MySQL 9.7 -----------------------------------------------------------------------


def test_verify_full_snapshot_and_binlog_are_encrypted(
    mysql_any_db: Any, mysql_tls_user: tuple[str, SecretStr], stack_ca: str, caplog: Any
) -> None:
    db = mysql_any_db
    admin = db.admin_connect()
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute("INSERT INTO t VALUES (1, 'one')")
    user, password = mysql_tls_user
    config = mysql_config(db, user=user, password=password, tls={"mode": "verify-full", "ca_file": stack_ca})
    # The server refuses this user without TLS: the control of the check below.
    with pytest.raises(SourceError, match="access denied"):
        mysql_connect(
            config.model_copy(
                update={"tls": config.tls.model_copy(update={"mode": "disable", "ca_file": None})}
            )
        )
    conn = mysql_connect(config)
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cur.fetchone()[1], "the server reports no cipher for the connection"
    conn.close()

    source = MySQLSource(config)
    try:
        batches = list(source.snapshot())
        assert sum(b.num_rows for b in batches) == 1
        # The resumable snapshot's chunk reader: connectorx cannot verify, PyMySQL reads instead.
        table = next(iter(batches[-1].floors))
        with caplog.at_level(logging.INFO, logger="connectors.mysql.snapshot"):
            chunks = list(source.snapshot_chunks(table, None, batches[-1].end))
        assert sum(c.changes.data.num_rows for c in chunks) == 1
        assert "connectorx cannot require or verify TLS" in caplog.text
        since = batches[-1].end
        with admin.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (2, 'two')")
        stream = source.stream(since, batches[-1].floors)  # unbounded: a blocking binlog dump
        try:
            batch = next(b for b in stream if b.num_rows)
            assert batch.num_rows == 1
            # The dump is open now (the generator waits for more): the server's view of it.
            dumps = _binlog_dumps(admin, user)
            assert dumps, "no binlog dump of the TLS-only user on the server"
            if db.flavor == "mysql":  # performance_schema is on in MySQL 9.7 (off in MariaDB)
                assert {kind for _, kind in dumps} == {"SSL/TLS"}
        finally:
            stream.close()
    finally:
        source.close()


def _binlog_dumps(admin: Any, user: str) -> list[tuple[int, str]]:
    """(thread id, connection type) of the user's binlog dumps; the type is MySQL's only."""
    deadline = time.monotonic() + 5
    while True:
        with admin.cursor() as cur:
            cur.execute("SHOW PROCESSLIST")
            ids = [r[0] for r in cur.fetchall() if r[1] == user and str(r[4]).startswith("Binlog Dump")]
            found = []
            for thread in ids:
                kind = ""
                with contextlib.suppress(Exception):
                    cur.execute(
                        "SELECT CONNECTION_TYPE FROM performance_schema.threads WHERE PROCESSLIST_ID = %s",
                        (thread,),
                    )
                    row = cur.fetchone()
                    kind = row[0] if row else ""
                found.append((thread, kind))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_verify_full_refuses_another_host_name_naming_the_setting(mysql_any_db: Any, stack_ca: str) -> None:
    with relay(mysql_any_db.port) as port:
        config = mysql_config(
            mysql_any_db, host="127.0.0.2", port=port, tls={"mode": "verify-full", "ca_file": stack_ca}
        )
        with pytest.raises(SourceError) as caught:
            mysql_connect(config)
        message = str(caught.value)
        assert "tls.mode = 'verify-full'" in message and "127.0.0.2" in message
        assert "tls.ca_file" in message
        assert mysql_any_db.cdc_password.get_secret_value() not in message
        # verify-ca checks the CA only: the same relay is accepted.
        conn = mysql_connect(
            config.model_copy(update={"tls": config.tls.model_copy(update={"mode": "verify-ca"})})
        )
        conn.close()


def test_verify_full_refuses_a_certificate_of_another_ca(mysql_any_db: Any, other_ca: str) -> None:
    config = mysql_config(mysql_any_db, tls={"mode": "verify-full", "ca_file": other_ca})
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"tls.ca_file = '.*other-ca.pem'") as caught:
        mysql_connect(config)
    assert "certificate verify failed" in str(caught.value).lower()
    assert mysql_any_db.cdc_password.get_secret_value() not in str(caught.value)
    assert time.monotonic() - started < 5  # refused at once: a bad certificate is not retried


def test_require_encrypts_without_verifying(mysql_db: Any) -> None:
    with relay(mysql_db.port) as port:
        conn = mysql_connect(mysql_config(mysql_db, host="127.0.0.2", port=port, tls={"mode": "require"}))
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert cur.fetchone()[1]
        conn.close()


# -- PostgreSQL --------------------------------------------------------------------------------


def _tls(ca: str, mode: str = "verify-full") -> dict[str, Any]:
    return {"tls": {"mode": mode, "ca_file": ca}, "host": "localhost", "retry": FAST_FAILURE}


def test_postgres_verify_full_snapshot_and_replication_are_encrypted(pg_db: Any, stack_ca: str) -> None:
    admin = pg_db.admin_connect()
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        cur.execute("INSERT INTO t VALUES (1, 'one')")
    config = pg_config(pg_db, batch_max_seconds=0.3, **_tls(stack_ca))
    assert config.snapshot_reader == "arrow"  # the ADBC reader connects with the same TLS
    source = PostgresSource(config)
    try:
        batches = list(source.snapshot())
        assert sum(b.num_rows for b in batches) == 1
        with admin.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (2, 'two')")
        stream = source.stream(batches[-1].end, batches[-1].floors)
        try:
            batch = next(b for b in stream if b.num_rows)
            assert batch.num_rows == 1
            with admin.cursor() as cur:
                cur.execute(
                    "SELECT s.ssl, s.version FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"
                    " WHERE r.application_name = %s",
                    (f"lakehouse-cdc:{config.name}",),
                )
                rows = cur.fetchall()
            assert rows and all(ssl for ssl, _ in rows), rows
        finally:
            stream.close()
    finally:
        source.close()
    conn = pg_connect(config)
    with conn.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (True,)
    conn.close()


def test_postgres_verify_full_refuses_another_host_and_another_ca(
    pg_db: Any, stack_ca: str, other_ca: str
) -> None:
    secret = pg_db.cdc_password.get_secret_value()
    with relay(pg_db.port) as port:
        config = pg_config(pg_db, **(_tls(stack_ca) | {"host": "127.0.0.2", "port": port}))
        with pytest.raises(SourceError) as caught:
            pg_connect(config)
        message = str(caught.value)
        assert "tls.mode = 'verify-full'" in message and "127.0.0.2" in message
        assert "does not match host name" in message and secret not in message
        pg_connect(
            config.model_copy(update={"tls": config.tls.model_copy(update={"mode": "verify-ca"})})
        ).close()
    config = pg_config(pg_db, **_tls(other_ca))
    for opener in (pg_connect, lambda c: pg_connect(c, replication=True), pg_arrow_reader.connect_arrow):
        with pytest.raises(SourceError, match=r"tls.ca_file = '.*other-ca.pem'") as caught:
            opener(config)
        assert secret not in str(caught.value)
