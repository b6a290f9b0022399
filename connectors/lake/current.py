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

Memory stays bounded by about one change-log file plus the merge's key columns, however large the
transaction: pass 1 reads only the key columns, ``_seq`` and ``Op`` of every change file and picks
each key's latest change; pass 2 reads the change files again one at a time and writes their
winning rows chunk by chunk (`iceberg_deletes.DataFileWriter`). A copy-on-write rewrite streams
the table's live rows one data file at a time too (`iceberg_deletes.live_row_chunks`). Data files
written by a merge that then fails are deleted, and nothing is visible before the one commit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
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
        key = self._key_columns(table, lake_table, commits)
        # Pass 1 (key columns, _seq and Op only): which change row of each key wins. The rows
        # themselves are read again, one change file at a time, only when they are written.
        changes = self._index_changes([f.path for c in commits for f in c.tables[lake_table].files], key)
        if table is None:
            if changes is None:
                return None
            table = self.catalog.create_table(
                self.identifier(lake_table),
                schema=_nullable(_state_schema(changes.schema)),
                properties={KEY_PROPERTY: ",".join(key), **_TABLE_PROPERTIES},
            )
        target_schema = table.schema().as_arrow()
        if changes is not None and changes.keys:
            target_schema = self._evolve_schema(
                table, target_schema, _nullable(_state_schema(changes.schema))
            )
        live = files.live_files(table, self._manifest_cache)
        patched = None
        if changes is not None and changes.marked is not None:
            # Rare (UPDATEs of TOASTed rows): the current rows fill the values not sent.
            patched = self._fill_unchanged(
                table, changes, key, target_schema, bool(live.data) and not replace
            )
        upserts = changes.upserts if changes is not None else 0
        deletes = changes.deletes if changes is not None else 0
        properties = {COMMIT_SEQ_PROPERTY: str(head)}
        added: list[DataFile] = []
        removed: Sequence[ManifestEntry] = ()
        reason = "snapshot replaces the table" if replace else None if live.data else "empty table"
        if reason is None:
            # Already past a threshold before this merge's own files? Then skip locating rows.
            reason = self.compaction.reason(
                TableShape(
                    data_files=len(live.data) + (1 if upserts else 0),
                    delete_files=len(live.deletes),
                    data_rows=live.data_rows + upserts,
                    deleted_rows=live.deleted_rows,
                )
            )
            if reason is not None:
                log.info("%s: compacting (%s)", self.identifier(lake_table), reason)
        if reason is None:
            chunks = self._upsert_chunks(changes, key, target_schema, patched, sort=True)
            changed = changes.changed if changes is not None and changes.keys else None
            added, positions = self._write_and_locate(table, target_schema, live, chunks, changed, key)
            shape = TableShape(
                data_files=len(live.data) + len(added),
                delete_files=len(live.deletes) + (1 if positions.num_rows else 0),
                data_rows=live.data_rows + upserts,
                deleted_rows=live.deleted_rows + positions.num_rows,
            )
            reason = self.compaction.reason(shape)
            if reason is None and positions.num_rows:
                added.append(files.write_position_deletes(table, positions))
            elif reason is not None:
                log.info("%s: compacting (%s)", self.identifier(lake_table), reason)
                files.delete_files(table, [f.file_path for f in added])
        if reason is not None:
            # A table loaded from a snapshot is written sorted by key (chunk by chunk: a snapshot
            # arrives in key order, so the chunks follow each other), so merges can binary-search
            # its keys; a compaction keeps file order (re-sorting a large table costs more than
            # the hash lookups it would save before the next compaction).
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
        return MergeResult(lake_table, head, upserts, deletes, rows, replace)

    # -- pass 1: the winners -------------------------------------------------------------------
    def _index_changes(self, paths: Sequence[str], key: Sequence[str]) -> _ChangeIndex | None:
        """Read only the key columns, _seq, Op (and _unchanged) of the change files: which row of
        each file is its key's latest change, and whether it is a delete."""
        if not paths:
            return None
        schemas = [self.storage.read_parquet_schema(p) for p in paths]
        # What concatenating the files would give (columns added later, widened types).
        schema = pa.unify_schemas(schemas, promote_options="permissive")
        parts = []
        for path, file_schema in zip(paths, schemas, strict=True):
            marks = UNCHANGED_COLUMN in file_schema.names
            columns = [*key, SEQ_COLUMN, OP_COLUMN, *([UNCHANGED_COLUMN] if marks else [])]
            # One thread: reading a few columns gains little from more, and each thread's
            # decoding buffers would add to the peak.
            part = self._read_columns(path, columns, use_threads=False)
            marked = (
                pc.is_valid(part[UNCHANGED_COLUMN])
                if marks
                else pa.nulls(part.num_rows, pa.bool_()).fill_null(False)
            )
            parts.append(
                pa.table(
                    {
                        **{k: pc.cast(part[k], schema.field(k).type) for k in key},
                        SEQ_COLUMN: part[SEQ_COLUMN],
                        _DELETE: pc.equal(part[OP_COLUMN], "D"),
                        _MARKED: marked,
                    }
                )
            )
        rows = [p.num_rows for p in parts]
        index = pa.concat_tables(parts).combine_chunks()
        del parts
        if not index.num_rows:
            empty = pa.array([], pa.uint64())
            return _ChangeIndex(
                list(paths), schema, [empty] * len(rows), _key_array(index, key), 0, 0, 0, None
            )
        # The latest change of each key: sort by key then _seq descending, and take the first
        # row of every run of equal keys. A sort costs far less memory than hash grouping
        # (`group_by` of a million keys peaks at several times the keys' size).
        order = pc.sort_indices(
            index, sort_keys=[*((k, "ascending") for k in key), (SEQ_COLUMN, "descending")]
        )
        ordered = index.select(list(key)).take(order)
        first: pa.Array | None = None
        for k in key:
            column = ordered[k].combine_chunks()
            differs = pc.fill_null(pc.not_equal(column.slice(1), column.slice(0, len(column) - 1)), True)
            first = differs if first is None else pc.or_(first, differs)
        assert first is not None
        starts = pa.concat_arrays([pa.array([True]), first])
        winners = order.filter(starts)  # row numbers (over all files) of each key's latest change
        changed = _key_array(ordered.filter(starts), key)  # sorted by key
        del ordered, order
        winners = winners.take(pc.array_sort_indices(winners))  # back in file order
        is_delete = index[_DELETE].combine_chunks().take(winners)
        marked = index[_MARKED].combine_chunks().take(winners)
        any_marked = bool(pc.any(marked).as_py())
        upserts = winners.filter(pc.invert(is_delete))
        offsets = [sum(rows[:i]) for i in range(len(rows) + 1)]
        bounds = pc.search_sorted(upserts, pa.array(offsets, upserts.type)).to_pylist()
        return _ChangeIndex(
            paths=list(paths),
            schema=schema,
            upsert_rows=[
                pc.subtract(
                    upserts.slice(bounds[i], bounds[i + 1] - bounds[i]), pa.scalar(offsets[i], upserts.type)
                )
                for i in range(len(rows))
            ],
            changed=changed,
            keys=len(winners),
            upserts=len(upserts),
            deletes=pc.sum(is_delete).as_py() or 0,
            marked=_key_array(index.take(winners.filter(marked)), key) if any_marked else None,
        )

    def _read_columns(
        self, path: str, columns: Sequence[str] | None = None, use_threads: bool = True
    ) -> pa.Table:
        """Columns of one change file (all by default)."""
        # `ParquetFile` rather than `read_table`: no dataset machinery, a smaller peak.
        with pq.ParquetFile(self.storage.full_path(path), filesystem=self.storage.fs) as parquet:
            return parquet.read(columns=columns, use_threads=use_threads)

    def _file_keys(self, rows: pa.Table, key: Sequence[str], schema: pa.Schema) -> pa.Array:
        """`rows`' key values, compared in the types of `schema` (files may hold narrower ones)."""
        cast = pa.table({k: pc.cast(rows[k], schema.field(k).type) for k in key})
        return _key_array(cast, key)

    # -- pass 2: the rows ----------------------------------------------------------------------
    def _upsert_chunks(
        self,
        changes: _ChangeIndex | None,
        key: Sequence[str],
        target: pa.Schema,
        patched: pa.Table | None,
        sort: bool,
    ) -> Iterator[pa.Table]:
        """The winning non-delete rows in the target schema, one change file at a time."""
        if changes is None:
            return
        skip = patched[SEQ_COLUMN] if patched is not None and patched.num_rows else None
        for path, wanted in zip(changes.paths, changes.upsert_rows, strict=True):
            if not len(wanted):
                continue
            # Decoded on one thread: each decoding thread would hold its own buffers (the peak
            # matters more here than the speed of reading one change file).
            rows = self._read_columns(path, use_threads=False).take(wanted)
            if skip is not None:
                rows = rows.filter(pc.invert(pc.is_in(rows[SEQ_COLUMN], value_set=skip)))
            chunk = _conform(_state_columns(rows), target)
            del rows
            yield _sorted_by_key(chunk, key) if sort else chunk
        if skip is not None:
            assert patched is not None
            yield _sorted_by_key(patched, key) if sort else patched

    def _fill_unchanged(
        self,
        table: IcebergTable,
        changes: _ChangeIndex,
        key: Sequence[str],
        target: pa.Schema,
        has_rows: bool,
    ) -> pa.Table | None:
        """The latest rows of the keys with unsent values, filled in (only those keys are read)."""
        marked = changes.marked
        assert marked is not None
        parts = []
        for path in changes.paths:
            rows = self._read_columns(path)
            parts.append(rows.filter(_in(self._file_keys(rows, key, changes.schema), marked)))
        subset = pa.concat_tables(parts, promote_options="permissive")
        existing = None
        if has_rows:
            existing_parts = [
                chunk.filter(_in(_key_array(chunk, key), marked)) for chunk in files.live_row_chunks(table)
            ]
            existing = pa.concat_tables(existing_parts) if existing_parts else None
        latest = _fill_unchanged(_latest_per_key(subset, key), subset, existing, key)
        latest = latest.filter(pc.not_equal(latest[OP_COLUMN], "D"))
        return _conform(_state_columns(latest), target)

    # -- merge-on-read -------------------------------------------------------------------------
    def _write_and_locate(
        self,
        table: IcebergTable,
        target: pa.Schema,
        live: files.LiveFiles,
        upserts: Iterator[pa.Table],
        changed: pa.Array | None,
        key: Sequence[str],
    ) -> tuple[list[DataFile], pa.Table]:
        """Write the upserts' data file while locating the rows they replace (both mostly I/O and
        Arrow kernels, which release the GIL, so they overlap)."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_write_chunks, table, target, upserts)
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

    # -- copy-on-write -------------------------------------------------------------------------
    def _rewrite(
        self,
        table: IcebergTable,
        target: pa.Schema,
        changes: _ChangeIndex | None,
        key: Sequence[str],
        patched: pa.Table | None,
        sort: bool,
        keep_existing: bool,
    ) -> list[DataFile]:
        """Copy-on-write: the existing rows minus changed keys, plus the upserts, file by file."""

        def chunks() -> Iterator[pa.Table]:
            if keep_existing:
                changed = changes.changed if changes is not None and changes.keys else None
                for chunk in files.live_row_chunks(table):
                    if changed is not None:
                        chunk = chunk.filter(pc.invert(_in(_key_array(chunk, key), changed)))
                    yield _conform(chunk, target)
            yield from self._upsert_chunks(changes, key, target, patched, sort)

        return _write_chunks(table, target, chunks())

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
        with table.update_schema() as update:
            update.union_by_name(schema)
        return table.schema().as_arrow()


_MARKED = "__marked"  # pass 1's columns: the row has _unchanged marks / is a delete
_DELETE = "__delete"


@dataclass(frozen=True, slots=True)
class _ChangeIndex:
    """What pass 1 learned from the key columns, _seq and Op of a merge's change files."""

    paths: list[str]
    schema: pa.Schema  # the files' schemas unified (what concatenating them would give)
    upsert_rows: list[pa.Array]  # per file: row numbers of the keys' latest changes, not deletes
    changed: pa.Array  # every changed key (`key_array` values, unique)
    keys: int  # how many keys changed
    upserts: int
    deletes: int
    marked: pa.Array | None  # keys whose latest change did not send every column, if any


def _write_chunks(table: IcebergTable, target: pa.Schema, chunks: Iterator[pa.Table]) -> list[DataFile]:
    """Write chunks as data files (none if no rows); on failure nothing written stays behind."""
    writer = files.DataFileWriter(table, target)
    try:
        for chunk in chunks:
            writer.write(chunk)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def _in(values: pa.Array, value_set: pa.Array) -> pa.Array:
    """`is_in`, comparing in the type of `values` (scans give large strings, change files not)."""
    return pc.is_in(values, value_set=value_set.cast(values.type))


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


def _state_columns(table: pa.Table) -> pa.Table:
    """Drop the change-log columns the current state does not keep."""
    return table.drop_columns([c for c in _DROP_FROM_STATE if c in table.column_names])


def _state_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` without the change-log columns the current state does not keep."""
    return pa.schema([f for f in schema if f.name not in _DROP_FROM_STATE])


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
