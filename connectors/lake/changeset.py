"""A merge's change-log files: which change of each key wins, and the winning rows, file by file.

Memory stays bounded by about one change-log file plus the merge's key columns, however large the
transaction: pass 1 (`ChangeFiles.index`) reads only the key columns, ``_seq`` and ``Op`` of every
change file and picks each key's latest change; pass 2 (`ChangeFiles.upsert_chunks`) reads the
change files again one at a time and yields their winning rows in the current state's schema.
Changes that did not send every column (``_unchanged``: UPDATEs of TOASTed rows) get the missing
values from earlier changes or the current rows (`ChangeFiles.fill_unchanged`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.table import Table as IcebergTable

from connectors.events import OP_COLUMN, SEQ_COLUMN, TXID_COLUMN, UNCHANGED_COLUMN
from connectors.lake.live_rows import live_row_chunks
from connectors.lake.row_locator import key_array
from connectors.lake.storage import Storage

# Change-log metadata columns the current state drops (it keeps _seq, _commit_ts, _position).
_DROP_FROM_STATE = (OP_COLUMN, TXID_COLUMN, UNCHANGED_COLUMN)
_MARKED = "__marked"  # pass 1's columns: the row has _unchanged marks / is a delete
_DELETE = "__delete"


@dataclass(frozen=True, slots=True)
class ChangeIndex:
    """What pass 1 learned from the key columns, _seq and Op of a merge's change files."""

    paths: list[str]
    schema: pa.Schema  # the files' schemas unified (what concatenating them would give)
    upsert_rows: list[pa.Array]  # per file: row numbers of the keys' latest changes, not deletes
    changed: pa.Array  # every changed key (`key_array` values, unique)
    keys: int  # how many keys changed
    upserts: int
    deletes: int
    marked: pa.Array | None  # keys whose latest change did not send every column, if any


class ChangeFiles:
    """Reads the change-log files of one source's merges."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    # -- pass 1: the winners -------------------------------------------------------------------
    def index(self, paths: Sequence[str], key: Sequence[str]) -> ChangeIndex | None:
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
            return ChangeIndex(list(paths), schema, [empty] * len(rows), key_array(index, key), 0, 0, 0, None)
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
        changed = key_array(ordered.filter(starts), key)  # sorted by key
        del ordered, order
        winners = winners.take(pc.array_sort_indices(winners))  # back in file order
        is_delete = index[_DELETE].combine_chunks().take(winners)
        marked = index[_MARKED].combine_chunks().take(winners)
        any_marked = bool(pc.any(marked).as_py())
        upserts = winners.filter(pc.invert(is_delete))
        offsets = [sum(rows[:i]) for i in range(len(rows) + 1)]
        bounds = pc.search_sorted(upserts, pa.array(offsets, upserts.type)).to_pylist()
        return ChangeIndex(
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
            marked=key_array(index.take(winners.filter(marked)), key) if any_marked else None,
        )

    # -- pass 2: the rows ----------------------------------------------------------------------
    def upsert_chunks(
        self,
        changes: ChangeIndex | None,
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
            chunk = conform(_state_columns(rows), target)
            del rows
            yield _sorted_by_key(chunk, key) if sort else chunk
        if skip is not None:
            assert patched is not None
            yield _sorted_by_key(patched, key) if sort else patched

    def fill_unchanged(
        self,
        table: IcebergTable,
        changes: ChangeIndex,
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
            parts.append(rows.filter(in_set(self._file_keys(rows, key, changes.schema), marked)))
        subset = pa.concat_tables(parts, promote_options="permissive")
        existing = None
        if has_rows:
            existing_parts = [
                chunk.filter(in_set(key_array(chunk, key), marked)) for chunk in live_row_chunks(table)
            ]
            # Files written by other engines may store a type differently (Spark: string where
            # pyiceberg writes large_string): conformed before they are put together.
            existing = (
                pa.concat_tables([conform(p, target) for p in existing_parts]) if existing_parts else None
            )
        latest = _fill_unchanged(_latest_per_key(subset, key), subset, existing, key)
        latest = latest.filter(pc.not_equal(latest[OP_COLUMN], "D"))
        return conform(_state_columns(latest), target)

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
        return key_array(cast, key)


def in_set(values: pa.Array, value_set: pa.Array) -> pa.Array:
    """`is_in`, comparing in the type of `values` (scans give large strings, change files not)."""
    return pc.is_in(values, value_set=value_set.cast(values.type))


def state_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` without the change-log columns the current state does not keep."""
    return pa.schema([f for f in schema if f.name not in _DROP_FROM_STATE])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/extend columns to `schema` (missing ones as nulls) and cast (widening only)."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(pc.cast(table[f.name], f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _state_columns(table: pa.Table) -> pa.Table:
    """Drop the change-log columns the current state does not keep."""
    return table.drop_columns([c for c in _DROP_FROM_STATE if c in table.column_names])


def _sorted_by_key(rows: pa.Table, key: Sequence[str]) -> pa.Table:
    """`rows` ordered by key (a snapshot usually arrives in key order: then no copy is made)."""
    if len(key) == 1 and rows.num_rows > 1:
        column = rows[key[0]]
        if pc.all(pc.greater(column.slice(1), column.slice(0, rows.num_rows - 1))).as_py():
            return rows
    return rows.sort_by([(k, "ascending") for k in key])


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
    change_keys = key_array(changes, key).to_pylist()
    change_marks = changes[UNCHANGED_COLUMN].to_pylist()
    change_seqs = changes[SEQ_COLUMN].to_pylist()
    latest_keys = key_array(latest, key).to_pylist()
    existing_index: dict[object, int] = {}
    if existing is not None and existing.num_rows:
        existing_index = {k: i for i, k in enumerate(key_array(existing, key).to_pylist())}
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
