"""RDS IAM database authentication: every new connection presents a token signed for it.

The token provider (`connectors.db_auth.iam_token`, botocore's real `generate_db_auth_token`
with fake credentials: it signs locally) is wrapped to see each token and, before the connection
uses it, to make it the only password the server accepts (ALTER USER / ALTER ROLE through an admin
connection): "rotating what the server accepts". A connection given an old token would be refused.

Locally the token is an ordinary password: RDS's AWSAuthenticationPlugin (MySQL, MariaDB) asks
the client for it with mysql_clear_password, which PyMySQL answers over the required TLS. MySQL 9.7
caps caching_sha2_password passwords at 256 bytes and a token is longer, so the MySQL side runs on
MariaDB here (the same PyMySQL code path); PostgreSQL takes the token as its password.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pymysql
import pytest

from connectors import db_auth
from connectors.mysql import MySQLSource, MySQLSourceConfig
from connectors.mysql.connection import connect as mysql_connect
from connectors.postgres import arrow_reader as pg_arrow_reader
from connectors.postgres.connection import connect as pg_connect
from connectors.source import SourceError
from devstack.settings import StackSettings
from tests.postgres_support import make_config as pg_config

REGION = "us-east-1"


class RotatingTokens:
    """Wraps the token provider: records each token and makes it what the server accepts."""

    def __init__(self, rotate: Callable[[str, str], None]) -> None:
        self.rotate = rotate
        self.tokens: list[str] = []
        self._mint = db_auth.iam_token

    def __call__(self, host: str, port: int, user: str, region: str) -> str:
        token = self._mint(host, port, user, region)
        self.tokens.append(token)
        self.rotate(user, token)
        return token


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """moto-style fake credentials; no shared config or profile of the machine takes part."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    db_auth._rds_client.cache_clear()  # a client made before these credentials would keep its own
    yield
    db_auth._rds_client.cache_clear()


def _next_second() -> None:
    # A SigV4 signature covers X-Amz-Date (whole seconds): two tokens minted in the same second
    # for the same user are equal, so the tests let a second pass between connections.
    time.sleep(1.05)


def test_a_token_is_signed_locally_and_never_logged(fake_aws: None) -> None:
    token = db_auth.iam_token("db.example.internal", 3306, "cdc", REGION)
    assert token.startswith("db.example.internal:3306/?Action=connect&DBUser=cdc&")
    assert "X-Amz-Signature=" in token and "X-Amz-Expires=900" in token
    assert db_auth.scrub(f"failed with {token} and {token.replace('&', '%26')}", [token]).count("***") == 1


# -- MariaDB -----------------------------------------------------------------------------------


@pytest.fixture
def mariadb_iam(mysql_db: Any, monkeypatch: pytest.MonkeyPatch, fake_aws: None) -> Iterator[Any]:
    user = f"iam_{secrets.token_hex(4)}"
    admin = mysql_db.admin_connect()  # users and tokens, kept out of the binlog (sql_log_bin = 0)
    with admin.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'not-a-token' REQUIRE SSL")
        cur.execute(
            f"GRANT RELOAD, REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR ON *.* TO '{user}'@'%'"
        )
        cur.execute(f"GRANT SELECT ON `{mysql_db.name}`.* TO '{user}'@'%'")

    def rotate(name: str, token: str) -> None:
        with admin.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"ALTER USER '{name}'@'%%' IDENTIFIED BY %s", (token,))

    tokens = RotatingTokens(rotate)
    monkeypatch.setattr(db_auth, "iam_token", tokens)
    try:
        yield user, tokens, mysql_db.admin_connect()  # the test's own writes: in the binlog
    finally:
        with admin.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")


def _mysql_iam_config(db: Any, user: str, ca: str) -> MySQLSourceConfig:
    return MySQLSourceConfig(
        name=f"iam_{db.name}",
        host="localhost",
        port=db.port,
        user=user,
        database=db.name,
        auth="iam",
        region=REGION,
        tls={"mode": "verify-full", "ca_file": ca},
        server_id=100_000 + secrets.randbelow(2**30),
        batch_max_seconds=0.3,
    )


def test_mariadb_connections_present_fresh_tokens(
    mysql_db: Any, mariadb_iam: Any, stack: StackSettings
) -> None:
    user, tokens, _ = mariadb_iam
    config = _mysql_iam_config(mysql_db, user, str(stack.stack_dir / "tls" / "ca.pem"))
    first = mysql_connect(config)
    _next_second()
    second = mysql_connect(config)
    assert len(tokens.tokens) == 2 and tokens.tokens[0] != tokens.tokens[1]
    assert all(
        t.startswith(f"localhost:{mysql_db.port}/?Action=connect&DBUser={user}&") for t in tokens.tokens
    )
    for conn in (first, second):
        conn.close()
    # The server now takes the second token only: the first one is refused.
    with pytest.raises(pymysql.err.OperationalError) as refused:
        pymysql.connect(
            host="127.0.0.1", port=mysql_db.port, user=user, password=tokens.tokens[0], ssl={"ca": None}
        )
    assert refused.value.args[0] == 1045
    # A refused token names the IAM setting, never the token.
    tokens.rotate = lambda name, token: None  # the server keeps the second token
    _next_second()
    with pytest.raises(SourceError, match=r"IAM token \(auth = 'iam'\)") as caught:
        mysql_connect(config)
    assert all(t not in str(caught.value) for t in tokens.tokens)


def test_mariadb_binlog_stream_and_its_reconnect_present_fresh_tokens(
    mysql_db: Any, mariadb_iam: Any, stack: StackSettings
) -> None:
    user, tokens, admin = mariadb_iam
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO t VALUES (1)")
    source = MySQLSource(_mysql_iam_config(mysql_db, user, str(stack.stack_dir / "tls" / "ca.pem")))
    try:
        batches = list(source.snapshot())
        before = len(tokens.tokens)
        _next_second()
        with admin.cursor() as cur:
            cur.execute("INSERT INTO t VALUES (2)")
        stream = source.stream(batches[-1].end, batches[-1].floors)
        try:
            assert next(b for b in stream if b.num_rows).num_rows == 1
            opened = tokens.tokens[before:]
            # The stream's own control connection, the reader's control and dump connections.
            assert len(opened) >= 3, len(opened)
            _next_second()
            with admin.cursor() as cur:  # cut the dump: the reader reconnects
                cur.execute("SHOW PROCESSLIST")
                dumps = [r[0] for r in cur.fetchall() if r[1] == user and str(r[4]).startswith("Binlog Dump")]
                assert dumps
                for thread in dumps:
                    cur.execute(f"KILL {int(thread)}")
                cur.execute("INSERT INTO t VALUES (3)")
            assert next(b for b in stream if b.num_rows).num_rows == 1
            reconnected = tokens.tokens[before + len(opened) :]
            assert reconnected, "the reconnect presented no new token"
            assert not set(reconnected) & set(opened)  # fresh, not a kept one
        finally:
            stream.close()
    finally:
        source.close()


# -- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture
def pg_iam(pg_db: Any, monkeypatch: pytest.MonkeyPatch, fake_aws: None) -> Iterator[Any]:
    role = f"iam_{secrets.token_hex(4)}"
    admin = pg_db.admin_connect()
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN REPLICATION PASSWORD 'not-a-token'")

    def rotate(name: str, token: str) -> None:
        with admin.cursor() as cur:
            cur.execute(f"ALTER ROLE {name} PASSWORD %s", (token,))

    tokens = RotatingTokens(rotate)
    monkeypatch.setattr(db_auth, "iam_token", tokens)
    try:
        yield role, tokens
    finally:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            with contextlib.suppress(psycopg2.Error):
                time.sleep(0.2)
                cur.execute(f"DROP ROLE IF EXISTS {role}")


def test_postgres_connections_present_fresh_tokens(pg_db: Any, pg_iam: Any, stack: StackSettings) -> None:
    role, tokens = pg_iam
    ca = str(stack.stack_dir / "tls" / "ca.pem")
    config = pg_config(
        pg_db, host="localhost", user=role, password="", auth="iam", region=REGION,
        tls={"mode": "verify-full", "ca_file": ca},
    )  # fmt: skip
    opened = []
    for opener in (pg_connect, lambda c: pg_connect(c, replication=True), pg_arrow_reader.connect_arrow):
        opened.append(opener(config))
        _next_second()
    assert len(tokens.tokens) == 3 and len(set(tokens.tokens)) == 3
    sql = opened[0]
    with sql.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone() == (True,)
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host="127.0.0.1", port=pg_db.port, user=role, password=tokens.tokens[0], dbname=pg_db.name
        )
