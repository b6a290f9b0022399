"""Consistent snapshots of MariaDB tables without a global lock.

``START TRANSACTION WITH CONSISTENT SNAPSHOT`` gives an InnoDB read view, and MariaDB reports the
binlog file/offset that view is consistent with in the ``binlog_snapshot_file`` /
``binlog_snapshot_position`` status variables of the same session; ``BINLOG_GTID_POS(file, pos)``
turns that into the GTID position (MariaDB KB "Enhancements for START TRANSACTION WITH
CONSISTENT SNAPSHOT" and "BINLOG_GTID_POS"). Streaming from that position then continues
exactly where the snapshot ends: no FLUSH TABLES WITH READ LOCK is needed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator, Sequence

import pymysql
import pymysql.cursors

from connectors.events import Batch, Op, QuarantinedRow, TableChanges, TableId
from connectors.mysql.columns import RowConverter, changes_table
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.connection import connect, endpoint, fetch_all, fetch_value
from connectors.mysql.offset import MariaGtidPosition
from connectors.mysql.schema import TableDefinition, read_table_definition
from connectors.mysql.types import quote_identifier, snapshot_select_expression
from connectors.source import SourceError

logger = logging.getLogger(__name__)

PROGRESS_LOG_SECONDS = 5.0


def read_snapshot(
    config: MySQLSourceConfig, tables: Sequence[TableId], stream_offset: MariaGtidPosition | None = None
) -> Iterator[Batch]:
    """Yield the snapshot of `tables` as incomplete batches, then the complete batch that commits it.

    Initial snapshot (`stream_offset` None): the final batch has start None and end = the
    snapshot's GTID position. Backfill of tables into a running stream: start = end =
    `stream_offset` (the stream does not move) and only `floors` carry the snapshot position,
    so the stream skips those tables' changes that the snapshot already contains.
    """
    conn = connect(config, cursorclass=pymysql.cursors.SSCursor, autocommit=False)
    try:
        position, snapshot_ts = _begin_snapshot(conn, config)
        logger.info(
            "%s: snapshot of %d table(s) consistent with GTID position %s",
            endpoint(config),
            len(tables),
            position,
        )
        definitions = [read_table_definition(conn, t) for t in tables]
        estimates = _estimated_rows(conn, tables)
        start = stream_offset
        empty: list[TableChanges] = []
        for definition in definitions:
            rows_read = 0
            for batch in _read_table(conn, config, definition, position, snapshot_ts, start, estimates):
                rows_read += batch.num_rows + len(batch.quarantined)
                yield batch
            if rows_read == 0:
                # Still tell the sink the table's schema: it replaces the table with no rows.
                converter = RowConverter.for_snapshot(definition, config.timezone)
                converted = converter.convert([], [])
                data = changes_table(definition, converted, snapshot_ts, position.serialize(), None)
                empty.append(TableChanges(definition.schema, data))
        conn.commit()
        yield Batch(
            start=start,
            end=stream_offset if stream_offset is not None else position,
            changes=tuple(empty),
            complete=True,
            snapshot=frozenset(tables),
            floors={t: position for t in tables},
        )
    finally:
        # Closing the connection, not the unbuffered cursor: closing the cursor would first read
        # the rest of a table nobody wants any more.
        with contextlib.suppress(Exception):
            conn.close()


def _begin_snapshot(
    conn: pymysql.connections.Connection, config: MySQLSourceConfig
) -> tuple[MariaGtidPosition, dt.datetime]:
    fetch_all(conn, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    fetch_all(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    status = {str(k).lower(): v for k, v in fetch_all(conn, "SHOW STATUS LIKE 'binlog_snapshot_%'")}
    file, offset = status.get("binlog_snapshot_file"), status.get("binlog_snapshot_position")
    if not file or offset is None:
        raise SourceError(
            f"{endpoint(config)}: the server reports no binlog snapshot position; is log_bin ON?"
        )
    gtid_text = fetch_value(conn, "SELECT BINLOG_GTID_POS(%s, %s)", (file, int(offset)))
    if gtid_text is None:
        raise SourceError(f"{endpoint(config)}: BINLOG_GTID_POS({file!r}, {offset}) returned NULL")
    snapshot_ts = fetch_value(conn, "SELECT UTC_TIMESTAMP(6)")
    return MariaGtidPosition.parse(str(gtid_text)), snapshot_ts.replace(tzinfo=dt.UTC)


def _estimated_rows(conn: pymysql.connections.Connection, tables: Sequence[TableId]) -> dict[TableId, int]:
    estimates: dict[TableId, int] = {}
    for t in tables:
        value = fetch_value(
            conn,
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (t.schema, t.name),
        )
        estimates[t] = int(value or 0)
    return estimates


def _read_table(
    conn: pymysql.connections.Connection,
    config: MySQLSourceConfig,
    definition: TableDefinition,
    position: MariaGtidPosition,
    snapshot_ts: dt.datetime,
    start: MariaGtidPosition | None,
    estimates: dict[TableId, int],
) -> Iterator[Batch]:
    table = definition.table
    schema = definition.schema
    exprs = ", ".join(
        snapshot_select_expression(c.name, t) for c, t in zip(schema.columns, definition.types, strict=True)
    )
    sql = f"SELECT {exprs} FROM {quote_identifier(table.schema)}.{quote_identifier(table.name)}"
    converter = RowConverter.for_snapshot(definition, config.timezone)
    position_text = position.serialize()
    cur = conn.cursor(pymysql.cursors.SSCursor)
    cur.execute(sql)
    names = tuple(d[0] for d in cur.description)
    if len(names) != len(schema.columns):
        raise SourceError(
            f"table {table.schema}.{table.name} changed while the snapshot started; run it again"
        )
    total, last_log = 0, time.monotonic()
    while True:
        rows = cur.fetchmany(config.chunk_rows)
        if not rows:
            break
        converted = converter.convert(rows, [Op.INSERT.value] * len(rows))
        quarantined = tuple(
            QuarantinedRow(table, position_text, snapshot_ts, r.reason, r.payload) for r in converted.rejected
        )
        data = changes_table(definition, converted, snapshot_ts, position_text, None)
        total += len(rows)
        yield Batch(
            start=start,
            end=None,
            changes=(TableChanges(schema, data),),
            complete=False,
            quarantined=quarantined,
        )
        if time.monotonic() - last_log >= PROGRESS_LOG_SECONDS:
            last_log = time.monotonic()
            logger.info("snapshot of %s: %d of about %d rows", table, total, estimates.get(table, 0))
    cur.close()
    logger.info("snapshot of %s: done, %d rows", table, total)
