"""Snapshots: the initial one that creates the slot, and backfills while streaming, in chunks.

Both create a logical slot on a replication connection only for its *consistent point*: every
transaction that commits after it is in the slot's stream, and every one that committed before it
is visible to any snapshot taken once the slot exists. That point is the snapshot's low
watermark (LW). The replication connection is closed at once (a temporary slot goes with it), and
each table is then read in primary-key order in chunks of `chunk_rows` rows, each one autocommit
statement ``SELECT ... WHERE (key) > (last) ORDER BY key LIMIT n``: its own snapshot, so no
session holds back the writer's xmin horizon (vacuum) for longer than one chunk's read. The
snapshot commits with LW as its position / floors; the stream re-applies every change after LW in
order over the snapshot rows, which makes the result exact (docs/decisions.md §5; the same
argument as connectors.mysql.snapshot).

* Initial snapshot: the slot is the source's permanent slot; streaming continues from LW.
* Backfill: the slot is TEMPORARY; LW becomes the tables' floor (the running stream skips their
  changes at or below it: every chunk already contains them).
* Resumable snapshot (connectors.snapshot_chunks): `begin_snapshot` creates the permanent slot and
  returns LW; `read_table_chunks` reads one table after a given key, in the same chunks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from connectors.events import Batch, QuarantinedRow, TableChanges, TableId
from connectors.postgres import arrow_reader
from connectors.postgres.catalog import Catalog, TableLayout, qualified
from connectors.postgres.columns import ChangeBuffer
from connectors.postgres.config import PostgresSourceConfig
from connectors.postgres.connection import close_quietly, connect
from connectors.postgres.offset import Lsn
from connectors.postgres.slot import create_slot_with_snapshot, drop_slot, ensure_publication, slot_state
from connectors.snapshot_chunks import SnapshotChunk, SnapshotStart, recorded, resume_key, staged_batches
from connectors.source import SourceError

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 5.0
_UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def initial_snapshot(config: PostgresSourceConfig, tables: Sequence[TableId]) -> Iterator[Batch]:
    """Create the source's slot and yield a snapshot consistent with its starting position.

    A slot that already exists is a leftover of an initial snapshot that did not finish (the
    caller only asks for an initial snapshot while the lake holds nothing of this source), so it
    is dropped and created again: no position in it is needed by anyone, and the new snapshot
    captures everything the old slot would have streamed.
    """
    admin = connect(config)
    try:
        _prepare_source_slot(admin, config, tables)
    finally:
        close_quietly(admin)
    yield from _exported_snapshot(config, tables, config.slot_name, temporary=False, stream_offset=None)


def begin_snapshot(config: PostgresSourceConfig, tables: Sequence[TableId]) -> SnapshotStart:
    """Create the source's slot for a resumable snapshot; its consistent point is the low watermark.

    A slot that exists already is dropped first, as for `initial_snapshot` (here it may also be the
    old slot of a resnapshot, whose stream the new snapshot replaces). Tables without a primary key
    are refused before anything changes on the server.
    """
    admin = connect(config)
    try:
        catalog = Catalog(admin, config.timezone)
        for table in tables:
            if not catalog.describe(table).schema.key:
                raise no_primary_key(table)
        _prepare_source_slot(admin, config, tables)
        low = _create_slot(config, config.slot_name, temporary=False)
        log.info(
            "replication slot %s created at %s for a resumable snapshot of %d table(s)",
            config.slot_name, low, len(tables),
        )  # fmt: skip
        # Described after the consistent point: the schemas the chunks and the stream from it start with.
        empty = tuple(ChangeBuffer(catalog.describe(t)).build()[0] for t in tables)
    finally:
        close_quietly(admin)
    return SnapshotStart(low, empty)


def begin_backfill(
    config: PostgresSourceConfig, tables: Sequence[TableId], stream_offset: Lsn
) -> SnapshotStart:
    """A resumable backfill of `tables` from the stream's committed LSN: no slot of its own.

    A table not yet published is added to the publication first, so the stream carries its
    changes from then on; the chunks are read after that, so they contain every change before.
    """
    admin = connect(config)
    try:
        catalog = Catalog(admin, config.timezone)
        for table in tables:
            if not catalog.describe(table).schema.key:
                raise no_primary_key(table)
        ensure_publication(admin, config.publication_name, _published_tables(config, admin, tables))
        empty = tuple(ChangeBuffer(catalog.describe(t)).build()[0] for t in tables)
    finally:
        close_quietly(admin)
    log.info("resumable backfill of %d table(s) from %s", len(tables), stream_offset)
    return SnapshotStart(stream_offset, empty)


def read_table_chunks(
    config: PostgresSourceConfig, table: TableId, after: Sequence[Any] | None, low: Lsn
) -> Iterator[SnapshotChunk]:
    """`table`'s rows with keys after `after` (None: from the first), in chunks of `chunk_rows`.

    Each chunk is one autocommit statement; the rows carry `low` as their position and the
    server's time at the start as their commit timestamp. `after` holds the key values as the
    server printed them (what the chunks' `after` records).
    """
    reader = connect(config)  # autocommit: each chunk is one statement with its own snapshot
    try:
        snapshot_micros = _server_micros(reader)
        catalog = Catalog(reader, config.timezone)
        layout = catalog.describe(table)
        estimate = catalog.estimated_rows(table)
        start = resume_key(table, after, layout.schema.key)
        if config.snapshot_reader == "arrow":
            yield from _arrow_chunks(config, reader, catalog, layout, low, snapshot_micros, start, estimate)
            return
        for chunk in _read_chunks(
            config, reader, catalog, layout, low.serialize(), snapshot_micros, estimate, start
        ):
            yield recorded(chunk, estimate)
    finally:
        close_quietly(reader)


def _arrow_chunks(
    config: PostgresSourceConfig,
    reader: Any,
    catalog: Catalog,
    layout: TableLayout,
    low: Lsn,
    snapshot_micros: int,
    after: Sequence[Any] | None,
    estimate: int | None,
) -> Iterator[SnapshotChunk]:
    """The chunks read into Arrow by the ADBC driver (`arrow_reader`), the text path on `reader`
    reading any chunk again whose values do not convert exactly."""
    if not layout.schema.key:
        raise no_primary_key(layout.table)
    arrow_conn = arrow_reader.connect_arrow(config)
    try:
        plan = arrow_reader.plan_chunk_reads(layout)
        for chunk in arrow_reader.read_table_chunks(
            arrow_conn, reader, catalog, plan, config.chunk_rows, low.serialize(), snapshot_micros, after,
            readers=config.snapshot_readers,
            open_readers=lambda: (arrow_reader.connect_arrow(config), connect(config)),
        ):  # fmt: skip
            yield recorded(chunk, estimate)
    finally:
        with contextlib.suppress(Exception):
            arrow_conn.close()


def no_primary_key(table: TableId) -> SourceError:
    """The error for a table without a primary key, saying what to do."""
    return SourceError(
        f"table {table} has no primary key; a snapshot reads it in key order and CDC merges changes by key. "
        f'Add one (ALTER TABLE "{table.schema}"."{table.name}" ADD PRIMARY KEY (...)) or leave the table '
        "out of `tables`"
    )


def _prepare_source_slot(conn: Any, config: PostgresSourceConfig, tables: Sequence[TableId]) -> None:
    """Publish `tables` and drop the source's slot if it exists, so that it can be created anew."""
    ensure_publication(conn, config.publication_name, tables)
    if slot_state(conn, config.slot_name) is not None:
        log.warning(
            "replication slot %s exists before the snapshot: a leftover of an unfinished snapshot, or the "
            "old slot of a resnapshot; dropping and recreating it",
            config.slot_name,
        )
        drop_slot(conn, config.slot_name)


def _create_slot(config: PostgresSourceConfig, slot: str, *, temporary: bool) -> Lsn:
    """Create `slot` and return its consistent point; the replication connection is closed at
    once (only the consistent point is needed; closing drops a temporary slot)."""
    replication = connect(config, replication=True)
    try:
        consistent_point, _snapshot_name = create_slot_with_snapshot(
            replication.cursor(), slot, temporary=temporary
        )
    finally:
        close_quietly(replication)
    return consistent_point


def _server_micros(conn: Any) -> int:
    """The server's ``now()`` in microseconds since the Unix epoch."""
    with conn.cursor() as cur:
        cur.execute("SELECT now()")
        now: dt.datetime = cur.fetchone()[0]
    return (now - _UNIX_EPOCH) // dt.timedelta(microseconds=1)


def backfill(config: PostgresSourceConfig, tables: Sequence[TableId], stream_offset: Lsn) -> Iterator[Batch]:
    """Snapshot `tables` while the stream goes on; the final batch keeps the stream at `stream_offset`."""
    admin = connect(config)
    try:
        _check_spare_slot(admin, config)
        # Tables must be published before the snapshot point, so the stream carries every change after it.
        ensure_publication(admin, config.publication_name, _published_tables(config, admin, tables))
    finally:
        close_quietly(admin)
    # A temporary slot's name only has to be unique while this connection lives.
    slot = f"{config.slot_name[:50]}_bf_{uuid.uuid4().hex[:8]}"
    yield from _exported_snapshot(config, tables, slot, temporary=True, stream_offset=stream_offset)


def _check_spare_slot(conn: Any, config: PostgresSourceConfig) -> None:
    """A backfill reads through a temporary slot and WAL sender of its own, beside the stream's:
    say so clearly instead of the server's bare "all replication slots are in use"."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_replication_slots),"
            " current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_replication)"
        )
        max_slots, used_slots, max_senders, used_senders = cur.fetchone()
    if used_slots >= max_slots:
        raise SourceError(
            f"source {config.name}: a backfill needs a temporary replication slot, but all {max_slots} slots are "
            "in use. Fix: drop unused slots or raise max_replication_slots (needs a restart), then retry."
        )
    if used_senders >= max_senders:
        raise SourceError(
            f"source {config.name}: a backfill needs a WAL sender of its own, but all {max_senders} are busy. "
            "Fix: raise max_wal_senders (needs a restart), then retry."
        )


def _published_tables(config: PostgresSourceConfig, conn: Any, tables: Sequence[TableId]) -> list[TableId]:
    """The configured tables plus the ones to backfill (a backfill may add a new table)."""
    catalog = Catalog(conn, config.timezone)
    names = config.tables or tuple(catalog.list_tables(config.schema_name))
    published = [TableId(config.name, config.schema_name, n) for n in names]
    return published + [t for t in tables if t not in published]


def _exported_snapshot(
    config: PostgresSourceConfig,
    tables: Sequence[TableId],
    slot: str,
    *,
    temporary: bool,
    stream_offset: Lsn | None,
) -> Iterator[Batch]:
    consistent_point = _create_slot(config, slot, temporary=temporary)
    log.info(
        "%s slot %s created at %s; reading %d table(s) in chunks of %d rows",
        "temporary" if temporary else "replication", slot, consistent_point, len(tables), config.chunk_rows,
    )  # fmt: skip
    reader = connect(config)  # autocommit: each chunk is one statement with its own snapshot
    try:
        snapshot_micros = _server_micros(reader)
        catalog = Catalog(reader, config.timezone)
        empty: list[TableChanges] = []
        for table in tables:
            layout = catalog.describe(table)
            estimate = catalog.estimated_rows(table)
            chunks = _read_chunks(
                config, reader, catalog, layout, consistent_point.serialize(), snapshot_micros, estimate
            )
            rows = yield from staged_batches(chunks, stream_offset)
            if rows == 0:
                # An empty table still tells the lake its schema.
                empty.append(ChangeBuffer(layout).build()[0])
        end = stream_offset if stream_offset is not None else consistent_point
        yield Batch(
            start=stream_offset,
            end=end,
            changes=tuple(empty),
            complete=True,
            snapshot=frozenset(tables),
            floors={t: consistent_point for t in tables},
        )
    finally:
        close_quietly(reader)


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One chunk of a table: its rows as changes, and the key it ended at.

    `key` holds the last row's key values as the server's text (the key read started after, for a
    chunk without rows); `last` says the table has no rows after this chunk.
    """

    changes: TableChanges
    quarantined: tuple[QuarantinedRow, ...]
    key: tuple[Any, ...] | None
    rows: int
    last: bool


def _read_chunks(
    config: PostgresSourceConfig,
    conn: Any,
    catalog: Catalog,
    layout: TableLayout,
    position: str,
    snapshot_micros: int,
    estimate: int | None,
    after: Sequence[Any] | None = None,
) -> Iterator[_Chunk]:
    """Read one table in key order after key `after` (None: from the first row), `chunk_rows` rows
    per statement, converting each chunk by column. A full chunk is followed by another read, which
    may find no rows: that chunk (without rows) is the last."""
    table = layout.table
    if not layout.schema.key:
        raise no_primary_key(table)
    names = layout.schema.column_names
    keys = [sql.Identifier(k) for k in layout.schema.key]
    key_at = layout.key_indexes
    select = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(n) for n in names), qualified(table)
    )
    order = sql.SQL(" ORDER BY {} LIMIT {}").format(sql.SQL(", ").join(keys), sql.Literal(config.chunk_rows))
    # Continue after the last key: the key values are passed back as the text the server printed,
    # as untyped literals, which the server reads with the key columns' own input functions.
    after_key = sql.SQL(" WHERE ({}) > ({})").format(
        sql.SQL(", ").join(keys), sql.SQL(", ").join(sql.Placeholder() * len(keys))
    )
    # Hand over each value exactly as the type's output function rendered it - what pgoutput
    # sends too. (A ::text cast is not the same: bool::text is 'true', char(n)::text drops the
    # padding, inet::text adds the netmask.)
    raw_text = psycopg2.extensions.new_type(catalog.loaded_type_oids(), "LAKEHOUSE_RAW_TEXT", _raw_text)
    started = last_report = time.monotonic()
    done = chunks = 0
    last: tuple[Any, ...] | None = None if after is None else tuple(after)
    while True:
        with conn.cursor() as cur:
            psycopg2.extensions.register_type(raw_text, cur)
            if last is None:
                cur.execute(select + order)
            else:
                cur.execute(select + after_key + order, last)
            rows = cur.fetchall()
            if rows and len(cur.description) != len(names):
                raise SourceError(f"table {table} changed while it was read; run the snapshot again")
        buffer = ChangeBuffer(layout)
        if rows:
            last = tuple(rows[-1][i] for i in key_at)
            for target, values in zip(buffer.columns, zip(*rows, strict=True), strict=True):
                target.extend(values)
            buffer.ops.extend(["I"] * len(rows))
            buffer.close_segment(position, snapshot_micros, None)
            done += len(rows)
            chunks += 1
        changes, quarantined = buffer.build()
        final = len(rows) < config.chunk_rows
        yield _Chunk(changes, tuple(quarantined), last, len(rows), final)
        now = time.monotonic()
        if now - last_report >= PROGRESS_EVERY_SECONDS:
            last_report = now
            log.info(
                "snapshot of %s: %d chunk(s), %s", table, chunks, _progress(done, estimate, now - started)
            )
        if final:
            break
    log.info(
        "snapshot of %s finished: %d rows in %d chunk(s), %.1fs",
        table,
        done,
        chunks,
        time.monotonic() - started,
    )


def _raw_text(value: str | None, _cursor: Any) -> str | None:
    return value


def _progress(done: int, estimate: int | None, seconds: float) -> str:
    rate = done / seconds if seconds > 0 else 0.0
    if estimate:
        return (
            f"{done:,} of ~{estimate:,} rows ({min(100.0, 100.0 * done / estimate):.0f}%), {rate:,.0f} rows/s"
        )
    return f"{done:,} rows, {rate:,.0f} rows/s"
