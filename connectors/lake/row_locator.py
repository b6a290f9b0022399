"""Finding the live rows of changed keys in an Iceberg table: (data file path, row position).

A merge-on-read merge deletes the current version of every changed key by position, so it must
know where each one lives. Only the key columns of the data files are read — skipping files whose
key bounds (from the manifests) cannot hold a changed key — and rows that existing position-delete
files already removed are left out, so no row is ever deleted twice and deleted-row counts stay
exact. Data and delete files never change once written, so their key columns and deleted
positions are kept between merges of a long-running process (bounded; see `RowLocator`).

With a batch of random keys every data file (and every row group, up to a million rows) holds
some changed key, so key bounds prune only clustered changes; what keeps a streaming merge's cost
bounded by the change is that the key columns stay cached. A fresh process (`sync --once`, a
Dagster run) reads every key column once, which integer keys make cheap: they are written
delta-encoded and uncompressed (`connectors.lake.iceberg_files`), 2-3 ms per million keys read in
one thread (10x less than as pyarrow writes them by default; docs/decisions.md §2).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table as IcebergTable
from pyiceberg.types import NestedField

from connectors.lake.iceberg_deletes import POSITION_DELETE_SCHEMA, read_position_deletes
from connectors.lake.live_rows import LiveFiles, key_bounds, read_columns_by_id

# At most this many bytes of key values are cached (8 bytes per row for integer keys): a few tables
# of tens of millions of rows. Beyond it, the smallest files' key columns are read again on each
# merge. (A count of 8M keys before: a 10M-row table then re-read a 5M-row file's keys per merge.)
MAX_CACHED_KEY_BYTES = 512 * 2**20


def key_array(table: pa.Table, key: Sequence[str]) -> pa.Array:
    """One comparable value per row for the key columns (joined text for composite keys)."""
    if len(key) == 1:
        column = table[key[0]]
        # combine_chunks copies even a single chunk (80 MB for 10M integer keys).
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    parts = [pc.cast(table[k], pa.string()) for k in key]
    return pc.binary_join_element_wise(*parts, "\x1f").combine_chunks()


def _searchable(t: pa.DataType) -> bool:
    """Types Arrow's `search_sorted` supports (pyarrow 26 has no kernel for decimals, e.g. the
    decimal(20,0) that BIGINT UNSIGNED keys become): the others use the hash lookup."""
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_temporal(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
    )


class _FileKeys:
    """The key values of one data file, row by row, and how to find rows by key in them."""

    __slots__ = ("keys", "ascending")

    def __init__(self, keys: pa.Array) -> None:
        self.keys = keys
        # The merge writes data files sorted by key, so most files allow a binary search (a
        # few ms for a million keys) instead of hashing every key (`is_in`, several times slower).
        self.ascending = (
            _searchable(keys.type)
            and keys.null_count == 0
            and (
                len(keys) < 2 or bool(pc.all(pc.greater(keys.slice(1), keys.slice(0, len(keys) - 1))).as_py())
            )
        )

    def find(self, needles: pa.Array) -> pa.Array:
        """Row positions (int64, ascending) whose key is one of `needles` (sorted, unique)."""
        if needles.type != self.keys.type:  # e.g. composite keys joined as string vs large_string
            needles = pc.cast(needles, self.keys.type)
        if not self.ascending:
            return pc.cast(pc.indices_nonzero(pc.is_in(self.keys, value_set=needles)), pa.int64())
        at = pc.search_sorted(self.keys, needles)
        inside = pc.less(at, len(self.keys))
        at, needles = at.filter(inside), needles.filter(inside)
        found = pc.equal(self.keys.take(at), needles)
        return pc.cast(at.filter(found), pa.int64())


class RowLocator:
    """Locates rows by key, caching immutable files' key columns and deleted positions."""

    def __init__(self, max_cached_bytes: int = MAX_CACHED_KEY_BYTES) -> None:
        self.max_cached_bytes = max_cached_bytes
        self._keys: dict[tuple[str, tuple[pa.DataType, ...]], _FileKeys] = {}
        self._deleted: dict[str, dict[str, pa.Array]] = {}

    def locate(
        self,
        table: IcebergTable,
        target: pa.Schema,
        live: LiveFiles,
        changed: pa.Array,
        key: Sequence[str],
    ) -> pa.Table:
        """Positions (file_path, pos) of the live rows whose key is in `changed`."""
        schema = table.schema()
        key_fields = [schema.find_field(k) for k in key]
        key_types = tuple(target.field(k).type for k in key)
        lo = hi = None
        if len(key_fields) == 1 and pa.types.is_integer(changed.type) and len(changed):
            lo, hi = pc.min(changed).as_py(), pc.max(changed).as_py()
        deleted = self._merged_positions(self.deleted_positions(table, live))
        needles = pc.unique(changed).sort()
        cached = {}
        paths: list[pa.Array] = []
        positions: list[pa.Array] = []
        for entry in live.data:
            data_file = entry.data_file
            if lo is not None and hi is not None and not _may_hold(data_file, key_fields[0], changed, lo, hi):
                continue
            keys = self._file_keys(table, data_file, key_fields, key, key_types)
            cached[(data_file.file_path, key_types)] = keys
            hits = keys.find(needles)
            gone = deleted.get(data_file.file_path)
            if gone is not None and len(hits):
                # Hash the few hits, not the deleted positions (up to a fifth of a large file's
                # rows: hashing those on every merge made the cost follow the table's size).
                again = gone.filter(pc.is_in(gone, value_set=hits))
                if len(again):
                    hits = hits.filter(pc.invert(pc.is_in(hits, value_set=again)))
            if len(hits):
                positions.append(hits)
                paths.append(pa.array([data_file.file_path] * len(hits), pa.string()))
        self._keep_keys(cached, live)
        if not positions:
            return POSITION_DELETE_SCHEMA.empty_table()
        return pa.Table.from_arrays(
            [pa.concat_arrays(paths), pa.concat_arrays(positions)], schema=POSITION_DELETE_SCHEMA
        )

    def _file_keys(
        self,
        table: IcebergTable,
        data_file: DataFile,
        key_fields: Sequence[NestedField],
        key: Sequence[str],
        key_types: tuple[pa.DataType, ...],
    ) -> _FileKeys:
        hit = self._keys.get((data_file.file_path, key_types))
        if hit is not None:
            return hit
        columns = read_columns_by_id(table, data_file.file_path, [f.field_id for f in key_fields])
        # Old files may hold a narrower type of a widened key column: compare in the current type.
        columns = pa.Table.from_arrays(
            [pc.cast(columns.column(i), t) for i, t in enumerate(key_types)], names=list(key)
        )
        return _FileKeys(key_array(columns, key))

    def _keep_keys(self, used: dict[tuple[str, tuple[pa.DataType, ...]], _FileKeys], live: LiveFiles) -> None:
        """Cache the key columns just used, largest files first, within the bound."""
        live_paths = {e.data_file.file_path for e in live.data}
        keep = {k: v for k, v in self._keys.items() if k[0] in live_paths}
        keep.update(used)
        budget = self.max_cached_bytes
        self._keys = {}
        for k, v in sorted(keep.items(), key=lambda kv: -kv[1].keys.nbytes):
            if v.keys.nbytes <= budget:
                self._keys[k] = v
                budget -= v.keys.nbytes

    def deleted_positions(self, table: IcebergTable, live: LiveFiles) -> dict[str, dict[str, pa.Array]]:
        """Per live delete file, the positions it deletes per data file (each file read once)."""
        current: dict[str, dict[str, pa.Array]] = {}
        for entry in live.deletes:
            path = entry.data_file.file_path
            per_file = self._deleted.get(path)
            if per_file is None:
                per_file = read_position_deletes(table, [entry])
            current[path] = per_file
        self._deleted = current
        return current

    @staticmethod
    def _merged_positions(by_delete_file: dict[str, dict[str, pa.Array]]) -> dict[str, pa.Array]:
        """Deleted positions per data file, over all delete files."""
        merged: dict[str, list[pa.Array]] = {}
        for per_file in by_delete_file.values():
            for data_path, pos in per_file.items():
                merged.setdefault(data_path, []).append(pos)
        return {p: a[0] if len(a) == 1 else pa.concat_arrays(a) for p, a in merged.items()}


def _may_hold(data_file: DataFile, field: NestedField, changed: pa.Array, lo: int, hi: int) -> bool:
    """False if the file's integer key bounds exclude every changed key."""
    bounds = key_bounds(data_file, field.field_id, field.field_type)  # type: ignore[arg-type]
    if bounds is None:
        return True
    if bounds[1] < lo or bounds[0] > hi:
        return False
    within = pc.and_(pc.greater_equal(changed, bounds[0]), pc.less_equal(changed, bounds[1]))
    return bool(pc.any(within).as_py())
