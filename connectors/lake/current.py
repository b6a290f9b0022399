"""Current-state tables: the change log merged into one row per key, as Apache Iceberg tables.

Each source table has an Iceberg v2 table ``<source>.<schema>__<table>`` whose latest snapshot
carries the change-log commit it reflects in its summary (``lakehouse.commit-seq``). A merge reads
only the commits after that one which touched the table (the commit records chain them), keeps the
latest change per key, and commits the result as one Iceberg snapshot together with the new commit
seq — so the merge is atomic and re-running it is a no-op.

Merge-on-read: a merge finds the live rows of the changed keys by reading only the key columns of
the table's data files (cached between merges, `connectors.lake.row_locator`), writes their
positions to position-delete files, appends the keys' latest versions (deletes excluded) as one
data file, and commits them in one snapshot (`connectors.lake.iceberg_commit`). In the same
snapshot it bin-packs (`connectors.lake.compaction` decides, `connectors.lake.bin_packing`
rewrites): a full size tier of small data files is rewritten into one file, a data file with over
20 % of its rows deleted is rewritten alone, and delete files that held positions in rewritten
files are replaced, others folded in size tiers — never the whole table because of a file count,
so the cost of a merge follows its change, not the table (`bench/bench_merge_scale.py`). Only a
snapshot commit (replacing the table), the first merge into an empty table, or `ALWAYS_REWRITE`
rewrite the whole table copy-on-write into well-sized data files, still in one snapshot. Each
commit also expires the snapshots the lake's `SnapshotRetention` no longer keeps (beyond the newest
few *and* superseded more than an hour ago, by default) and records the files only they referenced
(`connectors.lake.orphans`); the maintenance pass, `delete_orphans`, deletes them after a grace
period, so a query planned on an old snapshot keeps its files. The commit requires the table to
still be at the snapshot the merge read, so a racing merger fails with `MergeConflictError` and
changes nothing.

Memory stays bounded by about one change-log file plus the merge's key columns, however large the
transaction: pass 1 reads only the key columns, ``_seq`` and ``Op`` of every change file and picks
each key's latest change; pass 2 reads the change files again one at a time
(`connectors.lake.changeset`) and writes their winning rows chunk by chunk
(`iceberg_files.DataFileWriter`). A copy-on-write rewrite streams the table's live rows one data
file at a time too (`live_rows.live_row_chunks`); a compaction holds its small files' rows (about
4 x 32 MB on disk at most, by default) to sort them by key, or one delete-heavy file's. Data files
written by a merge that then fails are deleted, and nothing is visible before the one commit.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.manifest import DataFile, ManifestEntry
from pyiceberg.table import Table as IcebergTable

from connectors.lake.bin_packing import compact
from connectors.lake.changeset import ChangeFiles, ChangeIndex, conform, in_set, state_schema
from connectors.lake.commits import CommitLog, CommitRecord
from connectors.lake.compaction import CompactionPolicy
from connectors.lake.config import SnapshotRetention
from connectors.lake.iceberg_commit import commit_snapshot
from connectors.lake.iceberg_deletes import POSITION_DELETE_SCHEMA, write_position_deletes
from connectors.lake.iceberg_expiry import Expiry, dropped_metadata_files
from connectors.lake.iceberg_files import KEY_PROPERTY, delete_files, write_chunks
from connectors.lake.live_rows import LiveFiles, live_files, live_row_chunks
from connectors.lake.orphans import OrphanLedger, OrphanReport, delete_orphans
from connectors.lake.row_locator import RowLocator, key_array
from connectors.lake.storage import Storage, StorageError

log = logging.getLogger(__name__)

COMMIT_SEQ_PROPERTY = "lakehouse.commit-seq"
# Table properties set at creation. The metadata log keeps the last few metadata.json files; the
# ones it drops are recorded as orphans (deleted after the retention age plus the grace period), not
# deleted by pyiceberg at once ("write.metadata.delete-after-commit.enabled"): an old metadata.json
# is what a pinned reader (DuckDB's iceberg_scan of a path, a Glue pointer copy) opens.
_TABLE_PROPERTIES = {
    "write.metadata.delete-after-commit.enabled": "false",
    "write.metadata.previous-versions-max": "8",
}


class MergeConflictError(Exception):
    """Another merger changed the table while this merge ran; this merge committed nothing."""


class MergerUnsupportedError(Exception):
    """A large-table merger cannot merge this table (e.g. Spark and a ``time`` column); nothing
    was written, and the table is merged in-process instead."""


class LargeTableMerger(Protocol):
    """Another engine for tables of at least `min_rows` rows (`connectors.lake.spark.SparkMerger`)."""

    min_rows: int

    def merge(self, current: CurrentState, lake_table: str, head: int) -> MergeResult | None: ...


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What one merge did to one current-state table."""

    table: str
    commit_seq: int
    upserts: int
    deletes: int
    rows: int
    replaced: bool


class CurrentState:
    """The current-state tables of one source."""

    def __init__(
        self,
        storage: Storage,
        catalog: Catalog,
        source: str,
        compaction: CompactionPolicy | None = None,
        retention: SnapshotRetention | None = None,
        clock: Callable[[], float] = time.time,
        large_tables: LargeTableMerger | None = None,
    ) -> None:
        self.storage = storage
        self.large_tables = large_tables
        self.catalog = catalog
        self.source = source
        self.compaction = compaction or CompactionPolicy()
        self.retention = retention or SnapshotRetention()
        self._clock = clock  # seconds since the epoch: snapshot timestamps, retention, grace
        self.orphans = OrphanLedger(storage, source)
        # Manifests are immutable: their decoded entries are kept between merges (only those of
        # the latest snapshot read, so the cache stays as small as the table's manifest list).
        self._manifest_cache: dict[str, list[ManifestEntry]] = {}
        self._locator = RowLocator()
        self._changes = ChangeFiles(storage)
        self.log = CommitLog(storage, source)
        with contextlib.suppress(NamespaceAlreadyExistsError):
            catalog.create_namespace(source)

    def identifier(self, lake_table: str) -> str:
        return f"{self.source}.{lake_table}"

    def load(self, lake_table: str) -> IcebergTable | None:
        try:
            return self.catalog.load_table(self.identifier(lake_table))
        except NoSuchTableError:
            return None

    def applied_seq(self, table: IcebergTable | None) -> int:
        if table is None or table.current_snapshot() is None:
            return 0
        summary = table.current_snapshot().summary  # type: ignore[union-attr]
        return int(summary.additional_properties.get(COMMIT_SEQ_PROPERTY, 0)) if summary else 0

    def live_rows(self, table: IcebergTable | None) -> int:
        """Rows a reader of the table sees now, from its snapshot summary (no data read)."""
        return 0 if table is None else _live_rows(table)

    def read(
        self,
        lake_table: str,
        columns: Sequence[str] | None = None,
        row_filter: BooleanExpression | None = None,
    ) -> pa.Table:
        """The table's current rows (empty table if it does not exist yet); deletes applied.

        `columns` and `row_filter` (a pyiceberg expression, e.g. ``In("patient_id", ids)``) are
        pushed down to the scan, so only the files and columns needed are read.
        """
        table = self.load(lake_table)
        if table is None:
            return pa.table({})
        scan = table.scan(
            row_filter=row_filter if row_filter is not None else AlwaysTrue(),
            selected_fields=tuple(columns) if columns else ("*",),
        )
        return scan.to_arrow()

    def merge(self, latest: CommitRecord | None = None) -> list[MergeResult]:
        """Bring every table up to the latest commit; returns what changed.

        A table whose chunked snapshot is under way keeps its current state (none, or the state
        before a resnapshot) until the snapshot's last chunk is committed; then one merge applies
        the snapshot's chunks and every later change, ranked by `_seq`."""
        latest = latest or self.log.latest()
        if latest is None:
            return []
        results = []
        for lake_table, head in sorted(latest.heads.items()):
            if lake_table in latest.snapshots:
                continue  # a chunked snapshot under way: merged once its last chunk is committed
            result = self.merge_table(lake_table, head)
            if result is not None:
                results.append(result)
        return results

    def merge_table(self, lake_table: str, head: int) -> MergeResult | None:
        """Merge the commits up to `head` into one table; None if it is already there. A table of
        at least `large_tables.min_rows` rows goes to that merger (Spark), others are merged here.

        Raises `MergeConflictError` if another merger committed to the table meanwhile (then
        nothing of this merge is visible; merging again continues from the other's commit).
        """
        if self.large_tables is not None:
            table = self.load(lake_table)
            if table is not None and self.live_rows(table) >= self.large_tables.min_rows:
                try:
                    return self.large_tables.merge(self, lake_table, head)
                except MergerUnsupportedError as e:
                    log.warning("%s: %s; merging it in-process", self.identifier(lake_table), e)
        return self.merge_table_in_process(lake_table, head)

    def merge_table_in_process(self, lake_table: str, head: int) -> MergeResult | None:
        """`merge_table` with pyiceberg in this process, whatever the table's size."""
        try:
            return self._merge_table(lake_table, head)
        except (CommitFailedException, TableAlreadyExistsError) as e:
            raise MergeConflictError(
                f"{self.identifier(lake_table)}: another merger committed first; this merge was discarded ({e})"
            ) from e

    def _merge_table(self, lake_table: str, head: int) -> MergeResult | None:
        table = self.load(lake_table)
        applied = self.applied_seq(table)
        if head <= applied:
            return None
        commits = self.log.walk_table(lake_table, head, applied)
        # A snapshot replaces the state: nothing before the latest one matters, except, for a
        # backfill staged while the stream went on, the table's commits after the one it was
        # staged from: they are applied again over it (its rows rank below theirs by _seq).
        start = max((i for i, c in enumerate(commits) if c.tables[lake_table].snapshot), default=None)
        replace = start is not None
        if start is not None:
            snapshot = commits[start].tables[lake_table]
            commits = commits[start:]
            if snapshot.replay_after is not None:
                replayed = self.log.walk_table(lake_table, snapshot.prev_seq, snapshot.replay_after)
                commits = replayed + commits
        key = self._key_columns(table, lake_table, commits)
        # Pass 1 (key columns, _seq and Op only): which change row of each key wins. The rows
        # themselves are read again, one change file at a time, only when they are written.
        changes = self._changes.index([f.path for c in commits for f in c.tables[lake_table].files], key)
        if table is None:
            if changes is None:
                return None
            table = self.catalog.create_table(
                self.identifier(lake_table),
                schema=_nullable(state_schema(changes.schema)),
                properties={KEY_PROPERTY: ",".join(key), **_TABLE_PROPERTIES},
            )
        target_schema = table.schema().as_arrow()
        if changes is not None and changes.keys:
            target_schema = self._evolve_schema(table, target_schema, _nullable(state_schema(changes.schema)))
        live = live_files(table, self._manifest_cache)
        patched = None
        if changes is not None and changes.marked is not None:
            # Rare (UPDATEs of TOASTed rows): the current rows fill the values not sent.
            patched = self._changes.fill_unchanged(
                table, changes, key, target_schema, bool(live.data) and not replace
            )
        upserts = changes.upserts if changes is not None else 0
        deletes = changes.deletes if changes is not None else 0
        properties = {COMMIT_SEQ_PROPERTY: str(head)}
        added: list[DataFile] = []
        removed: Sequence[ManifestEntry] = ()
        reason = "snapshot replaces the table" if replace else None if live.data else "empty table"
        if reason is None and self.compaction.rewrite_always:
            reason = "the policy rewrites on every merge"
        if reason is None:
            chunks = self._changes.upsert_chunks(changes, key, target_schema, patched, sort=True)
            changed = changes.changed if changes is not None and changes.keys else None
            added, positions = self._write_and_locate(table, target_schema, live, chunks, changed, key)
            try:
                compacted = compact(
                    table, self.compaction, self._locator, target_schema, live, positions, changed, key
                )
                if compacted.reason:
                    log.info("%s: compacting (%s)", self.identifier(lake_table), compacted.reason)
                added += compacted.written
                removed, delete_parts = compacted.removed, compacted.positions
                for part in delete_parts:
                    added.append(write_position_deletes(table, part))
            except BaseException:
                delete_files(table, [f.file_path for f in added])
                raise
        else:
            # A table loaded from a snapshot is written sorted by key (chunk by chunk: a snapshot
            # arrives in key order, so the chunks follow each other), so merges can binary-search
            # its keys; a whole-table rewrite keeps file order otherwise.
            log.info("%s: rewriting the table (%s)", self.identifier(lake_table), reason)
            sort = replace or not live.data
            added = self._rewrite(
                table,
                target_schema,
                changes,
                key,
                patched,
                sort,
                keep_existing=bool(live.data) and not replace,
            )
            removed = live.all
        now_ms = self._now_ms()
        expiry = commit_snapshot(
            table,
            added=added,
            removed=removed,
            removes_all=reason is not None,
            properties=properties,
            retention=self.retention,
            now_ms=now_ms,
        )
        self._record_orphans(lake_table, expiry, now_ms)
        rows = _live_rows(table)
        log.info("%s: merged up to commit %d (%d rows)", self.identifier(lake_table), head, rows)
        return MergeResult(lake_table, head, upserts, deletes, rows, replace)

    # -- retention -----------------------------------------------------------------------------
    def delete_orphans(self) -> list[OrphanReport]:
        """The maintenance pass: delete every table's recorded orphans whose grace has passed.

        Only files no snapshot in the table's metadata references are deleted (see
        `connectors.lake.orphans`); safe beside a running merge and re-runnable after a crash."""
        now_ms = self._now_ms()
        reports = []
        for lake_table in sorted({r.lake_table for r in self.orphans.records()}):
            table = self.load(lake_table)
            if table is None:
                continue  # dropped: its records wait (nothing reads the files, nothing to check)
            report = delete_orphans(table, self.orphans, lake_table, now_ms)
            if report.deleted:
                log.info("%s: deleted %d orphan file(s)", self.identifier(lake_table), report.deleted)
            reports.append(report)
        return reports

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _record_orphans(self, lake_table: str, expiry: Expiry, now_ms: int) -> None:
        """Record what a commit made unreferenced; the commit stands even if this fails."""
        grace_ms = int(self.retention.orphan_grace_seconds * 1000)
        # A dropped metadata.json stopped being current some commits ago; it may still be the
        # pointer a reader holds (a Glue copy), so it gets the whole retention age on top.
        age_ms = int(self.retention.max_snapshot_age_seconds * 1000)
        try:
            self.orphans.record(lake_table, expiry.files, now_ms + grace_ms)
            self.orphans.record(lake_table, expiry.metadata_files, now_ms + age_ms + grace_ms)
        except StorageError as e:
            log.warning(
                "%s: %d unreferenced file(s) left unrecorded, so never deleted (%s)",
                self.identifier(lake_table),
                len(expiry.files) + len(expiry.metadata_files),
                e,
            )

    # -- merge-on-read -------------------------------------------------------------------------
    def _write_and_locate(
        self,
        table: IcebergTable,
        target: pa.Schema,
        live: LiveFiles,
        upserts: Iterator[pa.Table],
        changed: pa.Array | None,
        key: Sequence[str],
    ) -> tuple[list[DataFile], pa.Table]:
        """Write the upserts' data file while locating the rows they replace (both mostly I/O and
        Arrow kernels, which release the GIL, so they overlap)."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(write_chunks, table, target, upserts)
            try:
                positions = (
                    self._locator.locate(table, target, live, changed, key)
                    if changed is not None
                    else POSITION_DELETE_SCHEMA.empty_table()
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    delete_files(table, [f.file_path for f in pending.result()])
                raise
            return pending.result(), positions

    # -- copy-on-write -------------------------------------------------------------------------
    def _rewrite(
        self,
        table: IcebergTable,
        target: pa.Schema,
        changes: ChangeIndex | None,
        key: Sequence[str],
        patched: pa.Table | None,
        sort: bool,
        keep_existing: bool,
    ) -> list[DataFile]:
        """Copy-on-write: the existing rows minus changed keys, plus the upserts, file by file."""

        def chunks() -> Iterator[pa.Table]:
            if keep_existing:
                changed = changes.changed if changes is not None and changes.keys else None
                for chunk in live_row_chunks(table):
                    if changed is not None:
                        chunk = chunk.filter(pc.invert(in_set(key_array(chunk, key), changed)))
                    yield conform(chunk, target)
            yield from self._changes.upsert_chunks(changes, key, target, patched, sort)

        return write_chunks(table, target, chunks())

    # -- helpers -------------------------------------------------------------------------------
    def _key_columns(
        self, table: IcebergTable | None, lake_table: str, commits: Sequence[CommitRecord]
    ) -> list[str]:
        if table is not None and table.properties.get(KEY_PROPERTY):
            return table.properties[KEY_PROPERTY].split(",")
        for c in commits:
            for f in c.tables[lake_table].files:
                meta = self.storage.read_parquet_schema(f.path).metadata or {}
                if b"lakehouse.key" in meta:
                    return meta[b"lakehouse.key"].decode().split(",")
        raise RuntimeError(f"{self.source}.{lake_table}: no key columns recorded in the change log")

    def _evolve_schema(self, table: IcebergTable, current: pa.Schema, schema: pa.Schema) -> pa.Schema:
        """Add new columns and widen types (`union_by_name`); returns the table's Arrow schema."""
        if all(
            name in current.names and _same_type(current.field(name).type, schema.field(name).type)
            for name in schema.names
        ):
            return current
        base, base_location = table.metadata, table.metadata_location
        with table.update_schema() as update:
            update.union_by_name(schema)
        dropped = dropped_metadata_files(base, base_location, table.metadata, table.metadata_location)
        self._record_orphans(table.name()[-1], Expiry(metadata_files=tuple(dropped)), self._now_ms())
        return table.schema().as_arrow()


def _live_rows(table: IcebergTable) -> int:
    """Rows a reader sees, from the snapshot summary (no position is ever deleted twice)."""
    snapshot = table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    summary = snapshot.summary
    return int(summary.get("total-records", 0) or 0) - int(summary.get("total-position-deletes", 0) or 0)


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Equal as Iceberg types (pyiceberg reads strings and binaries back as their large variants)."""
    large = {pa.string(): pa.large_string(), pa.binary(): pa.large_binary()}
    return large.get(a, a) == large.get(b, b)


def _nullable(schema: pa.Schema) -> pa.Schema:
    """All columns optional, the row's own columns first and the lake's metadata columns last."""
    fields = [f.with_nullable(True) for f in schema]
    fields.sort(key=lambda f: f.name.startswith("_"))
    return pa.schema(fields)
