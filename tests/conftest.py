"""Shared pytest fixtures: the local service stack and throw-away databases on it.

Tests run in a hostile, non-UTC time zone on purpose (America/St_Johns, UTC-03:30, with DST) so
that naive/aware datetime mix-ups fail loudly. The servers themselves are pinned to UTC by
devstack, whoever starts them.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# Set before anything else imports time-dependent code; intentional at import time.
os.environ["TZ"] = "America/St_Johns"
time.tzset()

import psycopg2  # noqa: E402
import psycopg2.errors  # noqa: E402
import psycopg2.extensions  # noqa: E402
import pymysql  # noqa: E402
import pytest  # noqa: E402
from pydantic import SecretStr  # noqa: E402

import devstack  # noqa: E402
from devstack.settings import StackSettings  # noqa: E402

TEST_SERVICES = ["mariadb", "mysql8", "postgres", "moto", "opensearch"]
PG_SLOT_DROP_TIMEOUT_S = 30.0


def _unique_db_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@dataclass
class TestDatabase:
    """A fresh database on the local MariaDB, MySQL 9.7 or PostgreSQL, owned by one test.

    ``admin_*`` is the superuser-ish ``lakehouse_admin``; ``cdc_*`` is the least-privileged CDC
    login. Passwords are ``SecretStr`` so they stay out of reprs and assertion messages.
    Connections opened through the helpers are closed at teardown, before the database is dropped.
    ``flavor`` tells the two MySQL servers apart where SQL differs (``SHOW BINLOG STATUS`` on
    MariaDB, ``SHOW BINARY LOG STATUS`` on MySQL 8.4+, GTID formats).
    """

    __test__ = False  # not a test class, despite the name

    kind: str  # "mysql" | "postgres"
    name: str
    host: str
    port: int
    admin_user: str
    admin_password: SecretStr
    cdc_user: str
    cdc_password: SecretStr
    flavor: str = ""  # kind "mysql": "mariadb" | "mysql" (the MySQL 8 family); "" for PostgreSQL
    _opened: list[Any] = field(default_factory=list, repr=False)

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL for the admin user (contains the local-only password; do not log it)."""
        return self._url(self.admin_user, self.admin_password)

    @property
    def cdc_url(self) -> str:
        """SQLAlchemy URL for the CDC user (contains the local-only password; do not log it)."""
        return self._url(self.cdc_user, self.cdc_password)

    def _url(self, user: str, password: SecretStr) -> str:
        scheme = "mysql+pymysql" if self.kind == "mysql" else "postgresql+psycopg2"
        return f"{scheme}://{user}:{password.get_secret_value()}@{self.host}:{self.port}/{self.name}"

    def admin_connect(self) -> Any:
        """Autocommit connection to this database as the admin user (PyMySQL or psycopg2)."""
        return self._connect(self.admin_user, self.admin_password)

    def cdc_connect(self) -> Any:
        """Autocommit connection to this database as the CDC user (PyMySQL or psycopg2)."""
        return self._connect(self.cdc_user, self.cdc_password)

    def connect(self) -> Any:
        """Same as :meth:`admin_connect`."""
        return self.admin_connect()

    def _connect(self, user: str, password: SecretStr) -> Any:
        conn: Any
        if self.kind == "mysql":
            conn = pymysql.connect(
                host=self.host,
                port=self.port,
                user=user,
                password=password.get_secret_value(),
                database=self.name,
                charset="utf8mb4",
                autocommit=True,
            )
        else:
            conn = psycopg2.connect(
                host=self.host,
                port=self.port,
                user=user,
                password=password.get_secret_value(),
                dbname=self.name,
            )
            conn.autocommit = True
        self._opened.append(conn)
        return conn

    def close_all(self) -> None:
        """Close every connection opened through this handle (errors ignored: it may be dead)."""
        for conn in self._opened:
            with contextlib.suppress(Exception):  # teardown must go on
                conn.close()
        self._opened.clear()


@pytest.fixture(scope="session")
def stack() -> StackSettings:
    """Start MariaDB, MySQL 9.7, PostgreSQL, moto and OpenSearch if needed (cheap when running); fail with the reason."""
    try:
        devstack.up(TEST_SERVICES)
    except devstack.DevstackError as exc:
        pytest.fail(f"local stack did not start: {exc}", pytrace=False)
    return devstack.settings()


# Per MySQL server of the stack: its flavour and the collation of test databases. MariaDB keeps
# general_ci; the MySQL 8 family gets its own default, utf8mb4_0900_ai_ci (NO PAD), as Aurora MySQL 3.
_MYSQL_SERVERS = {
    "mariadb": ("mariadb", "utf8mb4_general_ci"),
    "mysql8": ("mysql", "utf8mb4_0900_ai_ci"),
}


def _mysql_port(cfg: StackSettings, server: str) -> int:
    return cfg.mysql8_port if server == "mysql8" else cfg.mariadb_port


def _mysql_admin(
    cfg: StackSettings, port: int, database: str | None = None
) -> pymysql.connections.Connection:
    return pymysql.connect(
        host=cfg.host,
        port=port,
        user=cfg.admin_user,
        password=cfg.admin_password.get_secret_value(),
        database=database,
        charset="utf8mb4",
        autocommit=True,
    )


def _mysql_test_db(cfg: StackSettings, server: str) -> Iterator[TestDatabase]:
    """Create a fresh ``t_<12 hex>`` database on ``server`` ("mariadb" or "mysql8"), yield it, drop it.

    The CDC user already holds SELECT/RELOAD/REPLICATION grants on ``*.*`` (the brief's grant
    set), so nothing database-specific is granted. DDL and DML in it do go to the binlog.
    """
    flavor, collation = _MYSQL_SERVERS[server]
    port = _mysql_port(cfg, server)
    name = _unique_db_name()
    admin = _mysql_admin(cfg, port)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE {collation}")
    finally:
        admin.close()
    db = TestDatabase(
        kind="mysql",
        name=name,
        host=cfg.host,
        port=port,
        admin_user=cfg.admin_user,
        admin_password=cfg.admin_password,
        cdc_user=cfg.cdc_user,
        cdc_password=cfg.cdc_password,
        flavor=flavor,
    )
    try:
        yield db
    finally:
        db.close_all()
        _drop_mysql_db(cfg, port, name)


@pytest.fixture
def mysql_db(stack: StackSettings) -> Iterator[TestDatabase]:
    """A fresh MariaDB database ``t_<12 hex>`` (utf8mb4_general_ci), dropped afterwards."""
    yield from _mysql_test_db(stack, "mariadb")


@pytest.fixture
def mysql8_db(stack: StackSettings) -> Iterator[TestDatabase]:
    """A fresh database on the MySQL 9.7 server (Aurora MySQL 3 stand-in; utf8mb4_0900_ai_ci), dropped afterwards."""
    yield from _mysql_test_db(stack, "mysql8")


@pytest.fixture(params=["mariadb", "mysql8"])
def mysql_any_db(request: pytest.FixtureRequest, stack: StackSettings) -> Iterator[TestDatabase]:
    """The test runs twice: on a fresh MariaDB database and on a fresh MySQL 9.7 one (ids mariadb, mysql8)."""
    yield from _mysql_test_db(stack, request.param)


def _drop_mysql_db(cfg: StackSettings, port: int, name: str) -> None:
    admin = _mysql_admin(cfg, port)
    try:
        with admin.cursor() as cur:
            # Sessions left inside the database (e.g. a binlog reader's ctl connection, an open
            # transaction) would hold metadata locks and make DROP DATABASE wait. SHOW PROCESSLIST
            # works on both servers (information_schema.processlist is deprecated on MySQL 8).
            cur.execute("SELECT CONNECTION_ID()")
            (own_id,) = cur.fetchone()
            cur.execute("SHOW FULL PROCESSLIST")
            for row in cur.fetchall():
                conn_id, db_name = row[0], row[3]
                if db_name == name and conn_id != own_id:
                    with contextlib.suppress(pymysql.err.OperationalError):  # already gone
                        cur.execute(f"KILL CONNECTION {int(conn_id)}")
            cur.execute("SET SESSION lock_wait_timeout = 60")
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.close()


def _pg_admin(cfg: StackSettings, dbname: str = "postgres") -> psycopg2.extensions.connection:
    conn = psycopg2.connect(
        host=cfg.host,
        port=cfg.postgres_port,
        user=cfg.admin_user,
        password=cfg.admin_password.get_secret_value(),
        dbname=dbname,
    )
    conn.autocommit = True
    return conn


# Hands every table created in the test database to the CDC role, whoever created it (see pg_db).
_PG_OWNERSHIP_TRIGGER = """
CREATE FUNCTION public.devstack_tables_to_cdc() RETURNS event_trigger
LANGUAGE plpgsql AS $fn$
DECLARE obj record;
BEGIN
  FOR obj IN SELECT * FROM pg_event_trigger_ddl_commands()
             WHERE object_type IN ('table', 'partitioned table')
  LOOP
    EXECUTE format('ALTER TABLE %s OWNER TO {cdc}', obj.object_identity);
  END LOOP;
END $fn$;
CREATE EVENT TRIGGER devstack_tables_to_cdc ON ddl_command_end
  WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO')
  EXECUTE FUNCTION public.devstack_tables_to_cdc();
"""


@pytest.fixture
def pg_db(stack: StackSettings) -> Iterator[TestDatabase]:
    """A fresh PostgreSQL database ``t_<12 hex>``; its slots and the database are dropped afterwards.

    Privileges, chosen so the PostgreSQL source can run as the CDC role like it would in
    production (where the CDC login owns its publication):

    * the database is ``OWNER cdc``: that gives CREATE on the database (needed by CREATE
      PUBLICATION) and, through PG15's ``pg_database_owner``, ownership of schema ``public``;
    * an event trigger hands every table created in it (by the admin connection too) to ``cdc``,
      because ``CREATE PUBLICATION ... FOR TABLE`` requires table ownership in PG15 and
      ``FOR ALL TABLES`` requires superuser. Owning the tables also lets ``cdc`` read them for
      snapshots. A test that needs a table *not* owned by cdc can ``ALTER TABLE ... OWNER TO
      lakehouse_admin`` afterwards.
    * ``cdc`` has the REPLICATION attribute cluster-wide, so it can create logical slots.

    Teardown terminates sessions (walsenders included), drops this database's replication slots
    (a database with slots cannot be dropped) and then drops the database WITH (FORCE).
    """
    name = _unique_db_name()
    admin = _pg_admin(stack)
    try:
        with admin.cursor() as cur:
            cur.execute(
                f'CREATE DATABASE "{name}" OWNER "{stack.cdc_user}" ENCODING \'UTF8\' TEMPLATE template0'
            )
    finally:
        admin.close()
    setup = _pg_admin(stack, name)
    try:
        with setup.cursor() as cur:
            cur.execute(_PG_OWNERSHIP_TRIGGER.format(cdc=f'"{stack.cdc_user}"'))
    finally:
        setup.close()
    db = TestDatabase(
        kind="postgres",
        name=name,
        host=stack.host,
        port=stack.postgres_port,
        admin_user=stack.admin_user,
        admin_password=stack.admin_password,
        cdc_user=stack.cdc_user,
        cdc_password=stack.cdc_password,
    )
    try:
        yield db
    finally:
        db.close_all()
        _drop_pg_db(stack, name)


def _drop_pg_db(cfg: StackSettings, name: str) -> None:
    admin = _pg_admin(cfg)
    try:
        with admin.cursor() as cur:
            deadline = time.monotonic() + PG_SLOT_DROP_TIMEOUT_S
            while True:
                # Walsenders streaming from a slot keep it active; terminate them, then drop.
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                cur.execute(
                    "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s", (name,)
                )
                slots = cur.fetchall()
                if not slots:
                    break
                for slot_name, active_pid in slots:
                    if active_pid is not None:
                        cur.execute("SELECT pg_terminate_backend(%s)", (active_pid,))
                        continue
                    # ObjectInUse: it became active again (retried below); UndefinedObject: gone.
                    with contextlib.suppress(psycopg2.errors.ObjectInUse, psycopg2.errors.UndefinedObject):
                        cur.execute("SELECT pg_drop_replication_slot(%s)", (slot_name,))
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not drop replication slots of test database {name}: {slots}")
                time.sleep(0.1)
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture(scope="session")
def moto_endpoint(stack: StackSettings) -> str:
    """Base URL of the running moto server (keys ``testing``/``testing``, region us-east-1)."""
    return stack.moto_endpoint


@pytest.fixture(scope="session")
def opensearch_endpoint(stack: StackSettings) -> str:
    """Base URL of the running single-node OpenSearch (plain HTTP, no auth)."""
    return stack.opensearch_endpoint


@pytest.fixture(scope="session")
def aws_client_kwargs(stack: StackSettings) -> dict[str, str]:
    """Keyword arguments for ``boto3.client(service, **kwargs)`` pointing at moto."""
    return {
        "endpoint_url": stack.moto_endpoint,
        "region_name": stack.aws_region,
        "aws_access_key_id": stack.aws_access_key_id,
        "aws_secret_access_key": stack.aws_secret_access_key.get_secret_value(),
    }


@dataclass(frozen=True)
class S3Lake:
    """A fresh bucket on the moto server: the lake root in it and the options to reach it."""

    bucket: str
    root: str
    options: Any  # connectors.lake.storage.S3Options


@pytest.fixture
def s3_lake(moto_endpoint: str, aws_client_kwargs: dict[str, str]) -> S3Lake:
    """A new bucket on the moto server for a lake rooted at ``s3://<bucket>/lake``."""
    import boto3

    from connectors.lake.storage import S3Options

    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", **aws_client_kwargs).create_bucket(Bucket=bucket)
    options = S3Options(endpoint_url=moto_endpoint, access_key_id="testing", secret_access_key="testing")
    return S3Lake(bucket, f"s3://{bucket}/lake", options)
