"""Turning the pgoutput message stream into `Batch`es that end at transaction boundaries.

Positions. pgoutput (non-streaming mode) sends each transaction whole, at its commit, in commit
order. A transaction's Begin carries the LSN of its commit record (``final_lsn``, the record's
start, S); its Commit carries the record's end (E), which is the value to confirm with
``send_feedback(flush_lsn=E)`` once the lake has the transaction (confirming S re-delivers it).
Complete batches end at an E, and rows carry ``E.serialize()`` (``pg-lsn:X/Y``) as `_position`.

Skipping. The slot may re-deliver transactions the lake already has (the slot is confirmed only
after the lake commit), and snapshots/backfills set per-table floors. A transaction is already in
the lake iff its commit record starts before the offset (S < offset): offsets are ends of commit
records or slot consistent points, both WAL record boundaries, so S < offset <=> E <= offset. The
server decides the same way (a slot streams commits whose record starts at or after its
consistent point). Deciding at Begin lets a skipped transaction's rows be dropped as they arrive.

Memory. Rows are buffered per transaction as raw text columns; committed transactions are merged
into the pending batch until `batch_max_rows` rows or `batch_max_seconds`. A transaction with more
than `chunk_rows` rows is sent on as incomplete batches (``complete=False, end=None``) while it is
still arriving, then closed by a complete batch at its Commit. Its rows carry ``str(S)``
(``final_lsn``) as `_position` throughout, because E is unknown until the Commit and a transaction
should carry one position; S still orders it after every earlier transaction's rows.

Idle sources. Keepalives report the walsender's position (``cursor.wal_end``): everything that
committed below it has been sent. When no captured table changes and a keepalive moves that
position, a row-less complete batch ending there is yielded at once, so that the lake records the
position and the pipeline's acknowledgement can move the slot (otherwise the server keeps WAL for
an idle slot). At once matters: psycopg2 (2.8+) itself confirms a keepalive's position once every
message received was confirmed, and a stream stopped before the lake recorded that position would
find the slot ahead of the lake on restart. Keepalives are asked for every
`idle_heartbeat_seconds / 2`. This keeps "the slot never runs ahead of the lake" true, which is
what lets a slot position ahead of the lake's offset be reported as lost data.

Unchanged TOAST. An UPDATE that leaves a TOASTed (large, out-of-line) value alone does not send it
(a 'u' marker). With REPLICA IDENTITY FULL the old tuple carries the value and it is copied over;
otherwise the cell is null and ``TableChanges.unchanged`` names it, for the lake to keep its value.

Truncate. A TRUNCATE ends the batch: the truncating transaction's batch names the table in
``Batch.snapshot`` (its state is replaced by the rows that follow the TRUNCATE in that transaction,
usually none); rows of that table earlier in the same transaction are dropped.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg2

from connectors.events import Batch, QuarantinedRow, TableChanges, TableId
from connectors.postgres.catalog import Catalog, TableLayout
from connectors.postgres.columns import ChangeBuffer
from connectors.postgres.config import PostgresSourceConfig
from connectors.postgres.offset import Lsn
from connectors.postgres.pgoutput import (
    BEGIN,
    COMMIT,
    DELETE,
    INSERT,
    KEY_TUPLE,
    MESSAGE,
    NEW_TUPLE,
    OLD_TUPLE,
    ORIGIN,
    RELATION,
    TRUNCATE,
    TYPE,
    UPDATE,
    PgoutputError,
    Relation,
    append_tuple,
    parse_begin,
    parse_commit,
    parse_relation,
    parse_truncate,
    read_tuple,
    relation_id,
)
from connectors.source import SourceUnavailableError

log = logging.getLogger(__name__)

# How often a bounded run asks the server for its position while waiting to reach `until`.
PROBE_SECONDS = 0.2
_UNROUTED = object()


@dataclass(eq=False, slots=True)
class _RelationVersion:
    """A relation as of its latest Relation message; identity-hashed (one buffer per version)."""

    relation: Relation
    table: TableId
    layout: TableLayout | None  # None: not a captured table


class _Transaction:
    """The transaction being received: its rows per relation version and how to route them."""

    __slots__ = (
        "final_lsn",
        "commit_micros",
        "xid",
        "skip",
        "routes",
        "buffers",
        "rows",
        "chunked",
        "truncated",
    )

    def __init__(self, final_lsn: int, commit_micros: int, xid: int, skip: bool) -> None:
        self.final_lsn = final_lsn
        self.commit_micros = commit_micros
        self.xid = str(xid)
        self.skip = skip
        self.routes: dict[int, ChangeBuffer | None] = {}
        self.buffers: dict[_RelationVersion, ChangeBuffer] = {}
        self.rows = 0
        self.chunked = False
        self.truncated: set[TableId] = set()


def _row_append(buffer: ChangeBuffer, values: list[bytes | None], op: str) -> None:
    for column, value in zip(buffer.columns, values, strict=True):
        column.append(value)
    buffer.ops.append(op)


class ChangeStream:
    """Decodes one replication session into batches; see the module docstring for the rules."""

    def __init__(
        self,
        config: PostgresSourceConfig,
        catalog: Catalog,
        captured: set[TableId],
        since: Lsn,
        floors: Mapping[TableId, Lsn],
        until: Lsn | None,
        server_flush_lsn: Callable[[], Lsn],
    ) -> None:
        self._config = config
        self._catalog = catalog
        self._captured = captured
        self._since = since.value
        self._floors = {t: f.value for t, f in floors.items()}
        self._until = until.value if until is not None else None
        self._server_flush_lsn = server_flush_lsn
        self._relations: dict[int, _RelationVersion] = {}
        self._pending: dict[_RelationVersion, ChangeBuffer] = {}
        self._pending_rows = 0
        self._pending_end = 0
        self._pending_since = 0.0
        self._last_commit_micros: int | None = None
        self.last_end = since.value  # end of the last complete batch yielded
        self.seen = since.value  # every transaction committing below this has been received

    # --- the receive loop ------------------------------------------------------------------------

    def batches(self, cursor: Any) -> Iterator[Batch]:
        """Read messages from a started replication cursor and yield batches; stops at `until`."""
        try:
            yield from self._loop(cursor)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            raise SourceUnavailableError(
                f"replication connection to {self._config.host}:{self._config.port} lost: {str(exc).strip()}"
            ) from None

    def _loop(self, cursor: Any) -> Iterator[Batch]:
        read_message = cursor.read_message
        config = self._config
        chunk_rows = config.chunk_rows
        txn: _Transaction | None = None
        routes: dict[int, ChangeBuffer | None] = {}
        last_yield = time.monotonic()
        last_probe = 0.0
        probe_target: int | None = None
        while True:
            message = read_message()
            if message is None:
                # Caught up for now: flush a due batch, check whether the run is done, then wait.
                now = time.monotonic()
                if txn is None:
                    self.seen = max(self.seen, cursor.wal_end)
                if self._pending and now - self._pending_since >= config.batch_max_seconds:
                    yield self._flush_pending()
                    last_yield = now
                if txn is None and self._until is not None:
                    if self.seen >= self._until or (probe_target is not None and self.seen >= probe_target):
                        yield from self._finish()
                        return
                    if now - last_probe >= PROBE_SECONDS:
                        # Measure the server's flushed position first, then ask for a keepalive: once
                        # its wal_end reaches that position, everything before it has been received.
                        probe_target = min(self._until, self._server_flush_lsn().value)
                        cursor.send_feedback(reply=True, force=True)
                        last_probe = now
                elif txn is None and not self._pending:
                    if self.seen > self.last_end:
                        # At once, not after a pause: psycopg2 confirms a keepalive's position by
                        # itself once every received message was confirmed ("smart feedback", 2.8+),
                        # so the lake must record it before the client library can report it.
                        yield self._heartbeat()
                        last_yield = now
                    elif now - last_yield >= config.batch_max_seconds:
                        # Nothing to hand out: an idle batch (end = start) gives the caller control
                        # back, to notice a stop or a backfill request, without moving any offset.
                        yield self._idle()
                        last_yield = now
                    if now - last_probe >= config.idle_heartbeat_seconds / 2:
                        cursor.send_feedback(reply=True, force=True)  # refresh wal_end
                        last_probe = now
                timeout = PROBE_SECONDS if self._until is not None else 1.0
                if self._pending:
                    timeout = min(timeout, max(0.0, self._pending_since + config.batch_max_seconds - now))
                select.select([cursor], [], [], timeout)
                continue

            data = message.payload
            kind = data[0]
            if kind == INSERT:
                relid = relation_id(data)
                buffer: Any = routes.get(relid, _UNROUTED)
                if buffer is _UNROUTED:
                    buffer = self._route(txn, relid)
                if buffer is None:
                    continue
                if data[5] != NEW_TUPLE:
                    raise PgoutputError(f"Insert without a new tuple (byte {data[5]!r})")
                append_tuple(data, 6, buffer.columns)
                buffer.ops.append("I")
                txn.rows += 1  # type: ignore[union-attr]
                if txn.rows >= chunk_rows:  # type: ignore[union-attr]
                    yield from self._chunk(txn)  # type: ignore[arg-type]
                    last_yield = time.monotonic()
            elif kind in (UPDATE, DELETE):
                relid = relation_id(data)
                buffer = routes.get(relid, _UNROUTED)
                if buffer is _UNROUTED:
                    buffer = self._route(txn, relid)
                if buffer is None:
                    continue
                if kind == UPDATE:
                    self._update(data, buffer)
                else:
                    self._delete(data, buffer)
                txn.rows += 1  # type: ignore[union-attr]
                if txn.rows >= chunk_rows:  # type: ignore[union-attr]
                    yield from self._chunk(txn)  # type: ignore[arg-type]
                    last_yield = time.monotonic()
            elif kind == BEGIN:
                begin = parse_begin(data)
                txn = _Transaction(
                    begin.final_lsn, begin.commit_micros, begin.xid, skip=begin.final_lsn < self._since
                )
                routes = txn.routes
            elif kind == COMMIT:
                if txn is None:
                    raise PgoutputError("Commit without Begin")
                commit = parse_commit(data)
                for batch in self._commit(txn, commit.end_lsn):
                    yield batch
                    last_yield = time.monotonic()
                txn = None
                routes = {}
                if self._until is not None and commit.end_lsn >= self._until:
                    yield from self._finish()
                    return
            elif kind == RELATION:
                self._on_relation(parse_relation(data))
                routes.pop(relation_id(data), None)
            elif kind == TRUNCATE:
                if txn is None:
                    raise PgoutputError("Truncate outside a transaction")
                self._truncate(txn, data)
            elif kind in (TYPE, ORIGIN, MESSAGE):
                continue  # types are resolved from pg_type; origins and messages are not captured
            else:
                raise PgoutputError(f"unknown pgoutput message type {chr(kind)!r}")

    # --- relations and routing -----------------------------------------------------------------

    def _on_relation(self, relation: Relation) -> None:
        table = TableId(self._config.name, relation.namespace, relation.name)
        previous = self._relations.get(relation.relid)
        if previous is not None and previous.relation == relation:
            return  # re-sent without a change (e.g. after an unrelated invalidation): same version
        layout = None
        if table in self._captured:
            layout = self._catalog.layout(table, relation.columns, relation.replica_identity)
            if previous is not None:
                log.info(
                    "schema of %s changed: now %s",
                    table,
                    ", ".join(f"{c.name} {c.source_type}" for c in layout.schema.columns),
                )
        self._relations[relation.relid] = _RelationVersion(relation, table, layout)

    def _route(self, txn: _Transaction | None, relid: int) -> ChangeBuffer | None:
        """The buffer for a relation's rows in this transaction, or None to drop them."""
        if txn is None:
            raise PgoutputError("row change outside a transaction")
        version = self._relations.get(relid)
        if version is None:
            raise PgoutputError(f"change for relation {relid} before its Relation message")
        buffer: ChangeBuffer | None = None
        if (
            not txn.skip
            and version.layout is not None
            and txn.final_lsn >= self._floors.get(version.table, -1)
        ):
            buffer = txn.buffers.get(version)
            if buffer is None:
                buffer = txn.buffers[version] = ChangeBuffer(version.layout)
        txn.routes[relid] = buffer
        return buffer

    # --- row changes ---------------------------------------------------------------------------

    def _update(self, data: bytes, buffer: ChangeBuffer) -> None:
        layout = buffer.layout
        ncols = len(buffer.columns)
        pos = 5
        old: list[bytes | None] | None = None
        old_unchanged: list[int] | None = None
        old_kind = data[pos]
        if old_kind in (KEY_TUPLE, OLD_TUPLE):
            pos, old, old_unchanged = read_tuple(data, pos + 1, ncols)
        if data[pos] != NEW_TUPLE:
            raise PgoutputError(f"Update without a new tuple (byte {data[pos]!r})")
        _, new, unchanged = read_tuple(data, pos + 1, ncols)
        if unchanged and old is not None and old_kind == OLD_TUPLE:
            # REPLICA IDENTITY FULL: the old tuple carries the (detoasted) value.
            missing = set(old_unchanged or ())
            for i in unchanged:
                if i not in missing:
                    new[i] = old[i]
            unchanged = [i for i in unchanged if i in missing]
        if old is not None:
            keys = layout.key_indexes
            if keys and any(old[k] != new[k] for k in keys):
                # The key changed: the row under the old key is gone.
                _row_append(buffer, old, "D")
        if unchanged:
            buffer.unchanged.append((len(buffer.ops), tuple(unchanged)))
        _row_append(buffer, new, "U")

    def _delete(self, data: bytes, buffer: ChangeBuffer) -> None:
        kind = data[5]
        if kind != KEY_TUPLE and kind != OLD_TUPLE:
            raise PgoutputError(f"Delete without an old tuple (byte {kind!r})")
        _, old, _ = read_tuple(data, 6, len(buffer.columns))
        _row_append(buffer, old, "D")

    def _truncate(self, txn: _Transaction, data: bytes) -> None:
        for relid in parse_truncate(data).relids:
            buffer: Any = txn.routes.get(relid, _UNROUTED)
            if buffer is _UNROUTED:
                buffer = self._route(txn, relid)
            if buffer is None:
                continue
            table = buffer.layout.table
            if txn.chunked:
                log.warning(
                    "TRUNCATE of %s in a transaction larger than chunk_rows: rows of it sent before the "
                    "TRUNCATE in this transaction stay in the lake's staged snapshot",
                    table,
                )
            for version, rows in txn.buffers.items():
                if version.table == table:
                    txn.rows -= len(rows)
                    rows.drop_rows()
            txn.truncated.add(table)

    # --- batches -------------------------------------------------------------------------------

    def _commit(self, txn: _Transaction, end: int) -> Iterator[Batch]:
        self.seen = max(self.seen, end)
        buffers = {v: b for v, b in txn.buffers.items() if len(b)}
        if txn.skip or not (buffers or txn.truncated or txn.chunked):
            if self._pending:
                self._pending_end = max(self._pending_end, end)  # nothing of ours in it: extend the batch
            return
        position = Lsn(txn.final_lsn if txn.chunked else end).serialize()
        for buffer in buffers.values():
            buffer.close_segment(position, txn.commit_micros, txn.xid)
        self._last_commit_micros = txn.commit_micros
        if txn.chunked:
            yield self._complete(buffers, end)  # the pending batch was sent before the first chunk
        elif txn.truncated:
            if self._pending:
                yield self._flush_pending()
            yield self._complete(buffers, end, snapshot=frozenset(txn.truncated))
        else:
            if not self._pending:
                self._pending_since = time.monotonic()
            for version, buffer in buffers.items():
                mine = self._pending.get(version)
                if mine is None:
                    self._pending[version] = buffer
                else:
                    mine.absorb(buffer)
            self._pending_rows += txn.rows
            self._pending_end = end
            if (
                self._pending_rows >= self._config.batch_max_rows
                or time.monotonic() - self._pending_since >= self._config.batch_max_seconds
            ):
                yield self._flush_pending()

    def _chunk(self, txn: _Transaction) -> Iterator[Batch]:
        """Send a huge transaction's rows so far as an incomplete batch (after the pending batch)."""
        if self._pending:
            yield self._flush_pending()
        position = Lsn(txn.final_lsn).serialize()
        for buffer in txn.buffers.values():
            buffer.close_segment(position, txn.commit_micros, txn.xid)
        changes, quarantined = _build(txn.buffers.values())
        log.info(
            "transaction %s is larger than chunk_rows: sending %d rows ahead of its commit", txn.xid, txn.rows
        )
        txn.buffers = {}
        txn.routes.clear()  # the routes pointed at the buffers just sent
        txn.rows = 0
        txn.chunked = True
        yield Batch(
            start=Lsn(self.last_end), end=None, changes=changes, complete=False, quarantined=quarantined
        )

    def _flush_pending(self) -> Batch:
        batch = self._complete(self._pending, self._pending_end)
        self._pending = {}
        self._pending_rows = 0
        return batch

    def _complete(
        self,
        buffers: Mapping[_RelationVersion, ChangeBuffer],
        end: int,
        snapshot: frozenset[TableId] = frozenset(),
    ) -> Batch:
        changes, quarantined = _build(buffers.values())
        lag = None
        if self._last_commit_micros is not None:
            lag = max(0.0, time.time() - self._last_commit_micros / 1e6)
        batch = Batch(
            start=Lsn(self.last_end),
            end=Lsn(end),
            changes=changes,
            complete=True,
            snapshot=snapshot,
            quarantined=quarantined,
            source_lag_seconds=lag,
        )
        self.last_end = end
        return batch

    def _idle(self) -> Batch:
        return Batch(start=Lsn(self.last_end), end=Lsn(self.last_end), changes=(), complete=True)

    def _heartbeat(self) -> Batch:
        """A row-less batch that moves the lake's offset to where the server has been read to."""
        batch = Batch(
            start=Lsn(self.last_end), end=Lsn(self.seen), changes=(), complete=True, source_lag_seconds=0.0
        )
        self.last_end = self.seen
        return batch

    def _finish(self) -> Iterator[Batch]:
        if self._pending:
            yield self._flush_pending()
        if self.seen > self.last_end:
            yield self._heartbeat()


def _build(buffers: Any) -> tuple[tuple[TableChanges, ...], tuple[QuarantinedRow, ...]]:
    changes: list[TableChanges] = []
    quarantined: list[QuarantinedRow] = []
    for buffer in buffers:
        if len(buffer):
            built, bad = buffer.build()
            if built.num_rows or built.unchanged:
                changes.append(built)
            quarantined.extend(bad)
    return tuple(changes), tuple(quarantined)
