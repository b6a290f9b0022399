"""psycopg2 connections to the source, with bounded retry and fixed session settings.

Every connection (SQL and replication) pins the settings that decide how values are rendered as
text, because the snapshot (read as raw output text) and pgoutput (the type's output function, run in the
walsender with the walsender's settings; with binary values, for the types still sent as text) must
produce the very same text for the converters in `connectors.postgres.types`:

* ``TimeZone=UTC`` - timestamptz renders as ``... +00``, independent of the server's default;
* ``DateStyle=ISO`` - ``YYYY-MM-DD``; ``IntervalStyle=iso_8601`` - intervals as ``P1DT2H``;
* ``extra_float_digits=3`` - shortest exact float text on PostgreSQL 12+, round-trip on older ones;
* ``bytea_output=hex``, ``client_encoding=UTF8`` - pgoutput converts values to the client encoding.

TLS follows the source's `tls` settings (libpq's ``sslmode`` and ``sslrootcert``), and each
connection, a replication one included, presents the secret `connectors.db_auth` gives for it: with
``auth = "iam"`` a token signed for that connection (RDS takes it as the password).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from connectors.db_auth import connection_secret, scrub
from connectors.db_tls import is_libpq_tls_error, libpq_options, tls_failure
from connectors.postgres.config import PostgresSourceConfig
from connectors.source import SourceError, SourceUnavailableError

log = logging.getLogger(__name__)

SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601 -c extra_float_digits=3"
    " -c bytea_output=hex -c client_encoding=UTF8"
)

# Failures that retrying cannot fix: report them at once instead of after the whole backoff.
_PERMANENT_MARKERS = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
    "must be superuser or replication role",
    "must have replication",
)


def _connect_once(config: PostgresSourceConfig, replication: bool, secret: str) -> Any:
    kwargs: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "user": config.user,
        "password": secret,
        "dbname": config.database,
        "options": SESSION_OPTIONS,
        "application_name": f"lakehouse-cdc:{config.name}",
        "connect_timeout": 10,
        # Detect a dead server on a stream that only waits for data.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        **libpq_options(config, f"PostgreSQL source {config.name!r}"),
    }
    if replication:
        kwargs["connection_factory"] = psycopg2.extras.LogicalReplicationConnection
    return psycopg2.connect(**kwargs)


def connect(config: PostgresSourceConfig, *, replication: bool = False, autocommit: bool = True) -> Any:
    """Open a SQL connection (or a logical replication connection) with bounded backoff.

    Raises `SourceUnavailableError` naming host:port after `config.retry.attempts` tries, and
    `SourceError` at once for failures retrying cannot fix (bad password, missing database, a
    server certificate TLS refuses).
    """
    where = f"{config.host}:{config.port}/{config.database} as {config.user}"
    pause = config.retry.initial_seconds
    last = ""
    presented: list[str] = []  # the secrets tried, to scrub from messages (libpq does not echo them)
    for attempt in range(1, config.retry.attempts + 1):
        secret = connection_secret(config)  # a new IAM token for every attempt
        presented.append(secret)
        try:
            conn = _connect_once(config, replication, secret)
        except psycopg2.OperationalError as exc:
            last = scrub(str(exc).strip(), presented)
            if is_libpq_tls_error(last):
                raise tls_failure(config, f"PostgreSQL source {config.name!r}", last) from None
            if any(marker in last for marker in _PERMANENT_MARKERS):
                raise SourceError(f"cannot connect to PostgreSQL {where}: {last}") from None
            if attempt < config.retry.attempts:
                log.warning(
                    "PostgreSQL %s unreachable (attempt %d/%d), retrying in %.1fs: %s",
                    where,
                    attempt,
                    config.retry.attempts,
                    pause,
                    last,
                )
                time.sleep(pause)
                pause = min(pause * 2, config.retry.max_seconds)
            continue
        if not replication:
            conn.autocommit = autocommit
        return conn
    raise SourceUnavailableError(
        f"PostgreSQL {where} unreachable after {config.retry.attempts} attempts: {last}"
    ) from None


def close_quietly(conn: Any) -> None:
    """Close a connection that may already be broken (cleanup must not mask the real error)."""
    if conn is None:
        return
    try:
        conn.close()
    except psycopg2.Error as exc:  # already closed or broken: nothing left to release
        log.debug("closing connection failed: %s", exc)
