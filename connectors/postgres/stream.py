"""Turning the pgoutput message stream into `Batch`es that end at transaction boundaries.

Positions. pgoutput (non-streaming mode) sends each transaction whole, at its commit, in commit
order. A transaction's Begin carries the LSN of its commit record (``final_lsn``, the record's
start, S); its Commit carries the record's end (E), which is the flush position to confirm once the
lake has the transaction (confirming S re-delivers it). Complete batches end at an E, and rows
carry ``E.serialize()`` (``pg-lsn:X/Y``) as `_position`.

Skipping. The slot may re-deliver transactions the lake already has (the slot is confirmed only
after the lake commit), and snapshots/backfills set per-table floors. A transaction is already in
the lake iff its commit record starts before the offset (S < offset): offsets are ends of commit
records, slot consistent points or walsender positions, all WAL record boundaries, so
S < offset <=> E <= offset. The server decides the same way (a slot streams commits whose record
starts at or after its consistent point). Deciding at Begin lets a skipped transaction's rows be
dropped as they arrive.

Values. A session asks for binary values (pgoutput's ``binary`` option, PostgreSQL 14+) when
every captured column's type has a binary decoder (`connectors.postgres.binary`), and text values
otherwise; `connectors.postgres.tuples` reads either. If a Relation message brings a column type
without a binary decoder into a binary session (an ALTER TABLE since the session started), the
session is replaced by a text one from the last complete batch's end: rows not yet handed out are
read again, and a huge transaction already partly handed out skips the change messages it sent
(logical decoding replays a transaction's changes in the same order every time).

Memory. Rows are buffered per transaction as raw columns; committed transactions are merged into
the pending batch until `batch_max_rows` rows or `batch_max_seconds`. A transaction with more than
`chunk_rows` changes is sent on as incomplete batches (``complete=False, end=None``) while it is
still arriving, then closed by a complete batch at its Commit. Its rows carry ``str(S)``
(``final_lsn``) as `_position` throughout, because E is unknown until the Commit and a transaction
should carry one position; S still orders it after every earlier transaction's rows.

Idle sources. Keepalives report the walsender's position (``wal_end``): everything that committed
below it has been sent. When no captured table changes and a keepalive moved that position, a
row-less complete batch ending there is yielded (at most every `idle_heartbeat_seconds / 2`, when
keepalives are also asked for), so that the lake records the position and the pipeline's
acknowledgement can move the slot (otherwise the server keeps WAL for an idle slot). Only those
acknowledgements ever confirm anything (`connectors.postgres.replication`), so the slot never runs
ahead of the lake - which is what lets a slot position ahead of the lake's offset be reported as
lost data.

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
    parse_begin,
    parse_commit,
    parse_relation,
    parse_truncate,
    relation_id,
)
from connectors.postgres.replication import ReplicationSession
from connectors.postgres.tuples import Inserter, TupleReader
from connectors.source import SourceUnavailableError

log = logging.getLogger(__name__)

# How often a bounded run asks the server for its position while waiting to reach `until`.
PROBE_SECONDS = 0.2
# pgoutput sends one message per row change. Picking them up as they trickle in costs a wake-up and
# a few system calls each, on both sides (on two cores, the client's share is taken from the
# walsender): after a small batch the loop waits this long, so the next read takes a large one.
SMALL_BATCH = 64
SMALL_BATCH_WAIT_SECONDS = 0.001
_UNROUTED = object()

# open_session(start LSN, binary values?) -> a started session (the previous one closed first).
SessionOpener = Callable[[int, bool], ReplicationSession]


class _TextValuesNeeded(Exception):
    """A binary session met a captured column type without a binary decoder."""


@dataclass(eq=False, slots=True)
class _RelationVersion:
    """A relation as of its latest Relation message; identity-hashed (one buffer per version)."""

    relation: Relation
    table: TableId
    layout: TableLayout | None  # None: not a captured table
    reader: TupleReader | None  # how its tuples are read in this session (None: not captured)


class _Route:
    """Where one relation version's rows go in the current transaction."""

    __slots__ = ("buffer", "insert", "reader")

    def __init__(self, buffer: ChangeBuffer, reader: TupleReader) -> None:
        self.buffer = buffer
        self.reader = reader
        self.insert: Inserter = reader.inserter(buffer.appends, buffer.ops.append)


class _Transaction:
    """The transaction being received: its rows per relation version and how to route them."""

    __slots__ = (
        "final_lsn",
        "commit_micros",
        "xid",
        "skip",
        "routes",
        "buffers",
        "sent",
        "resend_skip",
        "chunked",
        "truncated",
    )

    def __init__(self, final_lsn: int, commit_micros: int, xid: int, skip: bool) -> None:
        self.final_lsn = final_lsn
        self.commit_micros = commit_micros
        self.xid = str(xid)
        self.skip = skip
        self.routes: dict[bytes, _Route | None] = {}  # by the relation OID's 4 bytes
        self.buffers: dict[_RelationVersion, ChangeBuffer] = {}
        self.sent = 0  # row change messages routed to a buffer and handed out in incomplete batches
        self.resend_skip = 0  # routed changes still to drop (already sent before a session change)
        self.chunked = False
        self.truncated: set[TableId] = set()


def _row_append(buffer: ChangeBuffer, values: list[Any], op: str) -> None:
    for append, value in zip(buffer.appends, values, strict=True):
        append(value)
    buffer.ops.append(op)


class ChangeStream:
    """Decodes replication sessions into batches; see the module docstring for the rules."""

    def __init__(
        self,
        config: PostgresSourceConfig,
        catalog: Catalog,
        captured: set[TableId],
        since: Lsn,
        floors: Mapping[TableId, Lsn],
        until: Lsn | None,
        server_flush_lsn: Callable[[], Lsn],
        *,
        binary: bool = False,
    ) -> None:
        self._config = config
        self._catalog = catalog
        self._captured = captured
        self._since = since.value
        self._floors = {t: f.value for t, f in floors.items()}
        self._until = until.value if until is not None else None
        self._server_flush_lsn = server_flush_lsn
        self.binary = binary  # the current session's value format
        self._relations: dict[int, _RelationVersion] = {}
        self._txn: _Transaction | None = None
        self._resume: tuple[int, int] | None = None  # (final_lsn, changes sent) of a cut transaction
        self._pending: dict[_RelationVersion, ChangeBuffer] = {}
        self._pending_rows = 0
        self._pending_end = 0
        self._pending_since = 0.0
        self._last_commit_micros: int | None = None
        self._last_progress = 0.0  # monotonic time of the last batch that moved the offset
        self.last_end = since.value  # end of the last complete batch yielded
        self.seen = since.value  # every transaction committing below this has been received

    # --- sessions --------------------------------------------------------------------------------

    def batches(self, open_session: SessionOpener) -> Iterator[Batch]:
        """Read replication sessions and yield batches; stops at `until` (else runs until closed)."""
        start = self._since
        while True:
            session = open_session(start, self.binary)
            try:
                yield from self._loop(session)
                return
            except _TextValuesNeeded as exc:
                log.info("%s: reading the stream with text values from %s on", exc, Lsn(self.last_end))
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                raise SourceUnavailableError(
                    f"replication connection to {self._config.host}:{self._config.port} lost: {str(exc).strip()}"
                ) from None
            start = self._restart_with_text_values()

    def _restart_with_text_values(self) -> int:
        """Forget what was received after the last complete batch; returns where to read again."""
        txn = self._txn
        self._resume = (txn.final_lsn, txn.sent) if txn is not None and txn.chunked else None
        self.binary = False
        self._txn = None
        self._relations = {}
        self._pending = {}
        self._pending_rows = 0
        self._since = self.seen = self.last_end
        return self.last_end

    # --- the receive loop ------------------------------------------------------------------------

    def _loop(self, session: ReplicationSession) -> Iterator[Batch]:
        read_available = session.read_available
        config = self._config
        chunk_rows = config.chunk_rows
        heartbeat_every = config.idle_heartbeat_seconds / 2
        txn: _Transaction | None = None
        routes: dict[bytes, _Route | None] = {}
        changes = 0  # row changes of `txn` routed to a buffer since its last chunk
        last_yield = time.monotonic()
        last_probe = 0.0
        probe_target: int | None = None
        while True:
            messages = read_available()
            if not messages:
                # Caught up for now: flush a due batch, check whether the run is done, then wait.
                now = time.monotonic()
                if txn is None:
                    self.seen = max(self.seen, session.wal_end)
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
                        session.request_keepalive()
                        last_probe = now
                elif txn is None and not self._pending:
                    if self.seen > self.last_end and now - self._last_progress >= heartbeat_every:
                        yield self._heartbeat()
                        last_yield = now
                    elif now - last_yield >= config.batch_max_seconds:
                        # Nothing to hand out: an idle batch (end = start) gives the caller control
                        # back, to notice a stop or a backfill request, without moving any offset.
                        yield self._idle()
                        last_yield = now
                    if now - last_probe >= heartbeat_every:
                        session.request_keepalive()  # refreshes wal_end
                        last_probe = now
                timeout = PROBE_SECONDS if self._until is not None else 1.0
                if self._pending:
                    timeout = min(timeout, max(0.0, self._pending_since + config.batch_max_seconds - now))
                select.select([session], [], [], timeout)
                continue

            for data in messages:
                kind = data[0]
                if kind == INSERT:
                    route: Any = routes.get(data[1:5], _UNROUTED)
                    if route is _UNROUTED:
                        route = self._route(txn, data)
                    if route is None:
                        continue
                    route.insert(data)
                    changes += 1
                    if changes >= chunk_rows:
                        yield from self._chunk(txn, changes)  # type: ignore[arg-type]
                        changes = 0
                        last_yield = time.monotonic()
                elif kind in (UPDATE, DELETE):
                    route = routes.get(data[1:5], _UNROUTED)
                    if route is _UNROUTED:
                        route = self._route(txn, data)
                    if route is None:
                        continue
                    if kind == UPDATE:
                        self._update(data, route)
                    else:
                        self._delete(data, route)
                    changes += 1
                    if changes >= chunk_rows:
                        yield from self._chunk(txn, changes)  # type: ignore[arg-type]
                        changes = 0
                        last_yield = time.monotonic()
                elif kind == BEGIN:
                    txn = self._begin(data)
                    routes = txn.routes
                    changes = 0
                elif kind == COMMIT:
                    if txn is None:
                        raise PgoutputError("Commit without Begin")
                    commit = parse_commit(data)
                    for batch in self._commit(txn, commit.end_lsn):
                        yield batch
                        last_yield = time.monotonic()
                    txn = self._txn = None
                    routes = {}
                    if self._until is not None and commit.end_lsn >= self._until:
                        yield from self._finish()
                        return
                elif kind == RELATION:
                    self._on_relation(parse_relation(data))
                    routes.pop(data[1:5], None)
                elif kind == TRUNCATE:
                    if txn is None:
                        raise PgoutputError("Truncate outside a transaction")
                    self._truncate(txn, data)
                elif kind in (TYPE, ORIGIN, MESSAGE):
                    continue  # types are resolved from pg_type; origins and messages are not captured
                else:
                    raise PgoutputError(f"unknown pgoutput message type {chr(kind)!r}")
            if len(messages) < SMALL_BATCH:
                time.sleep(SMALL_BATCH_WAIT_SECONDS)

    def _begin(self, data: bytes) -> _Transaction:
        begin = parse_begin(data)
        txn = _Transaction(
            begin.final_lsn, begin.commit_micros, begin.xid, skip=begin.final_lsn < self._since
        )
        if self._resume is not None and self._resume[0] == begin.final_lsn:
            # The transaction a session change cut: its first changes were sent already.
            txn.chunked = True
            txn.resend_skip = self._resume[1]
            self._resume = None
        self._txn = txn
        return txn

    # --- relations and routing -----------------------------------------------------------------

    def _on_relation(self, relation: Relation) -> None:
        table = TableId(self._config.name, relation.namespace, relation.name)
        previous = self._relations.get(relation.relid)
        if previous is not None and previous.relation == relation:
            return  # re-sent without a change (e.g. after an unrelated invalidation): same version
        layout = None
        reader = None
        if table in self._captured:
            layout = self._catalog.layout(table, relation.columns, relation.replica_identity)
            codecs = [t.binary for t in layout.types]
            if self.binary and None in codecs:
                missing = [
                    c.source_type for c, t in zip(layout.schema.columns, codecs, strict=True) if t is None
                ]
                raise _TextValuesNeeded(
                    f"{table} now has column type(s) {', '.join(missing)} without a binary decoder"
                )
            reader = TupleReader(len(codecs), [c.code for c in codecs] if self.binary else None)  # type: ignore[union-attr]
            if previous is not None:
                log.info(
                    "schema of %s changed: now %s",
                    table,
                    ", ".join(f"{c.name} {c.source_type}" for c in layout.schema.columns),
                )
        self._relations[relation.relid] = _RelationVersion(relation, table, layout, reader)

    def _route(self, txn: _Transaction | None, data: bytes, *, change: bool = True) -> _Route | None:
        """Where a relation's rows go in this transaction (None: drop them); `data` is a message
        whose bytes 1-4 are the relation OID, and `change` says whether it is a row change."""
        if txn is None:
            raise PgoutputError("row change outside a transaction")
        relid = relation_id(data)
        version = self._relations.get(relid)
        if version is None:
            raise PgoutputError(f"change for relation {relid} before its Relation message")
        route: _Route | None = None
        if (
            not txn.skip
            and version.layout is not None
            and txn.final_lsn >= self._floors.get(version.table, -1)
        ):
            if change and txn.resend_skip:
                txn.resend_skip -= 1  # sent by the previous session: drop, and do not remember a route
                return None
            buffer = txn.buffers.get(version)
            if buffer is None:
                buffer = txn.buffers[version] = ChangeBuffer(version.layout, binary=self.binary)
            route = _Route(buffer, version.reader)  # type: ignore[arg-type]
        if not txn.resend_skip:
            txn.routes[data[1:5]] = route
        return route

    # --- row changes ---------------------------------------------------------------------------

    def _update(self, data: bytes, route: _Route) -> None:
        buffer, reader = route.buffer, route.reader
        layout = buffer.layout
        pos = 5
        old: list[Any] | None = None
        old_unchanged: list[int] | None = None
        old_kind = data[pos]
        if old_kind in (KEY_TUPLE, OLD_TUPLE):
            pos, old, old_unchanged = reader.read(data, pos + 1)
        if data[pos] != NEW_TUPLE:
            raise PgoutputError(f"Update without a new tuple (byte {data[pos]!r})")
        _, new, unchanged = reader.read(data, pos + 1)
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

    def _delete(self, data: bytes, route: _Route) -> None:
        kind = data[5]
        if kind != KEY_TUPLE and kind != OLD_TUPLE:
            raise PgoutputError(f"Delete without an old tuple (byte {kind!r})")
        _, old, _ = route.reader.read(data, 6)
        _row_append(route.buffer, old, "D")

    def _truncate(self, txn: _Transaction, data: bytes) -> None:
        for relid in parse_truncate(data).relids:
            route: Any = txn.routes.get(relid.to_bytes(4, "big"), _UNROUTED)
            if route is _UNROUTED:
                route = self._route(txn, b"T" + relid.to_bytes(4, "big"), change=False)
            if route is None:
                continue
            table = route.buffer.layout.table
            if txn.chunked:
                log.warning(
                    "TRUNCATE of %s in a transaction larger than chunk_rows: rows of it sent before the "
                    "TRUNCATE in this transaction stay in the lake's staged snapshot",
                    table,
                )
            for version, rows in txn.buffers.items():
                if version.table == table:
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
            self._pending_rows += sum(len(b) for b in buffers.values())
            self._pending_end = end
            if (
                self._pending_rows >= self._config.batch_max_rows
                or time.monotonic() - self._pending_since >= self._config.batch_max_seconds
            ):
                yield self._flush_pending()

    def _chunk(self, txn: _Transaction, routed: int) -> Iterator[Batch]:
        """Send a huge transaction's rows so far (`routed` row changes since its last chunk) as an
        incomplete batch, after the pending batch."""
        if self._pending:
            yield self._flush_pending()
        position = Lsn(txn.final_lsn).serialize()
        for buffer in txn.buffers.values():
            buffer.close_segment(position, txn.commit_micros, txn.xid)
        changes, quarantined = _build(txn.buffers.values())
        log.info(
            "transaction %s is larger than chunk_rows: sending %d rows ahead of its commit",
            txn.xid,
            sum(c.num_rows for c in changes),
        )
        txn.buffers = {}
        txn.routes.clear()  # the routes pointed at the buffers just sent
        txn.sent += routed
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
        self._last_progress = time.monotonic()
        return batch

    def _idle(self) -> Batch:
        return Batch(start=Lsn(self.last_end), end=Lsn(self.last_end), changes=(), complete=True)

    def _heartbeat(self) -> Batch:
        """A row-less batch that moves the lake's offset to where the server has been read to."""
        batch = Batch(
            start=Lsn(self.last_end), end=Lsn(self.seen), changes=(), complete=True, source_lag_seconds=0.0
        )
        self.last_end = self.seen
        self._last_progress = time.monotonic()
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
