"""A writer of one source's commit log beside other writers: DynamoDB shard workers (decisions §24).

`LakeWriter` assumes it is the source's only writer: a batch must start where the log's last commit
ended. Shard workers read disjoint shards of one source, so each batch moves only some shards of
the source's position. `SharedLogWriter` stages a batch like `LakeWriter`, then commits it on top
of whatever the log's newest record is:

1. read the newest record; roll it forward (publish its files: its writer may have died before);
2. the new position is that record's, with this batch's shards moved (`claim_positions`: refused
   with `ShardsMovedError` if another writer committed one of them since the batch started);
3. if the record's seq is not the one the batch was staged for, re-number the staged rows' `_seq`
   (they must rank by commit order, as everywhere in the lake) and their file names;
4. create the record (compare-and-swap on its seq); on losing the race to another worker, go to 1.

So the log stays one chain (every record starts where the previous ended), merges and readers see
nothing new, and a shard's records keep their order: its lease holder commits them in order, and a
child shard is read only after its parent's end is committed (or by the same worker, later in the
same unit). Each writer stages under ``_staging/<source>/w-<worker>/`` and clears only that.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from connectors.events import SEQ_COLUMN, Batch
from connectors.lake.commits import CommitConflictError, CommitRecord, OffsetMismatchError
from connectors.lake.storage import Storage
from connectors.lake.writer import LakeState, LakeWriter, _Unit
from connectors.offsets import Offset

log = logging.getLogger(__name__)

MAX_COMMIT_TRIES = 50

# (newest committed position, batch start, batch end) -> the position to commit
ClaimPositions = Callable[[Offset, Offset, Offset], Offset]


class SharedLogWriter(LakeWriter):
    """Commits batches of some shards of a source into its commit log, beside other writers."""

    def __init__(
        self,
        storage: Storage,
        source: str,
        worker: str,
        claim: ClaimPositions,
        *,
        epoch: Callable[[int], int],
        before_commit: Callable[[Batch], None] | None = None,
    ) -> None:
        """`claim`: how a batch's positions go on top of the newest record's (`claim_positions`).
        `epoch(newest record's lease epoch)`: the source lease epoch to record; raises
        `LeaseLostError` when the log was fenced by a writer that is not a shard worker.
        `before_commit(batch)`: checked right before each commit attempt (the shard leases)."""
        self.worker = worker
        self._claim = claim
        self._epoch = epoch
        self._before_commit = before_commit
        self._group_epoch = 0
        super().__init__(storage, source)
        self.writer_id = worker

    # -- state -------------------------------------------------------------------------------------
    def _recover(self, *, backfills: bool = True) -> LakeState:
        """Roll the newest commit forward and clear this worker's staging, nobody else's."""
        self._staging_root = f"_staging/{self.source}/w-{self.worker}"
        state = self._load_state()
        if state.record is not None:
            self._publish(state.record)
        self.storage.delete_prefix(self._staging_root)
        return state

    def _on_conflict(self, unit: _Unit) -> None:
        """Losing a seq to another worker is expected here: the unit is retried, not dropped."""

    def _lease_epoch(self, prev: CommitRecord | None) -> int:
        return self._group_epoch

    # -- writing -----------------------------------------------------------------------------------
    def write(self, batch: Batch) -> CommitRecord | None:
        """Stage `batch` and commit it on top of the log's newest record; None if it moved nothing.

        `ShardsMovedError`: a shard of the batch was committed by another writer (the batch is
        dropped; read again from the lake's position). `LeaseLostError`: a shard lease was lost,
        or the source was fenced by another kind of writer.
        """
        if not batch.complete or batch.snapshot or batch.floors:
            raise ValueError(f"source {self.source!r}: a shard worker commits complete stream batches only")
        assert batch.start is not None and batch.end is not None
        if batch.start == batch.end and not batch.changes and not batch.quarantined:
            return None
        state = self._load_state()
        seq = state.seq + 1
        unit = _Unit(uuid.uuid4().hex, seq, batch.start, "", seq << 32)
        unit.staging = f"{self._staging_root}/{unit.unit_id}"
        try:
            for changes in batch.changes:
                if changes.num_rows:
                    self._stage_changes(unit, changes)
            if batch.quarantined:
                self._stage_quarantine(unit, batch.quarantined)
            return self._commit_shared(unit, batch, state)
        except BaseException:
            self.storage.delete_prefix(unit.staging)
            raise

    def _commit_shared(self, unit: _Unit, batch: Batch, state: LakeState) -> CommitRecord:
        """Commit `unit` on top of `state` (the newest record when staging began); when another
        writer appended since, its seq is taken, the append fails, and the next try re-reads."""
        assert batch.start is not None and batch.end is not None
        for _ in range(MAX_COMMIT_TRIES):
            if state.record is None or state.offset is None:
                raise OffsetMismatchError(
                    f"source {self.source!r}: the lake holds no snapshot; shard workers need one"
                )
            self._publish(state.record)  # its writer may have died between commit and publish
            self._group_epoch = self._epoch(state.record.lease_epoch)
            end = self._claim(state.offset, batch.start, batch.end)
            if state.seq + 1 != unit.seq:
                self._renumber(unit, state.seq + 1)
            unit.start = state.offset
            self._state = state
            if self._before_commit is not None:
                self._before_commit(batch)
            try:
                record = self._commit(unit, dataclasses.replace(batch, start=state.offset, end=end))
            except CommitConflictError:  # another worker took the seq: go on top of it
                state = self._load_state()
                continue
            self.storage.delete_prefix(unit.staging)
            return record
        raise CommitConflictError(
            f"source {self.source!r}: worker {self.worker} lost the commit race {MAX_COMMIT_TRIES} times in a row"
        )

    def _renumber(self, unit: _Unit, seq: int) -> None:
        """Give a staged unit another commit seq: its rows' `_seq` and its files' names carry it."""
        shift = (seq - unit.seq) << 32
        old_tag, new_tag = f"/{unit.seq:012d}-", f"/{seq:012d}-"
        for name, refs in unit.files.items():
            renamed = []
            for ref in refs:
                table = self.storage.read_parquet(ref.staged)
                column = table.schema.get_field_index(SEQ_COLUMN)
                field = table.schema.field(column)
                shifted = pc.add(table[SEQ_COLUMN], pa.scalar(shift, pa.int64()))
                table = table.set_column(column, field, shifted)
                size = self.storage.write_parquet(ref.staged, table)
                renamed.append(
                    ref.model_copy(update={"path": ref.path.replace(old_tag, new_tag), "bytes": size})
                )
            unit.files[name] = renamed
        unit.quarantine = [
            r.model_copy(update={"path": r.path.replace(old_tag, new_tag)}) for r in unit.quarantine
        ]
        unit.seq, unit.seq_base = seq, seq << 32
