"""psycopg2 connections to the source, with bounded retry and fixed session settings.

Every connection (SQL and replication) pins the settings that decide how values are rendered as
text, because the snapshot (read as raw output text) and pgoutput (the type's output function, run in the
walsender with the walsender's settings; with binary values, for the types still sent as text) must
produce the very same text for the converters in `connectors.postgres.types`:

* ``TimeZone=UTC`` - timestamptz renders as ``... +00``, independent of the server's default;
* ``DateStyle=ISO`` - ``YYYY-MM-DD``; ``IntervalStyle=iso_8601`` - intervals as ``P1DT2H``;
* ``extra_float_digits=3`` - shortest exact float text on PostgreSQL 12+, round-trip on older ones;
* ``bytea_output=hex``, ``client_encoding=UTF8`` - pgoutput converts values to the client encoding.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

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


def _scrub(text: str, config: PostgresSourceConfig) -> str:
    """Remove the password from a driver message (libpq does not echo it, but be certain)."""
    secret = config.password.get_secret_value()
    return text.replace(secret, "***") if secret else text


def _connect_once(config: PostgresSourceConfig, replication: bool) -> Any:
    kwargs: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "user": config.user,
        "password": config.password.get_secret_value(),
        "dbname": config.database,
        "options": SESSION_OPTIONS,
        "application_name": f"lakehouse-cdc:{config.name}",
        "connect_timeout": 10,
        # Detect a dead server on a stream that only waits for data.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    if replication:
        kwargs["connection_factory"] = psycopg2.extras.LogicalReplicationConnection
    return psycopg2.connect(**kwargs)


def connect(config: PostgresSourceConfig, *, replication: bool = False, autocommit: bool = True) -> Any:
    """Open a SQL connection (or a logical replication connection) with bounded backoff.

    Raises `SourceUnavailableError` naming host:port after `config.retry.attempts` tries, and
    `SourceError` at once for failures retrying cannot fix (bad password, missing database).
    """
    where = f"{config.host}:{config.port}/{config.database} as {config.user}"
    pause = config.retry.initial_seconds
    last = ""
    for attempt in range(1, config.retry.attempts + 1):
        try:
            conn = _connect_once(config, replication)
        except psycopg2.OperationalError as exc:
            last = _scrub(str(exc).strip(), config)
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
