"""Lock-free, chunked snapshots of MariaDB and MySQL 8 / Aurora MySQL 3 tables.

No global read lock (Aurora does not grant one) and no long transaction: the snapshot first reads
the server's GTID position (the *low watermark*), then reads each table in primary-key order as
chunks of at most `chunk_rows` rows, each chunk one autocommit ``SELECT ... WHERE key > last ORDER
BY key LIMIT n`` (its own InnoDB read view, released when the chunk is read). The snapshot commits
with the low watermark as its position, and the stream resumes from there.

Why that is exact (docs/decisions.md §11): every chunk is read after the low watermark, so it
holds every transaction up to it; the stream then delivers every transaction after it, in order,
and the lake applies them over the snapshot rows as full row images (latest per key wins). A
change already contained in a chunk is applied again with the same image, a change the chunk
missed is applied, a row that moved between chunks (a primary-key update) is deleted and inserted
by the stream. DBLog and Flink CDC correct each chunk against the binlog between a low and a high
watermark inside the reader; here the lake's ordered merge does that correction, for every chunk
at once. The change log still holds every source transaction exactly once.

With `readers` > 1 the key space of each table is split at sampled key values into that many
ranges, read in parallel (each range still in chunks); a bounded queue keeps memory to about
`readers + 1` chunks.

The resumable snapshot (connectors.snapshot_chunks) reads the same chunks: `begin_snapshot` fixes
the low watermark, `read_table_chunks` reads one table after a given key with one reader (a single
key to resume from), each chunk carrying the raw key it ended at.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pymysql
import pymysql.cursors

from connectors.events import Batch, Op, QuarantinedRow, TableChanges, TableId
from connectors.mysql import arrow_reader
from connectors.mysql.columns import RowConverter, changes_table
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.connection import connect, endpoint, fetch_all, fetch_value
from connectors.mysql.offset import BinlogPosition
from connectors.mysql.position import current_gtid_position
from connectors.mysql.schema import TableDefinition, read_table_definition
from connectors.mysql.types import quote_identifier, snapshot_select_expression
from connectors.snapshot_chunks import SnapshotChunk, SnapshotStart, recorded, resume_key, staged_batches
from connectors.source import SourceError

logger = logging.getLogger(__name__)

PROGRESS_LOG_SECONDS = 5.0
KeyValues = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Primary-key values from `low` (inclusive; None: the first) to `high` (exclusive; None: the end)."""

    low: KeyValues | None
    high: KeyValues | None


def read_snapshot(
    config: MySQLSourceConfig,
    flavor: str,
    tables: Sequence[TableId],
    stream_offset: BinlogPosition | None = None,
) -> Iterator[Batch]:
    """Yield the snapshot of `tables` as incomplete batches, then the complete batch that commits it.

    Initial snapshot (`stream_offset` None): the final batch has start None and end = the low
    watermark. Backfill of tables into a running stream: start = end = `stream_offset` (the stream
    does not move) and `floors` carry the low watermark, so a stream that resumes from
    `stream_offset` skips those tables' changes the snapshot certainly contains.
    """
    control = connect(config)
    try:
        low = _low_watermark(control, flavor)
        snapshot_ts = _server_time(control)
        logger.info(
            "%s: snapshot of %d table(s) in chunks of %d rows with %d reader(s), from GTID position %s",
            endpoint(config), len(tables), config.chunk_rows, config.snapshot_readers, low,
        )  # fmt: skip
        definitions = [read_table_definition(control, t) for t in tables]
        empty: list[TableChanges] = []
        for definition in definitions:
            estimate = _estimated_rows(control, definition.table)
            ranges = _split_key_space(control, definition, estimate, config.snapshot_readers)
            reader = _TableReader(config, definition, low.serialize(), snapshot_ts)
            rows_read = yield from staged_batches(reader.read(ranges, estimate), stream_offset)
            if rows_read == 0:
                # Still tell the sink the table's schema: it replaces the table with no rows.
                empty.append(reader.convert([])[0])
        yield Batch(
            start=stream_offset,
            end=stream_offset if stream_offset is not None else low,
            changes=tuple(empty),
            complete=True,
            snapshot=frozenset(tables),
            floors={t: low for t in tables},
        )
    finally:
        with contextlib.suppress(Exception):
            control.close()


def begin_snapshot(
    config: MySQLSourceConfig,
    flavor: str,
    tables: Sequence[TableId],
    stream_offset: BinlogPosition | None = None,
) -> SnapshotStart:
    """The low watermark of a resumable snapshot and each table's schema, as no rows.

    The low watermark is the GTID position read first; for a backfill into a running stream it is
    the stream's committed `stream_offset` (the server is at or past it, so every chunk read
    afterwards contains the changes up to it).
    """
    control = connect(config)
    try:
        low = _low_watermark(control, flavor) if stream_offset is None else stream_offset
        snapshot_ts = _server_time(control)
        definitions = [read_table_definition(control, t) for t in tables]
    finally:
        with contextlib.suppress(Exception):
            control.close()
    what = "snapshot" if stream_offset is None else "backfill"
    logger.info(
        "%s: resumable %s of %d table(s) from GTID position %s", endpoint(config), what, len(tables), low
    )
    empty = tuple(_TableReader(config, d, low.serialize(), snapshot_ts).convert([])[0] for d in definitions)
    return SnapshotStart(low, empty)


def read_table_chunks(
    config: MySQLSourceConfig,
    flavor: str,
    table: TableId,
    after: Sequence[Any] | None,
    low: BinlogPosition,
) -> Iterator[SnapshotChunk]:
    """`table`'s rows with keys after `after` (None: from the first), in chunks of `chunk_rows`.

    Each chunk is one autocommit statement; the rows carry `low` as their position and the server's
    time at the start as their commit timestamp. The Arrow path reads `snapshot_readers` chunks at
    once (`planned_chunks`); the PyMySQL path reads one at a time.
    """
    control = connect(config)
    try:
        _use_fresh_statistics(control, flavor)
        snapshot_ts = _server_time(control)
        definition = read_table_definition(control, table)
        estimate = _estimated_rows(control, table)
    finally:
        with contextlib.suppress(Exception):
            control.close()
    start = resume_key(table, after, definition.schema.key)
    if config.snapshot_reader == "arrow":
        try:
            arrow_reader.check_connection_supported(config)
            plan = arrow_reader.plan_chunk_reads(definition, config.timezone)
        except arrow_reader.ArrowReadUnsupported as exc:
            logger.info("snapshot of %s through PyMySQL: %s", table, exc)
        else:
            yield from _arrow_chunks(config, plan, low, snapshot_ts, start, estimate)
            return
    reader = _TableReader(config, definition, low.serialize(), snapshot_ts)
    for chunk in reader.read([KeyRange(None, None)], estimate, after=start):
        yield recorded(chunk, estimate)


def _arrow_chunks(
    config: MySQLSourceConfig,
    plan: arrow_reader.ChunkPlan,
    low: BinlogPosition,
    snapshot_ts: dt.datetime,
    after: KeyValues | None,
    estimate: int,
) -> Iterator[SnapshotChunk]:
    """The chunks read into Arrow by connectorx (`arrow_reader`), PyMySQL reading any chunk again
    whose values the vectorised conversion refuses."""
    reference = connect(config, cursorclass=pymysql.cursors.SSCursor)
    try:
        for chunk in arrow_reader.read_table_chunks(
            arrow_reader.connectorx_url(config), plan, config.chunk_rows, position_text=low.serialize(),
            snapshot_ts=snapshot_ts, reference_conn=reference, after=after, readers=config.snapshot_readers,
            open_reference=lambda: connect(config, cursorclass=pymysql.cursors.SSCursor),
        ):  # fmt: skip
            yield recorded(chunk, estimate)
    finally:
        with contextlib.suppress(Exception):
            reference.close()


def _low_watermark(conn: pymysql.connections.Connection, flavor: str) -> BinlogPosition:
    """The GTID position now, read before any table (the session also gets fresh statistics)."""
    _use_fresh_statistics(conn, flavor)
    return current_gtid_position(conn, flavor)


def _use_fresh_statistics(conn: pymysql.connections.Connection, flavor: str) -> None:
    if flavor == "mysql":
        # MySQL 8 caches information_schema row counts for a day; the estimates split tables.
        fetch_all(conn, "SET SESSION information_schema_stats_expiry = 0")


def _server_time(conn: pymysql.connections.Connection) -> dt.datetime:
    value: dt.datetime = fetch_value(conn, "SELECT UTC_TIMESTAMP(6)")
    return value.replace(tzinfo=dt.UTC)


def _estimated_rows(conn: pymysql.connections.Connection, table: TableId) -> int:
    value = fetch_value(
        conn,
        "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        (table.schema, table.name),
    )
    return int(value or 0)


def _split_key_space(
    conn: pymysql.connections.Connection, definition: TableDefinition, estimate: int, readers: int
) -> list[KeyRange]:
    """`readers` ranges of the key space, split at key values sampled at even row offsets."""
    if readers <= 1 or estimate < 2 * readers:
        return [KeyRange(None, None)]
    keys = ", ".join(quote_identifier(k) for k in definition.schema.key)
    table = _qualified(definition.table)
    points: list[KeyValues] = []
    for i in range(1, readers):
        rows = fetch_all(
            conn, f"SELECT {keys} FROM {table} ORDER BY {keys} LIMIT 1 OFFSET {estimate * i // readers}"
        )
        if rows and (not points or tuple(rows[0]) > points[-1]):
            points.append(tuple(rows[0]))
    bounds: list[KeyValues | None] = [None, *points, None]
    return [KeyRange(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def _qualified(table: TableId) -> str:
    return f"{quote_identifier(table.schema)}.{quote_identifier(table.name)}"


def key_condition(keys: Sequence[str], op: str) -> str:
    """SQL comparing the key columns, as a row, with as many placeholders: ``(k1, k2) op (%s, %s)``.

    Spelled out (``k1 > %s OR (k1 = %s AND k2 > %s)``, with a leading ``k1 >= %s``) because that
    form is range-optimised on every MariaDB and MySQL version. Parameters: `key_parameters`.
    """
    base = op[0]  # the strict comparison, for every column but the last
    quoted = [quote_identifier(k) for k in keys]
    terms = []
    for i, column in enumerate(quoted):
        last = i == len(quoted) - 1
        cmp = op if last else base
        equal = [f"{c} = %s" for c in quoted[:i]]
        terms.append("(" + " AND ".join([*equal, f"{column} {cmp} %s"]) + ")")
    return f"({quoted[0]} {base}= %s AND ({' OR '.join(terms)}))"


def key_where(keys: Sequence[str], *bounds: tuple[str, KeyValues | None]) -> tuple[str, list[Any]]:
    """A ``WHERE`` clause (empty when every bound is None) and its parameters, bounding the key by
    each ``(op, values)`` with values (e.g. ``(">", last), ("<=", end)``)."""
    conditions: list[str] = []
    params: list[Any] = []
    for op, values in bounds:
        if values is not None:
            conditions.append(key_condition(keys, op))
            params.extend(key_parameters(values))
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params


def key_parameters(values: KeyValues) -> list[Any]:
    """The parameters of `key_condition` for one key value."""
    params: list[Any] = [values[0]]
    for i in range(len(values)):
        params.extend(values[: i + 1])
    return params


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One chunk of a key range: its rows as changes, and the raw key it ended at.

    `key` is the raw key of the last row read so far in the range (the key the range started
    after, for a chunk without rows); `last` says the range has no rows after this chunk.
    """

    changes: TableChanges
    quarantined: tuple[QuarantinedRow, ...]
    key: KeyValues | None
    rows: int
    last: bool


class _TableReader:
    """Reads one table's key ranges in chunks (in parallel when there are several ranges)."""

    def __init__(
        self,
        config: MySQLSourceConfig,
        definition: TableDefinition,
        position_text: str,
        snapshot_ts: dt.datetime,
    ) -> None:
        self.config = config
        self.definition = definition
        self.position_text = position_text
        self.snapshot_ts = snapshot_ts
        schema = definition.schema
        exprs = [
            snapshot_select_expression(c.name, t)
            for c, t in zip(schema.columns, definition.types, strict=True)
        ]
        keys = [quote_identifier(k) for k in schema.key]
        # The raw key columns come last, to continue from: the expressions may change a value's text.
        self.select = f"SELECT {', '.join([*exprs, *keys])} FROM {_qualified(definition.table)}"
        self.order = f" ORDER BY {', '.join(keys)} LIMIT {int(config.chunk_rows)}"
        self.width = len(schema.columns)
        self.key_width = len(keys)
        self.converter = RowConverter.for_snapshot(definition, config.timezone)
        self._lock = threading.Lock()
        self.rows = 0
        self.chunks = 0

    def convert(self, rows: list[tuple[Any, ...]]) -> tuple[TableChanges, tuple[QuarantinedRow, ...]]:
        """Rows as the table's changes (inserts), and the rows that could not be converted."""
        with self._lock:  # one converter for the readers of a table
            converted = self.converter.convert(rows, [Op.INSERT.value] * len(rows))
        data = changes_table(self.definition, converted, self.snapshot_ts, self.position_text, None)
        quarantined = tuple(
            QuarantinedRow(self.definition.table, self.position_text, self.snapshot_ts, r.reason, r.payload)
            for r in converted.rejected
        )
        return TableChanges(self.definition.schema, data), quarantined

    def read(
        self, ranges: Sequence[KeyRange], estimate: int, after: KeyValues | None = None
    ) -> Iterator[_Chunk]:
        """The chunks of `ranges` (of the one range after key `after`, when given), logging progress.

        Each range ends with a chunk marked `last`; that chunk holds no rows when the range's
        previous chunk was full.
        """
        if after is not None and len(ranges) != 1:
            raise ValueError("a read that continues after a key covers one key range")
        started = last_log = time.monotonic()
        table = self.definition.table
        for chunk in self._chunks(ranges, after):
            if chunk.rows:
                self.rows += chunk.rows
                self.chunks += 1
            yield chunk
            now = time.monotonic()
            if now - last_log >= PROGRESS_LOG_SECONDS:
                last_log = now
                rate = self.rows / max(now - started, 1e-9)
                left = max(estimate - self.rows, 0)
                logger.info(
                    "snapshot of %s: %d chunk(s), %d of about %d rows, %.0f rows/s, about %.0f s left",
                    table, self.chunks, self.rows, estimate, rate, left / rate if rate else 0.0,
                )  # fmt: skip
        elapsed = time.monotonic() - started
        logger.info(
            "snapshot of %s: done, %d rows in %d chunk(s), %.1f s (%.0f rows/s)",
            table, self.rows, self.chunks, elapsed, self.rows / max(elapsed, 1e-9),
        )  # fmt: skip

    def _chunks(self, ranges: Sequence[KeyRange], after: KeyValues | None) -> Iterator[_Chunk]:
        if len(ranges) == 1:
            conn = connect(self.config, cursorclass=pymysql.cursors.SSCursor)
            try:
                yield from self._read_range(conn, ranges[0], after)
            finally:
                with contextlib.suppress(Exception):
                    conn.close()
            return
        yield from self._parallel(ranges)

    def _parallel(self, ranges: Sequence[KeyRange]) -> Iterator[_Chunk]:
        """Each range in its own thread and connection; chunks handed over through a bounded queue."""
        out: queue.Queue[_Chunk | BaseException | None] = queue.Queue(maxsize=len(ranges))
        stop = threading.Event()

        def work(key_range: KeyRange) -> None:
            try:
                conn = connect(self.config, cursorclass=pymysql.cursors.SSCursor)
                try:
                    for chunk in self._read_range(conn, key_range, None):
                        while not stop.is_set():
                            with contextlib.suppress(queue.Full):
                                out.put(chunk, timeout=0.5)
                                break
                        if stop.is_set():
                            return
                finally:
                    with contextlib.suppress(Exception):
                        conn.close()
                out.put(None)
            except BaseException as exc:  # handed to the consumer, which raises it
                out.put(exc)

        threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in ranges]
        for t in threads:
            t.start()
        running = len(threads)
        try:
            while running:
                item = out.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)

    def _read_range(
        self, conn: pymysql.connections.Connection, key_range: KeyRange, after: KeyValues | None
    ) -> Iterator[_Chunk]:
        """Chunks of one key range (after key `after`, when given): each one statement, so no read
        view outlives a chunk. A full chunk is followed by another read, which may find no rows."""
        keys = self.definition.schema.key
        last = after
        while True:
            lower = (">", last) if last is not None else (">=", key_range.low)
            where, params = key_where(keys, lower, ("<", key_range.high))
            with conn.cursor() as cur:
                cur.execute(self.select + where + self.order, params)
                rows = list(cur.fetchall())
            if rows and len(rows[0]) != self.width + self.key_width:
                raise SourceError(f"table {self.definition.table} changed while it was read; run it again")
            if rows:
                last = tuple(rows[-1][self.width :])
            changes, quarantined = self.convert([r[: self.width] for r in rows])
            done = len(rows) < self.config.chunk_rows
            yield _Chunk(changes, quarantined, last, len(rows), done)
            if done:
                return
