"""PyMySQL connections to the source, with bounded retry for transient failures.

Every connection, the binlog reader's included, gets its TLS options from the source's `tls`
settings and its secret from `connectors.db_auth` (a fresh IAM token each time with
``auth = "iam"``). Errors name the source, host and port, never the password or a token.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pymysql
import pymysql.cursors

from connectors.config import RetryConfig
from connectors.db_auth import connection_secret, scrub
from connectors.db_tls import is_certificate_error, pymysql_options, tls_failure
from connectors.mysql.config import MySQLSourceConfig
from connectors.source import SourceError, SourceUnavailableError
from connectors.usage import METER

logger = logging.getLogger(__name__)

# CR_CONNECTION_ERROR 2002, CR_CONN_HOST_ERROR 2003, CR_SERVER_GONE_ERROR 2006,
# CR_SERVER_LOST 2013, ER_CON_COUNT_ERROR 1040 (too many connections), ER_SERVER_SHUTDOWN 1053:
# the server may be restarting or failing over (Aurora), so these are worth another try.
TRANSIENT_ERROR_CODES = frozenset({1040, 1053, 2002, 2003, 2006, 2013})
ACCESS_DENIED = 1045
UNKNOWN_DATABASE = 1049
# CR_SSL_CONNECTION_ERROR: TLS required (tls.mode require / verify-*) but the server offers none.
SSL_CONNECTION_ERROR = 2026

T = TypeVar("T")


class _Connection(pymysql.connections.Connection):
    """A PyMySQL connection that shares one TLS context among connections without TLS options.

    Without `ssl*` options PyMySQL uses "preferred" TLS: it builds a default context (no
    verification, as no CA is given) for every connection, in case the server offers TLS, and
    loading the system's CA store for it costs ~0.1 s per connection. The context is the same
    every time, and an ``SSLContext`` may be shared by any number of sockets, so it is built
    once. Connections given TLS options build theirs as PyMySQL always does.
    """

    _preferred_tls: ssl.SSLContext | None = None
    _lock = threading.Lock()

    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        if sslp != {}:
            return super()._create_ssl_ctx(sslp)
        with _Connection._lock:
            if _Connection._preferred_tls is None:
                _Connection._preferred_tls = super()._create_ssl_ctx({})
            return _Connection._preferred_tls


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL error, if it has one."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_transient(exc: BaseException) -> bool:
    """Whether a PyMySQL error is worth retrying (connection lost, server restarting); a server
    certificate TLS refuses is not (error 2003 too, around an ``SSLCertVerificationError``)."""
    if is_certificate_error(exc):
        return False
    return isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError) and (
        error_code(exc) in TRANSIENT_ERROR_CODES or isinstance(exc, pymysql.err.InterfaceError)
    )


def backoff_delays(retry: RetryConfig) -> Iterator[float]:
    """Pauses between tries: exponential from `initial_seconds`, capped at `max_seconds`."""
    delay = retry.initial_seconds
    for _ in range(retry.attempts - 1):
        yield delay
        delay = min(delay * 2, retry.max_seconds)


def endpoint(config: MySQLSourceConfig) -> str:
    """``source 'name' at host:port`` for messages."""
    return f"MySQL source {config.name!r} at {config.host}:{config.port}"


def with_retry(config: MySQLSourceConfig, what: str, action: Callable[[], T]) -> T:
    """Run `action`, retrying transient errors with bounded backoff, then SourceUnavailableError."""
    delays = backoff_delays(config.retry)
    while True:
        try:
            return action()
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
            if not is_transient(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise SourceUnavailableError(
                    f"{endpoint(config)}: {what} failed after {config.retry.attempts} attempts: {_describe(exc)}"
                ) from exc
            logger.warning(
                "%s: %s failed (%s); retrying in %.1f s", endpoint(config), what, _describe(exc), delay
            )
            time.sleep(delay)


def _describe(exc: BaseException) -> str:
    code = error_code(exc)
    message = exc.args[1] if len(getattr(exc, "args", ())) > 1 else str(exc)
    return f"error {code}: {message}" if code is not None else str(message)


def connect(
    config: MySQLSourceConfig,
    *,
    cursorclass: type[pymysql.cursors.Cursor] = pymysql.cursors.Cursor,
    autocommit: bool = True,
) -> pymysql.connections.Connection:
    """A connection to the configured database as the CDC user, in UTC, with utf8mb4."""

    presented: list[str] = []  # the secrets tried, to scrub from messages

    def attempt() -> pymysql.connections.Connection:
        secret = connection_secret(config)  # a new IAM token for every attempt
        presented.append(secret)
        return _Connection(
            host=config.host,
            port=config.port,
            user=config.user,
            password=secret,
            database=config.database,
            charset="utf8mb4",
            autocommit=autocommit,
            cursorclass=cursorclass,
            connect_timeout=10,
            # TIMESTAMP values are then read in UTC, whatever the server's zone is.
            init_command="SET SESSION time_zone = '+00:00'",
            **pymysql_options(config, endpoint(config)),
        )

    try:
        return with_retry(config, "connect", attempt)
    except pymysql.err.OperationalError as exc:
        code = error_code(exc)
        if is_certificate_error(exc) or code == SSL_CONNECTION_ERROR:
            raise tls_failure(config, endpoint(config), scrub(_describe(exc), presented)) from None
        if code == ACCESS_DENIED:
            if config.auth == "iam":
                raise SourceError(
                    f"{endpoint(config)}: access denied for user {config.user!r} with an IAM token (auth = "
                    "'iam'); check that the user authenticates with AWSAuthenticationPlugin and that the "
                    "AWS credentials may rds-db:connect as this user"
                ) from None
            raise SourceError(
                f"{endpoint(config)}: access denied for user {config.user!r}; check the user name and password"
            ) from None
        if code == UNKNOWN_DATABASE:
            raise SourceError(f"{endpoint(config)}: database {config.database!r} does not exist") from None
        raise SourceError(f"{endpoint(config)}: cannot connect: {scrub(_describe(exc), presented)}") from None


def binlog_connection_settings(config: MySQLSourceConfig) -> dict[str, Any]:
    """Keyword arguments for mysql-replication's reader, without secrets or TLS: `binlog_connect`
    adds those to every connection the reader opens (stream, control, reconnects)."""
    return {
        "host": config.host,
        "port": config.port,
        "user": config.user,
        "charset": "utf8mb4",
        "connect_timeout": 10,
    }


class MeteredConnection(_Connection):
    """A connection that counts every byte it reads from the server into `connectors.usage.METER`
    (service "mysql", the source's name): what crossing from the source to us costs.

    Every read of PyMySQL goes through `_read_bytes`, the handshake included, so the count is the
    connection's TCP payload received (without TLS framing). Added up locally and handed to the
    meter every 64 kB and when the connection closes.
    """

    FLUSH_BYTES = 64 * 1024

    def __init__(self, *args: Any, meter_source: str, **kwargs: Any) -> None:
        self.meter_source = meter_source
        self._unmetered = 0
        super().__init__(*args, **kwargs)

    def _read_bytes(self, num_bytes: int) -> bytes:
        data: bytes = super()._read_bytes(num_bytes)
        self._unmetered += len(data)
        if self._unmetered >= self.FLUSH_BYTES:
            self.flush_meter()
        return data

    def flush_meter(self) -> None:
        if self._unmetered:
            METER.record("mysql", "binlog", self.meter_source, received=self._unmetered)
            self._unmetered = 0

    def close(self) -> None:
        self.flush_meter()
        super().close()

    def _force_close(self) -> None:
        self.flush_meter()
        super()._force_close()


def binlog_connect(
    *, meter_source: str, config: MySQLSourceConfig | None = None, **settings: Any
) -> pymysql.connections.Connection:
    """mysql-replication's connection factory (metered), spelling its deprecated ``db=`` as
    ``database=``. With `config`, each call presents a fresh secret (an IAM token with
    ``auth = "iam"``) and the source's TLS options: the reader calls it for its stream and control
    connections and again on every reconnect, so a token never outlives its 15 minutes."""
    if "db" in settings:
        settings["database"] = settings.pop("db")
    if config is not None:
        settings.pop("passwd", None)
        settings["password"] = connection_secret(config)
        settings.update(pymysql_options(config, endpoint(config)))
    return MeteredConnection(meter_source=meter_source, **settings)


def fetch_value(conn: pymysql.connections.Connection, sql: str, args: Any = None) -> Any:
    """The first column of the first row, or None."""
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
    return None if row is None else row[0]


def fetch_all(conn: pymysql.connections.Connection, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    """All rows as tuples."""
    with conn.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def fetch_dicts(conn: pymysql.connections.Connection, sql: str, args: Any = None) -> list[dict[str, Any]]:
    """All rows as dicts keyed by column label."""
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def server_flavor(conn: pymysql.connections.Connection) -> str:
    """'mariadb' or 'mysql', from the server's version string."""
    return "mariadb" if "mariadb" in conn.get_server_info().lower() else "mysql"
