"""The lake sink: stages change-log files and commits them atomically with the source offset.

Protocol for one commit unit (a complete batch, or incomplete batches followed by a complete one):
1. every batch's rows are written at once to Parquet files under ``_staging/<source>/<unit>/``,
   so memory stays bounded by one batch;
2. when the unit's complete batch arrives, the commit record (files + end offset) is created with
   compare-and-swap; it is accepted only if the unit starts where the last commit ended;
3. the staged files are moved to their final change-log paths (``changelog/<source>/<table>/
   commit_date=YYYY-MM-DD/<seq>-<n>.parquet``; a tenant-owned table's rows under
   ``<table>/<tag_key>=<tenant>/commit_date=...``, `connectors.lake.tenant_layout`), which readers
   see (through the commit records: paths are recorded, never parsed);
4. a restart rolls the last commit's moves forward and deletes anything left in staging.
A crash before step 2 loses nothing (the source resumes from the last commit) and shows nothing;
a crash after it is finished by step 4. Replaying an already committed batch is a no-op.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from connectors.events import (
    COMMIT_TS_COLUMN,
    OP_COLUMN,
    SEQ_COLUMN,
    UNCHANGED_COLUMN,
    Batch,
    QuarantinedRow,
    TableChanges,
    TableId,
)
from connectors.faults import crash_point
from connectors.lake.commits import (
    KEEP_FINISHED_BACKFILLS,
    BackfillProgress,
    CommitConflictError,
    CommitKind,
    CommitLog,
    CommitRecord,
    FileRef,
    OffsetMismatchError,
    SnapshotProgress,
    TableCommit,
    TableRef,
)
from connectors.lake.lease import Lease, LeaseLostError
from connectors.lake.storage import Storage
from connectors.lake.tenant_layout import SCHEMA_ONLY_DIR, TenantRouter, tenant_segment
from connectors.offsets import Offset, parse_offset
from connectors.snapshot_chunks import SnapshotChunk, SnapshotStart

log = logging.getLogger(__name__)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("schema_name", pa.string()),
        pa.field("table_name", pa.string()),
        pa.field("_position", pa.string()),
        pa.field("_commit_ts", pa.timestamp("us", tz="UTC")),
        pa.field("reason", pa.string()),
        pa.field("payload", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class LakeState:
    """What the lake holds for one source: the last commit and the offsets it recorded."""

    seq: int
    offset: Offset | None
    floors: Mapping[TableId, Offset]
    record: CommitRecord | None


def changelog_prefix(source: str, table: TableId | str) -> str:
    name = table.lake_name if isinstance(table, TableId) else table
    return f"changelog/{source}/{name}"


STAGING_THREADS = 4

# A backfill staged beside the stream does not know its commit seq yet: its files are named with
# this tag, replaced by the seq when it commits.
_UNKNOWN_SEQ = "backfill"


@dataclass
class _Unit:
    """A commit unit being staged."""

    unit_id: str
    seq: int
    start: Offset | None
    staging: str
    seq_base: int
    files: dict[str, list[FileRef]] = field(default_factory=dict)
    tables: dict[str, TableId] = field(default_factory=dict)
    ops: dict[str, Counter[str]] = field(default_factory=dict)
    quarantine: list[FileRef] = field(default_factory=list)
    quarantined_rows: int = 0
    next_row: int = 0
    next_file: int = 0
    # Rows of `via` tables whose parent was not known yet when staged: (table, key, staged file).
    pending: list[tuple[TableId, tuple[str, ...], str]] = field(default_factory=list)


BACKFILL_STAGING = "_staging_backfill"


@dataclass
class StagedBackfill:
    """A backfill staged beside the stream, waiting to be committed between two of its commits."""

    unit: _Unit
    tables: frozenset[TableId]
    replay_after: int

    @property
    def rows(self) -> int:
        return self.unit.next_row


@dataclass
class StagedChunk:
    """A chunk of a table's snapshot, staged, waiting to be committed between two stream commits."""

    unit: _Unit
    table: TableId
    progress: SnapshotProgress  # what was committed of the table before this chunk
    rows: int
    after: tuple[object, ...] | None
    last: bool
    estimate: int | None


def _file_tag(unit: _Unit) -> str:
    return f"{unit.seq:012d}" if unit.seq else _UNKNOWN_SEQ


class LakeWriter:
    """Commits one source's batches into the lake's change log, exactly once."""

    def __init__(
        self, storage: Storage, source: str, lease: Lease | None = None, tenants: TenantRouter | None = None
    ) -> None:
        """`lease`: the source's lease, held by this process; every commit checks it is still held
        (and records its epoch), and recovery refuses to touch a lake a newer holder fenced.
        `tenants`: routes tenant-owned tables' rows to their tenant's prefix (None: no tenancy)."""
        self.storage = storage
        self.source = source
        self.lease = lease
        self.tenants = tenants
        # Writes a batch's tenant files side by side (threads start on first use).
        self._pool = ThreadPoolExecutor(STAGING_THREADS, thread_name_prefix=f"stage-{source}")
        self.log = CommitLog(storage, source)
        self._unit: _Unit | None = None
        # Where this writer stages (a shared-log writer stages under a folder of its own).
        self._staging_root = f"_staging/{source}"
        self.writer_id: str | None = None  # recorded in commits when several writers share the log
        self._state = self._recover()

    # -- state ---------------------------------------------------------------------------------
    def last_committed(self) -> LakeState:
        return self._state

    def _load_state(self) -> LakeState:
        rec = self.log.latest()
        if rec is None:
            return LakeState(0, None, {}, None)
        floors = {ref.table_id(self.source): parse_offset(text) for ref, text in rec.floors.values()}
        return LakeState(rec.seq, parse_offset(rec.end), floors, rec)

    def _recover(self, *, backfills: bool = True) -> LakeState:
        """Finish the last commit's file moves and clear staging (see module docstring, step 4).

        `backfills`: also drop backfills staged beside the stream (at start-up only: a running
        stream may be staging one while it reloads)."""
        state = self._load_state()
        lease = self.lease
        if lease is not None and state.record is not None and state.record.lease_epoch > lease.epoch:
            raise LeaseLostError(
                f"source {self.source!r}: commit {state.seq} was made under lease epoch "
                f"{state.record.lease_epoch}, newer than this writer's {lease.epoch}; it stops"
            )
        if state.record is not None:
            self._publish(state.record)
        if lease is not None and lease.took_over and state.record is not None:
            state = self._fence(state)
        self.storage.delete_prefix(self._staging_root)
        if backfills:
            self.storage.delete_prefix(f"{BACKFILL_STAGING}/{self.source}")
        return state

    def _fence(self, state: LakeState) -> LakeState:
        """Commit nothing but this writer's lease epoch, so a holder it took the lease from (maybe
        only paused) can no longer commit: its next commit's seq is taken. Only after that may the
        old holder's staged files be deleted."""
        assert self.lease is not None
        for _ in range(10):
            assert state.offset is not None and state.record is not None
            unit_id, seq = uuid.uuid4().hex, state.seq + 1
            unit = _Unit(unit_id, seq, state.offset, f"{self._staging_root}/{unit_id}", seq << 32)
            self._state = state
            try:
                self._commit(unit, Batch(start=state.offset, end=state.offset), kind="fence")
                self.lease.took_over = False
                return self._state
            except CommitConflictError:  # the old holder committed meanwhile: fence after it
                state = self._load_state()
                if state.record is not None:
                    self._publish(state.record)
        raise CommitConflictError(f"source {self.source!r}: could not fence the previous writer's commits")

    def reload(self) -> LakeState:
        """Drop anything staged and re-read the commit log (after a conflict)."""
        self.abort()
        self._state = self._recover(backfills=False)
        return self._state

    def abort(self) -> None:
        if self._unit is not None:
            self.storage.delete_prefix(self._unit.staging)
            self._unit = None

    # -- writing -------------------------------------------------------------------------------
    def write(self, batch: Batch) -> CommitRecord | None:
        """Stage `batch`; commit the unit when the batch is complete.

        Returns the commit record, or None when nothing was committed (an incomplete batch, or a
        replay of a batch the lake already holds).
        """
        if self._unit is None:
            if self._is_idle(batch):
                return None
            if self._is_replay(batch):
                log.info("%s: batch ending at %s is already committed; skipped", self.source, batch.end)
                return None
            self._check_start(batch)
            unit_id, seq = uuid.uuid4().hex, self._state.seq + 1
            self._unit = _Unit(unit_id, seq, batch.start, f"{self._staging_root}/{unit_id}", seq << 32)
        unit = self._unit
        if self.tenants is not None:
            self.tenants.note(batch.changes)  # a parent row in the batch serves its children in it
        for changes in batch.changes:
            # A zero-row TableChanges (an empty table in a snapshot) is staged too: it records
            # the table's schema and key, so its current-state table exists and can be checked.
            if changes.num_rows or changes.table in batch.snapshot:
                self._stage_changes(unit, changes)
        if batch.quarantined:
            self._stage_quarantine(unit, batch.quarantined)
        crash_point("staged")
        if not batch.complete:
            return None
        try:
            return self._commit(unit, batch)
        finally:
            self._unit = None

    def stage_backfill(self, batches: Iterable[Batch], replay_after: int) -> StagedBackfill:
        """Stage a backfill's snapshot without committing it, while the stream goes on committing.

        Safe beside the stream's own unit (separate staging, no shared state). Its rows get `_seq`
        values just below those of commit `replay_after + 1`, so when it commits, the merge ranks
        them below every change the stream committed after `replay_after` (see `commit_backfill`).
        """
        unit_id = uuid.uuid4().hex
        seq_base = (replay_after << 32) + (1 << 31)
        unit = _Unit(unit_id, 0, None, f"{BACKFILL_STAGING}/{self.source}/{unit_id}", seq_base)
        tables: set[TableId] = set()
        try:
            for batch in batches:
                if self.tenants is not None:
                    self.tenants.note(batch.changes)
                for changes in batch.changes:
                    if changes.num_rows or changes.table in batch.snapshot:
                        self._stage_changes(unit, changes)
                if batch.quarantined:
                    self._stage_quarantine(unit, batch.quarantined)
                tables |= batch.snapshot
                crash_point("staged")
        except BaseException:
            self.storage.delete_prefix(unit.staging)
            raise
        if unit.next_row >= 1 << 31:
            self.storage.delete_prefix(unit.staging)
            raise ValueError(f"source {self.source!r}: a backfill of {unit.next_row} rows is over 2^31")
        return StagedBackfill(unit, frozenset(tables), replay_after)

    def commit_backfill(self, staged: StagedBackfill) -> CommitRecord:
        """Commit a staged backfill between two stream commits, at the stream's current offset.

        The snapshot tables' commits carry `replay_after`, so the merge rebuilds each as "the
        snapshot rows, then every change committed after `replay_after`": the snapshot was taken at
        a position at or after that commit's, and re-applying later changes (full row images, in
        order) over it ends in the source's state, whatever the stream did meanwhile.
        """
        if self._unit is not None:
            raise RuntimeError(
                f"source {self.source!r}: a stream unit is open; commit the backfill between units"
            )
        offset = self._state.offset
        if offset is None:
            raise RuntimeError(
                f"source {self.source!r}: nothing committed yet; a backfill needs a running stream"
            )
        unit = staged.unit
        _assign_seq(unit, self._state.seq + 1, offset)
        batch = Batch(start=offset, end=offset, snapshot=staged.tables)
        return self._commit(unit, batch, replay_after=staged.replay_after)

    def discard_backfill(self, staged: StagedBackfill) -> None:
        self.storage.delete_prefix(staged.unit.staging)

    # -- chunked snapshots ---------------------------------------------------------------------
    def snapshots_in_progress(self) -> dict[str, SnapshotProgress]:
        """Tables whose chunked snapshot has chunks still to commit (from the last commit)."""
        record = self._state.record
        return dict(record.snapshots) if record is not None else {}

    def begin_snapshot(self, start: SnapshotStart) -> CommitRecord:
        """Commit the start of a chunked snapshot: each table replaced by no rows at the low watermark.

        The lake's position becomes `start.low`, so the stream can run from there while the
        chunks are read; each table gets a progress record that its chunk commits advance. The
        current state of these tables is not merged before their last chunk (`CurrentState`).
        """
        return self._begin_chunks(start, Batch(start=None, end=start.low), None)

    def begin_backfill(self, start: SnapshotStart, request: str) -> CommitRecord:
        """Commit the start of a chunked backfill of `start.tables` into the running stream.

        As `begin_snapshot`, but at the stream's committed offset, which `start.low` must be (the
        chunks are read after this commit, so each contains every change up to it, and the
        stream's changes after it rank above the chunk rows). The tables keep their current state
        until their last chunk; the commit that ends the last of them finishes `request`
        (`CommitRecord.backfills`).
        """
        offset = self._state.offset
        if offset is None or start.low != offset:
            raise CommitConflictError(
                f"source {self.source!r}: a backfill must begin at the stream's committed offset "
                f"{offset.serialize() if offset else None}, not {start.low.serialize()}"
            )
        if request in (self._state.record.backfills if self._state.record else {}):
            raise ValueError(f"source {self.source!r}: backfill request {request} was begun already")
        return self._begin_chunks(start, Batch(start=offset, end=offset), request)

    def _begin_chunks(self, start: SnapshotStart, batch: Batch, request: str | None) -> CommitRecord:
        if self._unit is not None:
            raise RuntimeError(f"source {self.source!r}: a stream unit is open; cannot begin a snapshot")
        unit_id, seq = uuid.uuid4().hex, self._state.seq + 1
        unit = _Unit(unit_id, seq, batch.start, f"{self._staging_root}/{unit_id}", seq << 32)
        tables = frozenset(c.table for c in start.tables)
        now = dt.datetime.now(dt.UTC)
        low = start.low.serialize()
        snapshots = {
            name: p
            for name, p in self.snapshots_in_progress().items()
            if p.table.table_id(self.source) not in tables
        }
        for table in tables:
            snapshots[table.lake_name] = SnapshotProgress(
                table=TableRef.of(table), base=seq, low=low, started_at=now, request=request
            )
        backfills = self._backfills()
        if request is not None:
            backfills[request] = BackfillProgress()
        batch = dataclasses.replace(batch, snapshot=tables, floors=dict.fromkeys(tables, start.low))
        try:
            for changes in start.tables:
                self._stage_changes(unit, changes)  # no rows: records each table's schema and key
            kind: CommitKind = "snapshot" if request is None else "backfill"
            return self._commit(unit, batch, kind=kind, snapshots=snapshots, backfills=backfills)
        except BaseException:
            self.storage.delete_prefix(unit.staging)
            raise

    def _backfills(self) -> dict[str, BackfillProgress]:
        record = self._state.record
        return dict(record.backfills) if record is not None else {}

    def stage_chunk(self, chunk: SnapshotChunk, progress: SnapshotProgress) -> StagedChunk:
        """Stage one chunk of a table whose committed progress is `progress` (safe beside the
        stream: separate staging, no shared state). Its rows rank just below commit
        `progress.base + 1`'s, after the rows of the table's earlier chunks."""
        table = chunk.changes.table
        rows = chunk.changes.num_rows
        if progress.rows + rows >= 1 << 31:
            raise ValueError(f"source {self.source!r}: a snapshot of {table} over 2^31 rows")
        unit_id = uuid.uuid4().hex
        seq_base = (progress.base << 32) + (1 << 31) + progress.rows
        unit = _Unit(unit_id, 0, None, f"{BACKFILL_STAGING}/{self.source}/{unit_id}", seq_base)
        unit.tables[table.lake_name] = table  # committed even with no rows: it may finish the table
        try:
            if rows:
                if self.tenants is not None:
                    self.tenants.note([chunk.changes])
                self._stage_changes(unit, chunk.changes)
            if chunk.quarantined:
                self._stage_quarantine(unit, chunk.quarantined)
            crash_point("staged")
        except BaseException:
            self.storage.delete_prefix(unit.staging)
            raise
        return StagedChunk(unit, table, progress, rows, chunk.after, chunk.last, chunk.estimate)

    def commit_chunk(self, staged: StagedChunk) -> CommitRecord:
        """Commit a staged chunk at the stream's current offset and advance the table's progress.

        Refused with `CommitConflictError` (and the chunk discarded) unless the lake's progress of
        the table is still the one the chunk was staged after: a chunk is never committed twice.
        """
        if self._unit is not None:
            raise RuntimeError(
                f"source {self.source!r}: a stream unit is open; commit the chunk between units"
            )
        offset = self._state.offset
        name = staged.table.lake_name
        snapshots = self.snapshots_in_progress()
        current = snapshots.get(name)
        if offset is None or current != staged.progress:
            self.storage.delete_prefix(staged.unit.staging)
            raise CommitConflictError(
                f"source {self.source!r}: the chunk of {staged.table} after {staged.progress.chunks} chunk(s) "
                "no longer follows the lake's snapshot progress; it was not committed"
            )
        if staged.last:
            del snapshots[name]
        else:
            snapshots[name] = current.after_chunk(staged.rows, staged.after, staged.estimate)
        backfills = self._backfills()
        if current.request is not None and current.request in backfills:
            done = backfills[current.request]
            backfills[current.request] = done.model_copy(update={"rows": done.rows + staged.rows})
        unit = staged.unit
        _assign_seq(unit, self._state.seq + 1, offset)
        batch = Batch(start=offset, end=offset)
        return self._commit(unit, batch, kind="chunk", snapshots=snapshots, backfills=backfills)

    def discard_chunk(self, staged: StagedChunk) -> None:
        self.storage.delete_prefix(staged.unit.staging)

    def _is_idle(self, batch: Batch) -> bool:
        """A complete batch with nothing in it that does not move the offset: nothing to commit."""
        return (
            batch.complete
            and not batch.changes
            and not batch.quarantined
            and not batch.snapshot
            and not batch.floors
            and batch.end == self._state.offset
        )

    def _is_replay(self, batch: Batch) -> bool:
        """A stream batch the lake already holds (re-delivered after a crash before the ack).

        Stream batches may name tables in `snapshot` too (a PostgreSQL TRUNCATE); only snapshot
        units (no start) and backfills (start == end) are never replays.
        """
        committed = self._state.offset
        if committed is None or batch.start is None or batch.end is None:
            return False
        return batch.end <= committed and batch.start != batch.end

    def _check_start(self, batch: Batch) -> None:
        committed = self._state.offset
        if batch.start is None:
            return  # a snapshot unit: it replaces whatever the lake had (checked again at commit)
        if committed is None or batch.start != committed:
            raise OffsetMismatchError(
                f"source {self.source!r}: batch starts at {batch.start.serialize()} but the "
                f"lake's last commit ends at {committed and committed.serialize()}"
            )

    def _stage_changes(self, unit: _Unit, changes: TableChanges) -> None:
        name = changes.table.lake_name
        unit.tables[name] = changes.table
        n = changes.num_rows
        seqs = pa.array(range(unit.seq_base + unit.next_row, unit.seq_base + unit.next_row + n), pa.int64())
        unit.next_row += n
        data = changes.data.append_column(pa.field(SEQ_COLUMN, pa.int64(), nullable=False), seqs)
        if changes.unchanged:
            marks: list[list[str] | None] = [None] * n
            for row, columns in changes.unchanged:
                marks[row] = list(columns)
            data = data.append_column(
                pa.field(UNCHANGED_COLUMN, pa.list_(pa.string())), pa.array(marks, pa.list_(pa.string()))
            )
        data = data.replace_schema_metadata(
            {"lakehouse.key": ",".join(changes.schema.key), "lakehouse.table": str(changes.table)}
        )
        prefix = changelog_prefix(self.source, name)
        parts = [(prefix, data)]
        if self.tenants is not None and self.tenants.owns(changes.table):
            parts = self._split_by_tenant(unit, changes.table, changes.schema.key, data, prefix)
        self._stage_parts(unit, name, parts)

    def _stage_parts(self, unit: _Unit, name: str, parts: list[tuple[str, pa.Table]]) -> None:
        jobs: list[tuple[pa.Table, str, str]] = []  # (rows, final path, staged path)
        for folder, rows in parts:
            unit.ops.setdefault(name, Counter()).update(
                dict(zip(*(x.to_pylist() for x in pc.value_counts(rows[OP_COLUMN]).flatten()), strict=True))
            )
            for day, part in _split_by_day(rows):
                final = f"{folder}/commit_date={day}/{_file_tag(unit)}-{unit.next_file:05d}.parquet"
                jobs.append((part, final, f"{unit.staging}/{unit.next_file:05d}.{name}.parquet"))
                unit.next_file += 1
        if len(jobs) == 1:
            sizes = [self.storage.write_parquet(jobs[0][2], jobs[0][0])]
        else:
            # A tenant-partitioned table is one file per tenant: written side by side (Parquet
            # encoding releases the GIL; on S3 each PUT waits on the network).
            sizes = list(self._pool.map(lambda job: self.storage.write_parquet(job[2], job[0]), jobs))
        unit.files.setdefault(name, []).extend(
            FileRef(path=final, staged=staged, rows=rows.num_rows, bytes=size)
            for (rows, final, staged), size in zip(jobs, sizes, strict=True)
        )

    def _split_by_tenant(
        self,
        unit: _Unit,
        table: TableId,
        key: tuple[str, ...],
        data: pa.Table,
        prefix: str,
        *,
        final: bool = False,
    ) -> list[tuple[str, pa.Table]]:
        """A tenant-owned table's rows by tenant folder; rows without a usable tenant go to
        quarantine, never to a shared folder. A `via` row whose parent is not known yet waits in
        staging until the unit commits (`_stage_pending`): a snapshot may stage a child table
        before its parent. A table none of whose rows is staged still gets a zero-row file (its
        schema and key, which the merge needs) under `SCHEMA_ONLY_DIR`."""
        assert self.tenants is not None
        split = self.tenants.split(table, key, data, defer=not final, use_lake=not final)
        if split.quarantined:
            self._stage_quarantine(unit, tuple(split.quarantined))
        if split.pending is not None:
            staged = f"{unit.staging}/{unit.next_file:05d}.pending.parquet"
            unit.next_file += 1
            self.storage.write_parquet(staged, split.pending)
            unit.pending.append((table, key, staged))
        parts = [(f"{prefix}/{tenant_segment(self.tenants.tag_key, t)}", rows) for t, rows in split.parts]
        if not parts and split.pending is None and not unit.files.get(table.lake_name):
            parts = [(f"{prefix}/{SCHEMA_ONLY_DIR}", data.slice(0, 0))]
        return parts

    def _stage_pending(self, unit: _Unit) -> None:
        """Split the rows that waited for their parent, now that the whole unit is noted; the lake
        was asked when they were staged (and only this writer writes it), so it is not again."""
        pending, unit.pending = unit.pending, []
        for table, key, staged in pending:
            data = self.storage.read_parquet(staged)
            prefix = changelog_prefix(self.source, table.lake_name)
            parts = self._split_by_tenant(unit, table, key, data, prefix, final=True)
            self._stage_parts(unit, table.lake_name, parts)
            self.storage.delete(staged)

    def _stage_quarantine(self, unit: _Unit, rows: tuple[QuarantinedRow, ...]) -> None:
        table = pa.Table.from_pylist(
            [
                {
                    "schema_name": r.table.schema,
                    "table_name": r.table.name,
                    "_position": r.position,
                    "_commit_ts": r.commit_ts,
                    "reason": r.reason,
                    "payload": r.payload,
                }
                for r in rows
            ],
            schema=QUARANTINE_SCHEMA,
        )
        day = _day(rows[0].commit_ts)
        final = f"quarantine/{self.source}/commit_date={day}/{_file_tag(unit)}-{unit.next_file:05d}.parquet"
        unit.quarantine.append(self._stage(unit, table, final, "quarantine"))
        unit.quarantined_rows += len(rows)
        for r in rows:
            log.warning("%s: quarantined a row of %s at %s: %s", self.source, r.table, r.position, r.reason)

    def _stage(self, unit: _Unit, table: pa.Table, final: str, label: str) -> FileRef:
        # The label (the lake table) in the name lets request counts be told by table
        # (connectors.usage.lake_table_of_key); the path is recorded, never parsed.
        staged = f"{unit.staging}/{unit.next_file:05d}.{label}.parquet"
        unit.next_file += 1
        size = self.storage.write_parquet(staged, table)
        return FileRef(path=final, staged=staged, rows=table.num_rows, bytes=size)

    def _commit(
        self,
        unit: _Unit,
        batch: Batch,
        replay_after: int | None = None,
        *,
        kind: CommitKind | None = None,
        snapshots: dict[str, SnapshotProgress] | None = None,
        backfills: dict[str, BackfillProgress] | None = None,
    ) -> CommitRecord:
        assert batch.end is not None
        if unit.pending:
            self._stage_pending(unit)
        if unit.start is None and not batch.snapshot:
            raise OffsetMismatchError(
                f"source {self.source!r}: a unit without a start offset must end with a snapshot batch"
            )
        prev = self._state.record
        if kind is None:
            kind = "stream"
            if batch.snapshot:
                kind = "snapshot" if batch.start is None or batch.start != batch.end else "backfill"
        if snapshots is None:
            snapshots = dict(prev.snapshots) if prev else {}
            # A table replaced while its chunked snapshot is under way (a streamed TRUNCATE): its
            # state is now this commit and the changes after it, so its snapshot ends here; chunks
            # read before are refused (their progress is gone) and the merge starts from here.
            for table in batch.snapshot:
                snapshots.pop(table.lake_name, None)
        backfills = _finish_backfills(
            backfills if backfills is not None else self._backfills(), snapshots, unit.seq
        )
        floors = dict(prev.floors) if prev else {}
        heads = dict(prev.heads) if prev else {}
        for table, offset in batch.floors.items():
            floors[table.lake_name] = (TableRef.of(table), offset.serialize())
        snapshot_names = {t.lake_name for t in batch.snapshot}
        tables: dict[str, TableCommit] = {}
        for name in sorted(set(unit.tables) | snapshot_names):
            table_id = unit.tables.get(name) or next(t for t in batch.snapshot if t.lake_name == name)
            files = tuple(unit.files.get(name, ()))
            tables[name] = TableCommit(
                table=TableRef.of(table_id),
                files=files,
                rows=sum(f.rows for f in files),
                ops=dict(unit.ops.get(name, {})),
                snapshot=name in snapshot_names,
                prev_seq=heads.get(name, 0),
                replay_after=replay_after if name in snapshot_names else None,
            )
            heads[name] = unit.seq
        record = CommitRecord(
            source=self.source,
            seq=unit.seq,
            kind=kind,
            start=unit.start.serialize() if unit.start is not None else None,
            end=batch.end.serialize(),
            tables=tables,
            quarantine=tuple(unit.quarantine),
            quarantined_rows=unit.quarantined_rows,
            floors=floors,
            heads=heads,
            snapshots=snapshots,
            backfills=backfills,
            committed_at=dt.datetime.now(dt.UTC),
            source_lag_seconds=batch.source_lag_seconds,
            lease_epoch=self._lease_epoch(prev),
            writer=self.writer_id,
        )
        if self.lease is not None:
            try:
                self.lease.ensure()
            except LeaseLostError:
                self.storage.delete_prefix(unit.staging)
                raise
        try:
            self.log.append(record)
        except CommitConflictError:
            self._on_conflict(unit)
            raise
        crash_point("committed")
        self._publish(record)
        self.storage.delete_prefix(unit.staging)
        self._state = LakeState(
            record.seq,
            batch.end,
            {ref.table_id(self.source): parse_offset(text) for ref, text in floors.values()},
            record,
        )
        return record

    def _lease_epoch(self, prev: CommitRecord | None) -> int:
        return self.lease.epoch if self.lease is not None else prev.lease_epoch if prev else 0

    def _on_conflict(self, unit: _Unit) -> None:
        """Another runner took this unit's seq: its staged files will never be committed."""
        self.storage.delete_prefix(unit.staging)

    def _publish(self, record: CommitRecord) -> None:
        """Move a commit's staged files to their final paths; idempotent (roll-forward).

        Writers sharing a log (`connectors.lake.shared_writer`) may roll the same commit forward
        at once: a move that fails because the other one made it is done, not an error."""
        refs = [f for t in record.tables.values() for f in t.files] + list(record.quarantine)
        for ref in refs:
            if self.storage.exists(ref.path):
                continue
            if not self.storage.exists(ref.staged):
                if self.storage.exists(ref.path):  # moved by another writer since the first look
                    continue
                raise RuntimeError(
                    f"commit {record.seq} of {self.source!r}: file {ref.path} is neither published nor staged"
                )
            try:
                self.storage.move(ref.staged, ref.path)
            except Exception:
                if not self.storage.exists(ref.path):
                    raise


def _finish_backfills(
    backfills: dict[str, BackfillProgress], snapshots: Mapping[str, SnapshotProgress], seq: int
) -> dict[str, BackfillProgress]:
    """Mark finished, at commit `seq`, the backfills no table's snapshot serves any more (their
    last chunk, or a TRUNCATE that replaced the table); keep the newest finished ones only."""
    serving = {p.request for p in snapshots.values()}
    out = {
        request: done
        if done.finished is not None or request in serving
        else done.model_copy(update={"finished": seq})
        for request, done in backfills.items()
    }
    finished = sorted(
        (r for r, d in out.items() if d.finished is not None), key=lambda r: out[r].finished or 0
    )
    for request in finished[:-KEEP_FINISHED_BACKFILLS]:
        del out[request]
    return out


def _assign_seq(unit: _Unit, seq: int, start: Offset) -> None:
    """Give a unit staged beside the stream its commit seq: its files' names carry it."""
    unit.seq, unit.start = seq, start
    tag, final = f"/{_UNKNOWN_SEQ}-", f"/{seq:012d}-"
    for name, refs in unit.files.items():
        unit.files[name] = [r.model_copy(update={"path": r.path.replace(tag, final)}) for r in refs]
    unit.quarantine = [r.model_copy(update={"path": r.path.replace(tag, final)}) for r in unit.quarantine]


def _day(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).date().isoformat() if ts.tzinfo else ts.date().isoformat()


def _split_by_day(data: pa.Table) -> list[tuple[str, pa.Table]]:
    """Split rows by the UTC date of their commit timestamp (the change log's partition)."""
    if data.num_rows == 0:
        return [(dt.datetime.now(dt.UTC).date().isoformat(), data)]
    # The column is timestamp[us, tz=UTC]; casting to date32 gives the UTC date, and is far
    # cheaper than formatting a string per row.
    days = pc.cast(data[COMMIT_TS_COLUMN], pa.date32())
    unique = pc.unique(days).to_pylist()
    if len(unique) == 1:
        return [(unique[0].isoformat(), data)]
    return [(d.isoformat(), data.filter(pc.equal(days, pa.scalar(d, pa.date32())))) for d in sorted(unique)]
