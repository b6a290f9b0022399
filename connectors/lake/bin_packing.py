"""Carrying out a merge's compaction: rewriting the data files the policy picks, folding deletes.

`connectors.lake.compaction` decides which files (size-tiered small files, delete-heavy files,
delete files to fold); this rewrites them within the merge that triggered it, so everything lands
in the merge's one snapshot. The merge's own changed keys are left out of the rewritten rows (the
merge has just written their new versions), and positions are moved, never copied: every position
in the new delete files is one that a removed delete file or this merge held, in a data file that
stays, so no row is deleted twice and the snapshot's deleted-row count stays exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.manifest import DataFile, ManifestEntry
from pyiceberg.table import Table as IcebergTable

from connectors.lake.changeset import conform, in_set
from connectors.lake.compaction import CompactionPolicy, FileShape
from connectors.lake.iceberg_deletes import POSITION_DELETE_SCHEMA
from connectors.lake.iceberg_files import delete_files, target_file_size, write_chunks
from connectors.lake.live_rows import LiveFiles, live_row_chunks
from connectors.lake.row_locator import RowLocator, key_array


@dataclass
class Compaction:
    """What a merge adds and removes beyond its own data file, and the delete files it writes."""

    written: list[DataFile] = field(default_factory=list)  # rewritten data files
    removed: list[ManifestEntry] = field(default_factory=list)  # live data/delete files replaced
    positions: list[pa.Table] = field(default_factory=list)  # one table per delete file to write
    reason: str | None = None  # why files were rewritten (None: merge-on-read only)


def compact(
    table: IcebergTable,
    policy: CompactionPolicy,
    locator: RowLocator,
    target: pa.Schema,
    live: LiveFiles,
    positions: pa.Table,
    changed: pa.Array | None,
    key: Sequence[str],
) -> Compaction:
    """Rewrite what `policy` picks given this merge's `positions` (file_path, pos); returns the
    files written and replaced, and the positions of the merge's delete files (at most two: in
    small data files, which the next compaction of their tier rewrites, and in the others).

    On failure every data file written here is deleted (the merge deletes its own)."""
    by_delete_file = locator.deleted_positions(table, live)
    deleted: dict[str, int] = {}
    for per_file in by_delete_file.values():
        for data_path, pos in per_file.items():
            deleted[data_path] = deleted.get(data_path, 0) + len(pos)
    if positions.num_rows:
        for item in pc.value_counts(positions["file_path"]).to_pylist():
            deleted[item["values"]] = deleted.get(item["values"], 0) + item["counts"]
    shapes = [
        FileShape(
            e.data_file.file_path,
            e.data_file.file_size_in_bytes,
            e.data_file.record_count,
            deleted.get(e.data_file.file_path, 0),
        )
        for e in live.data
    ]
    delete_shapes = [
        FileShape(e.data_file.file_path, e.data_file.file_size_in_bytes, e.data_file.record_count, 0)
        for e in live.deletes
    ]
    target_bytes = target_file_size(table)
    limit = policy.small_limit(target_bytes)
    small = {e.data_file.file_path for e in live.data if e.data_file.file_size_in_bytes < limit}
    own_parts = len(_split(positions, small))
    plan = policy.plan(shapes, delete_shapes, target_bytes, new_delete_files=own_parts)
    if plan is None:
        return Compaction(positions=_split(positions, small))
    out = Compaction(reason=plan.reason)
    gone, folded = plan.rewritten, frozenset(plan.folded)
    try:
        if plan.small:
            rows = _live_rows_of(table, target, plan.small, changed, key, sort=True)
            out.written += write_chunks(table, target, rows)
        for path in plan.delete_heavy:
            rows = _live_rows_of(table, target, [path], changed, key, sort=False)
            out.written += write_chunks(table, target, rows)
    except BaseException:
        delete_files(table, [f.file_path for f in out.written])
        raise
    out.removed = [e for e in live.data if e.data_file.file_path in gone]
    kept = [positions]
    for entry in live.deletes:
        per_file = by_delete_file[entry.data_file.file_path]
        if entry.data_file.file_path not in folded and gone.isdisjoint(per_file):
            continue
        out.removed.append(entry)
        for data_path, pos in per_file.items():
            kept.append(
                pa.Table.from_arrays(
                    [pa.nulls(len(pos), pa.string()).fill_null(data_path), pc.cast(pos, pa.int64())],
                    schema=POSITION_DELETE_SCHEMA,
                )
            )
    carried = pa.concat_tables(kept)
    # Positions in rewritten files go with them.
    carried = carried.filter(pc.invert(in_set(carried["file_path"], pa.array(sorted(gone), pa.string()))))
    out.positions = _split(carried, small - gone)
    return out


def _split(positions: pa.Table, small: set[str] | frozenset[str]) -> list[pa.Table]:
    """Positions in small data files apart from the others (the non-empty parts)."""
    if not positions.num_rows:
        return []
    in_small = in_set(positions["file_path"], pa.array(sorted(small), pa.string()))
    parts = [positions.filter(in_small), positions.filter(pc.invert(in_small))]
    return [p for p in parts if p.num_rows]


def _live_rows_of(
    table: IcebergTable,
    target: pa.Schema,
    data_files: Sequence[str],
    changed: pa.Array | None,
    key: Sequence[str],
    sort: bool,
) -> Iterator[pa.Table]:
    """The live rows of some data files less this merge's changed keys, in `target`'s schema
    (sorted by key into one chunk with `sort`: small files only, so memory stays bounded)."""
    chunks = []
    for chunk in live_row_chunks(table, frozenset(data_files)):
        if changed is not None:
            chunk = chunk.filter(pc.invert(in_set(key_array(chunk, key), changed)))
        chunk = conform(chunk, target)
        if not sort:
            yield chunk
        elif chunk.num_rows:
            chunks.append(chunk)
    if chunks:
        rows = pa.concat_tables(chunks)
        yield rows.take(pc.sort_indices(rows, sort_keys=[(k, "ascending") for k in key]))
