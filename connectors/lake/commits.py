"""The lake's commit log: one JSON record per committed unit, created with compare-and-swap.

A commit record names the data files it makes visible and the source offset they bring the lake to.
Creating ``_commits/<source>/<seq>.json`` is the single atomic step of a commit: the files it lists
were written before it (in ``_staging/``) and are only moved into the readable change log after it,
so a crash leaves either nothing visible or a commit that `LakeWriter` rolls forward on restart.
Record ``seq`` is created only if absent, so of two runners that read the same last commit only one
can append the next: neither can double-write.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field

from connectors.config import FrozenModel
from connectors.events import TableId
from connectors.lake.storage import Storage

CommitKind = Literal["stream", "snapshot", "backfill", "chunk", "fence"]


class CommitConflictError(Exception):
    """Another runner committed first: this runner's staged batch must not be committed."""


class OffsetMismatchError(Exception):
    """A batch does not start where the lake's last commit ended (a gap or a stale runner)."""


class FileRef(FrozenModel):
    """A data file of a commit: where it was staged and where readers find it."""

    path: str
    staged: str
    rows: int
    bytes: int


class TableRef(FrozenModel):
    """A source table as recorded in commits."""

    schema_name: str = Field(alias="schema")
    name: str

    model_config = FrozenModel.model_config | {"populate_by_name": True}

    def table_id(self, source: str) -> TableId:
        return TableId(source, self.schema_name, self.name)

    @classmethod
    def of(cls, table: TableId) -> TableRef:
        return cls(schema=table.schema, name=table.name)


class TableCommit(FrozenModel):
    """What one commit did to one table."""

    table: TableRef
    files: tuple[FileRef, ...] = ()
    rows: int = 0
    ops: dict[str, int] = Field(default_factory=dict)
    snapshot: bool = False  # the rows replace the table's current state
    prev_seq: int = 0  # the previous commit that touched this table (0: none), for merges
    # A backfill staged while the stream went on: the table's commits after this seq are applied
    # again over the snapshot rows (which rank below them), so nothing they changed is lost.
    replay_after: int | None = None


class SnapshotProgress(FrozenModel):
    """A table whose chunked snapshot is under way: what is committed of it so far.

    The snapshot began with commit `base` (which replaced the table with no rows at the low
    watermark `low`); each chunk commit adds rows in key order and moves `after` to the encoded key
    of its last row (`connectors.snapshot_chunks.encode_key`), so a restart reads on after it.
    Chunk rows get `_seq` values just below commit `base + 1`'s, so every change the stream
    committed after `base` ranks above them. The table's current state is merged once its last
    chunk is committed (the entry is then dropped). `request` names the backfill request the
    snapshot serves (None: an initial snapshot or a resnapshot).
    """

    table: TableRef
    base: int
    low: str
    after: tuple[Any, ...] | None = None
    rows: int = 0
    chunks: int = 0
    estimate: int | None = None
    started_at: dt.datetime
    request: str | None = None

    def after_chunk(self, rows: int, after: tuple[Any, ...] | None, estimate: int | None) -> SnapshotProgress:
        """The progress once a chunk of `rows` rows ending at key `after` is committed."""
        return self.model_copy(
            update={"after": after, "rows": self.rows + rows, "chunks": self.chunks + 1, "estimate": estimate}
        )


class BackfillProgress(FrozenModel):
    """A backfill request served as a chunked snapshot of its tables: rows committed so far, and
    the commit that finished it (its last table's last chunk, or the commit that replaced it)."""

    rows: int = 0
    finished: int | None = None


# Finished backfills kept in each commit record, newest first: enough for a runner that crashed
# between a backfill's last commit and recording the request's outcome to record it on restart.
KEEP_FINISHED_BACKFILLS = 16


class CommitRecord(FrozenModel):
    """One committed unit of a source's change stream."""

    format: Literal[1] = 1
    source: str
    seq: int
    kind: CommitKind
    start: str | None
    end: str
    tables: dict[str, TableCommit] = Field(default_factory=dict)
    quarantine: tuple[FileRef, ...] = ()
    quarantined_rows: int = 0
    # Cumulative state, repeated in every record so the latest record alone tells a restart
    # everything: per table, the position its snapshot covers, and the last commit touching it.
    floors: dict[str, tuple[TableRef, str]] = Field(default_factory=dict)
    heads: dict[str, int] = Field(default_factory=dict)
    # Tables whose chunked snapshot is not finished (their current state waits for it).
    snapshots: dict[str, SnapshotProgress] = Field(default_factory=dict)
    # Backfill requests served by chunked snapshots: those under way and the newest finished.
    backfills: dict[str, BackfillProgress] = Field(default_factory=dict)
    committed_at: dt.datetime
    source_lag_seconds: float | None = None
    # The epoch of the writer's lease (connectors/lake/lease.py); 0: written without a lease.
    lease_epoch: int = 0
    # Which of several writers sharing the log made this commit (DynamoDB shard workers);
    # None: the source's one writer.
    writer: str | None = None

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())


class CommitLog:
    """The commit records of one source, ``_commits/<source>/<seq:012d>.json``."""

    def __init__(self, storage: Storage, source: str) -> None:
        self.storage = storage
        self.source = source
        self._prefix = f"_commits/{source}"

    def _path(self, seq: int) -> str:
        return f"{self._prefix}/{seq:012d}.json"

    def read(self, seq: int) -> CommitRecord:
        return CommitRecord.model_validate_json(self.storage.read_bytes(self._path(seq)))

    def latest_seq(self) -> int:
        """The highest committed seq (0 when nothing is committed).

        Starts from a hint written after each commit and probes forward, so it costs a couple of
        reads instead of a listing that grows with history. The hint may lag, never lead: records
        are created before the hint is updated.
        """
        seq = 0
        try:
            seq = int(self.storage.read_bytes(f"{self._prefix}/_latest").decode() or 0)
        except (FileNotFoundError, OSError, ValueError):
            seq = 0
        while self.storage.exists(self._path(seq + 1)):
            seq += 1
        return seq

    def latest(self) -> CommitRecord | None:
        seq = self.latest_seq()
        return self.read(seq) if seq else None

    def append(self, record: CommitRecord) -> None:
        """Create record `record.seq`; `CommitConflictError` if another runner created it first."""
        body = record.model_dump_json(by_alias=True).encode()
        if self.storage.put_if_absent(self._path(record.seq), body) is None:
            raise CommitConflictError(
                f"source {self.source!r}: commit {record.seq} was created by another runner; "
                "this runner's batch was not committed"
            )
        self.storage.write_bytes(f"{self._prefix}/_latest", str(record.seq).encode())

    def walk_table(self, lake_table: str, head: int, after: int) -> list[CommitRecord]:
        """Commits that touched `lake_table` with seq in (after, head], oldest first."""
        out: list[CommitRecord] = []
        seq = head
        while seq > after:
            rec = self.read(seq)
            tc = rec.tables.get(lake_table)
            if tc is None:  # a head always points at a commit that touched the table
                raise RuntimeError(f"commit {seq} of {self.source!r} does not touch {lake_table!r}")
            out.append(rec)
            seq = tc.prev_seq
        out.reverse()
        return out
