"""Current-state tables: the change log merged into one row per key, as Apache Iceberg tables.

Each source table has an Iceberg v2 table ``<source>.<schema>__<table>`` whose latest snapshot
carries the change-log commit it reflects in its summary (``lakehouse.commit-seq``). A merge reads
only the commits after that one which touched the table (the commit records chain them), keeps the
latest change per key, and commits the result as one Iceberg snapshot together with the new commit
seq — so the merge is atomic and re-running it is a no-op.

Merge-on-read: a merge finds the live rows of the changed keys by reading only the key columns of
the table's data files, writes their positions to one position-delete file, appends the keys'
latest versions (deletes excluded) as one data file, and commits both in one snapshot
(`connectors.lake.iceberg_deletes`). When the table has too many files or too many deleted rows
(`connectors.lake.compaction`), or a snapshot commit replaces the table, the merge instead
rewrites the whole table copy-on-write into well-sized data files, still in one snapshot. Each
commit also expires snapshots beyond the newest few, and the pipeline deletes the files only they
referenced (pyiceberg's expiry deletes none). The commit requires the table to still be at the
snapshot the merge read, so a racing merger fails with `MergeConflictError` and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.manifest import DataFile, ManifestEntry
from pyiceberg.table import Table as IcebergTable

from connectors.events import OP_COLUMN, SEQ_COLUMN, TXID_COLUMN, UNCHANGED_COLUMN
from connectors.lake import iceberg_deletes as files
from connectors.lake.commits import CommitLog, CommitRecord
from connectors.lake.compaction import CompactionPolicy, TableShape
from connectors.lake.row_locator import RowLocator, key_array
from connectors.lake.storage import Storage

log = logging.getLogger(__name__)

COMMIT_SEQ_PROPERTY = "lakehouse.commit-seq"
KEY_PROPERTY = "lakehouse.key"
# Change-log metadata columns the current state drops (it keeps _seq, _commit_ts, _position).
_DROP_FROM_STATE = (OP_COLUMN, TXID_COLUMN, UNCHANGED_COLUMN)
KEEP_SNAPSHOTS = 3
# Table properties set at creation: pyiceberg then deletes metadata.json files beyond the last few
# after each commit (Iceberg's own "write.metadata.delete-after-commit.enabled").
_TABLE_PROPERTIES = {
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "8",
}


class MergeConflictError(Exception):
    """Another merger changed the table while this merge ran; this merge committed nothing."""


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
        self, storage: Storage, catalog: Catalog, source: str, compaction: CompactionPolicy | None = None
    ) -> None:
        self.storage = storage
        self.catalog = catalog
        self.source = source
        self.compaction = compaction or CompactionPolicy()
        # Manifests are immutable: their decoded entries are kept between merges (only those of
        # the latest snapshot read, so the cache stays as small as the table's manifest list).
        self._manifest_cache: dict[str, list[ManifestEntry]] = {}
        self._locator = RowLocator()
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

    def read(self, lake_table: str) -> pa.Table:
        """The table's current rows (empty table if it does not exist yet); deletes applied."""
        table = self.load(lake_table)
        if table is None:
            return pa.table({})
        return table.scan().to_arrow()

    def merge(self, latest: CommitRecord | None = None) -> list[MergeResult]:
        """Bring every table up to the latest commit; returns what changed."""
        latest = latest or self.log.latest()
        if latest is None:
            return []
        results = []
        for lake_table, head in sorted(latest.heads.items()):
            result = self.merge_table(lake_table, head)
            if result is not None:
                results.append(result)
        return results

    def merge_table(self, lake_table: str, head: int) -> MergeResult | None:
        """Merge the commits up to `head` into one table; None if it is already there.

        Raises `MergeConflictError` if another merger committed to the table meanwhile (then
        nothing of this merge is visible; merging again continues from the other's commit).
        """
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
        # A snapshot replaces the state: nothing before the latest one matters.
        start = max((i for i, c in enumerate(commits) if c.tables[lake_table].snapshot), default=None)
        replace = start is not None
        if replace:
            commits = commits[start:]
        changes = self._read_changes(lake_table, commits)
        key = self._key_columns(table, lake_table, commits)
        latest = _latest_per_key(changes, key) if changes is not None else None
        if table is None:
            if latest is None:
                return None
            table = self.catalog.create_table(
                self.identifier(lake_table),
                schema=_nullable(_state_columns(latest).schema),
                properties={KEY_PROPERTY: ",".join(key), **_TABLE_PROPERTIES},
            )
        target_schema = table.schema().as_arrow()
        if latest is not None and latest.num_rows:
            target_schema = self._evolve_schema(table, target_schema, _nullable(_state_columns(latest).schema))
        live = files.live_files(table, self._manifest_cache)
        existing = None
        if latest is not None and _has_unchanged_marks(latest):
            # Rare (UPDATEs of TOASTed rows): the current rows fill the values not sent.
            existing = table.scan().to_arrow() if live.data and not replace else None
            assert changes is not None
            latest = _fill_unchanged(latest, changes, existing, key)
        deletes = 0
        upserts = pa.table({})
        if latest is not None and latest.num_rows:
            is_delete = pc.equal(latest[OP_COLUMN], "D")
            deletes = pc.sum(is_delete).as_py() or 0
            upserts = _conform(_state_columns(latest.filter(pc.invert(is_delete))), target_schema)
        properties = {COMMIT_SEQ_PROPERTY: str(head)}
        added: list[DataFile] = []
        removed: Sequence[ManifestEntry] = ()
        reason = "snapshot replaces the table" if replace else None if live.data else "empty table"
        if reason is None:
            # Already past a threshold before this merge's own files? Then skip locating rows.
            reason = self.compaction.reason(
                TableShape(
                    data_files=len(live.data) + (1 if upserts.num_rows else 0),
                    delete_files=len(live.deletes),
                    data_rows=live.data_rows + upserts.num_rows,
                    deleted_rows=live.deleted_rows,
                )
            )
            if reason is not None:
                log.info("%s: compacting (%s)", self.identifier(lake_table), reason)
        if reason is None:
            changed = _key_array(latest, key) if latest is not None and latest.num_rows else None
            added, positions = self._write_and_locate(table, target_schema, live, upserts, changed, key)
            shape = TableShape(
                data_files=len(live.data) + len(added),
                delete_files=len(live.deletes) + (1 if positions.num_rows else 0),
                data_rows=live.data_rows + upserts.num_rows,
                deleted_rows=live.deleted_rows + positions.num_rows,
            )
            reason = self.compaction.reason(shape)
            if reason is None and positions.num_rows:
                added.append(files.write_position_deletes(table, positions))
            elif reason is not None:
                log.info("%s: compacting (%s)", self.identifier(lake_table), reason)
                files.delete_files(table, [f.file_path for f in added])
        if reason is not None:
            if existing is None and live.data and not replace:
                existing = table.scan().to_arrow()
            # A table loaded from a snapshot is written sorted by key, so merges can binary-search
            # its keys; a compaction keeps file order (re-sorting a large table costs more than
            # the hash lookups it would save before the next compaction).
            rows = self._rewrite(existing, latest, upserts, key, target_schema)
            sort = replace or not live.data
            added = files.write_data_files(table, _sorted_by_key(rows, key) if sort else rows)
            removed = live.all
        orphans = files.commit_snapshot(
            table,
            added=added,
            removed=removed,
            removes_all=bool(removed),
            properties=properties,
            keep_snapshots=KEEP_SNAPSHOTS,
        )
        files.delete_files(table, orphans)
        rows = _live_rows(table)
        log.info("%s: merged up to commit %d (%d rows)", self.identifier(lake_table), head, rows)
        return MergeResult(lake_table, head, upserts.num_rows, deletes, rows, replace)

    # -- merge-on-read -------------------------------------------------------------------------
    def _write_and_locate(
        self,
        table: IcebergTable,
        target: pa.Schema,
        live: files.LiveFiles,
        upserts: pa.Table,
        changed: pa.Array | None,
        key: Sequence[str],
    ) -> tuple[list[DataFile], pa.Table]:
        """Write the upserts' data file while locating the rows they replace (both mostly I/O and
        Arrow kernels, which release the GIL, so they overlap)."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(files.write_data_files, table, _sorted_by_key(upserts, key))
            try:
                positions = (
                    self._locator.locate(table, target, live, changed, key)
                    if changed is not None
                    else files.POSITION_DELETE_SCHEMA.empty_table()
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    files.delete_files(table, [f.file_path for f in pending.result()])
                raise
            return pending.result(), positions

    def _rewrite(
        self,
        existing: pa.Table | None,
        latest: pa.Table | None,
        upserts: pa.Table,
        key: Sequence[str],
        target_schema: pa.Schema,
    ) -> pa.Table:
        """Copy-on-write: the existing rows minus changed keys, plus the upserts."""
        parts = []
        if existing is not None and existing.num_rows:
            keep = existing
            if latest is not None and latest.num_rows:
                keep = existing.filter(pc.invert(pc.is_in(_key_array(existing, key), _key_array(latest, key))))
            parts.append(_conform(keep, target_schema))
        if upserts.num_rows:
            parts.append(upserts)
        return pa.concat_tables(parts) if parts else target_schema.empty_table()

    # -- helpers -------------------------------------------------------------------------------
    def _read_changes(self, lake_table: str, commits: Sequence[CommitRecord]) -> pa.Table | None:
        files_ = [f.path for c in commits for f in c.tables[lake_table].files]
        if not files_:
            return None
        tables = [self.storage.read_parquet(p) for p in files_]
        return pa.concat_tables(tables, promote_options="permissive")

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
        with table.update_schema() as update:
            update.union_by_name(schema)
        return table.schema().as_arrow()


def _live_rows(table: IcebergTable) -> int:
    """Rows a reader sees, from the snapshot summary (no position is ever deleted twice)."""
    snapshot = table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    summary = snapshot.summary
    return int(summary.get("total-records", 0) or 0) - int(summary.get("total-position-deletes", 0) or 0)


def _sorted_by_key(rows: pa.Table, key: Sequence[str]) -> pa.Table:
    """`rows` ordered by key (a snapshot usually arrives in key order: then no copy is made)."""
    if len(key) == 1 and rows.num_rows > 1:
        column = rows[key[0]]
        if pc.all(pc.greater(column.slice(1), column.slice(0, rows.num_rows - 1))).as_py():
            return rows
    return rows.sort_by([(k, "ascending") for k in key])


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """Equal as Iceberg types (pyiceberg reads strings and binaries back as their large variants)."""
    large = {pa.string(): pa.large_string(), pa.binary(): pa.large_binary()}
    return large.get(a, a) == large.get(b, b)


def _has_unchanged_marks(latest: pa.Table) -> bool:
    if UNCHANGED_COLUMN not in latest.column_names:
        return False
    return latest[UNCHANGED_COLUMN].null_count < latest.num_rows


def _state_columns(table: pa.Table) -> pa.Table:
    """Drop the change-log columns the current state does not keep."""
    return table.drop_columns([c for c in _DROP_FROM_STATE if c in table.column_names])


def _nullable(schema: pa.Schema) -> pa.Schema:
    """All columns optional, the row's own columns first and the lake's metadata columns last."""
    fields = [f.with_nullable(True) for f in schema]
    fields.sort(key=lambda f: f.name.startswith("_"))
    return pa.schema(fields)


_key_array = key_array


def _latest_per_key(changes: pa.Table, key: Sequence[str]) -> pa.Table:
    """The last change (highest _seq) of every key."""
    grouped = changes.select([*key, SEQ_COLUMN]).group_by(list(key)).aggregate([(SEQ_COLUMN, "max")])
    winners = grouped[f"{SEQ_COLUMN}_max"]
    latest = changes.filter(pc.is_in(changes[SEQ_COLUMN], winners))
    return latest.sort_by(SEQ_COLUMN)


def _fill_unchanged(
    latest: pa.Table, changes: pa.Table, existing: pa.Table | None, key: Sequence[str]
) -> pa.Table:
    """Give columns the source did not send (unchanged TOAST values) the value the lake has.

    For each such cell: the newest earlier change of the same key that did carry the column,
    else the current-state row. Rare (only UPDATEs of TOASTed rows), so plain Python is fine.
    """
    marks = latest[UNCHANGED_COLUMN].to_pylist()
    todo = [i for i, m in enumerate(marks) if m]
    if not todo:
        return latest
    change_keys = _key_array(changes, key).to_pylist()
    change_marks = changes[UNCHANGED_COLUMN].to_pylist()
    change_seqs = changes[SEQ_COLUMN].to_pylist()
    latest_keys = _key_array(latest, key).to_pylist()
    existing_index: dict[object, int] = {}
    if existing is not None and existing.num_rows:
        existing_index = {k: i for i, k in enumerate(_key_array(existing, key).to_pylist())}
    columns = {name: latest[name].to_pylist() for name in {c for i in todo for c in marks[i]}}
    for i in todo:
        k, seq = latest_keys[i], latest[SEQ_COLUMN][i].as_py()
        earlier = sorted(
            (j for j, ck in enumerate(change_keys) if ck == k and change_seqs[j] < seq),
            key=lambda j: change_seqs[j],
            reverse=True,
        )
        for column in marks[i]:
            value = None
            for j in earlier:
                if column not in (change_marks[j] or ()) and changes[OP_COLUMN][j].as_py() != "D":
                    value = changes[column][j].as_py()
                    break
            else:
                if k in existing_index and column in existing.column_names:  # type: ignore[union-attr]
                    value = existing[column][existing_index[k]].as_py()  # type: ignore[index]
            columns[column][i] = value
    for name, values in columns.items():
        idx = latest.column_names.index(name)
        latest = latest.set_column(idx, latest.field(name), pa.array(values, latest.field(name).type))
    return latest


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/extend columns to `schema` (missing ones as nulls) and cast (widening only)."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(pc.cast(table[f.name], f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)
