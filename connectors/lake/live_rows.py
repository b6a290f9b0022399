"""Reading an Iceberg table's live state: its live files, their key columns, its rows file by file.

pyiceberg internals relied on, checked against pyiceberg 0.12.0: ``pyiceberg.io.pyarrow.ArrowScan``
(reading a table's live rows one data file at a time).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.conversions import from_bytes
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import DataFile, DataFileContent, ManifestEntry
from pyiceberg.table import Table as IcebergTable
from pyiceberg.types import IntegerType, LongType, PrimitiveType


@dataclass
class LiveFiles:
    """The live data and position-delete files of a table's current snapshot."""

    data: list[ManifestEntry] = field(default_factory=list)
    deletes: list[ManifestEntry] = field(default_factory=list)

    @property
    def data_rows(self) -> int:
        return sum(e.data_file.record_count for e in self.data)

    @property
    def deleted_rows(self) -> int:
        return sum(e.data_file.record_count for e in self.deletes)

    @property
    def all(self) -> list[ManifestEntry]:
        return self.data + self.deletes


def live_files(table: IcebergTable, cache: dict[str, list[ManifestEntry]] | None = None) -> LiveFiles:
    """The current snapshot's live file entries (sequence numbers inherited from the manifests).

    `cache` maps manifest paths to their live entries; manifests never change once written, so a
    caller that merges repeatedly decodes each manifest once. It is trimmed to this snapshot's.
    """
    out = LiveFiles()
    snapshot = table.current_snapshot()
    if snapshot is None:
        return out
    seen: dict[str, list[ManifestEntry]] = {}
    for manifest in snapshot.manifests(table.io):
        entries = cache.get(manifest.manifest_path) if cache is not None else None
        if entries is None:
            entries = manifest.fetch_manifest_entry(table.io, discard_deleted=True)
        seen[manifest.manifest_path] = entries
        for entry in entries:
            content = entry.data_file.content
            if content == DataFileContent.DATA:
                out.data.append(entry)
            elif content == DataFileContent.POSITION_DELETES:
                out.deletes.append(entry)
            else:
                raise ValueError(f"{table.name()}: unsupported delete file content {content!r}")
    if cache is not None:
        cache.clear()
        cache.update(seen)
    return out


def key_bounds(data_file: DataFile, field_id: int, iceberg_type: PrimitiveType) -> tuple[int, int] | None:
    """The (lower, upper) bounds of an integer column in a data file, if its stats record them."""
    if not isinstance(iceberg_type, IntegerType | LongType):
        return None  # string bounds may be truncated; only exact integer bounds prune safely
    lower, upper = data_file.lower_bounds or {}, data_file.upper_bounds or {}
    if field_id not in lower or field_id not in upper:
        return None
    return int(from_bytes(iceberg_type, lower[field_id])), int(from_bytes(iceberg_type, upper[field_id]))


def read_columns_by_id(table: IcebergTable, path: str, field_ids: Sequence[int]) -> pa.Table:
    """Read columns of one data file by Iceberg field id (names in old files may differ)."""
    with table.io.new_input(path).open() as f:
        pf = pq.ParquetFile(f)
        by_id = {
            int(fld.metadata[b"PARQUET:field_id"]): fld.name
            for fld in pf.schema_arrow
            if fld.metadata and b"PARQUET:field_id" in fld.metadata
        }
        # One thread: a threaded read of one column decodes no faster, and in a fresh process it
        # was 10x slower (new per-thread allocator heaps; bench/bench_merge_scale.py, cold merges).
        return pf.read(columns=[by_id[i] for i in field_ids], use_threads=False)


def live_row_chunks(table: IcebergTable, data_files: Collection[str] | None = None) -> Iterator[pa.Table]:
    """The table's live rows in the current schema, one data file at a time (deletes applied);
    with `data_files`, only those files' rows (a compaction's input).

    `Table.scan().to_arrow()` and its batch reader read every file concurrently and hold them
    all; this reads the scan's file tasks one by one, so memory holds one data file.
    """
    scan = table.scan()
    reader = ArrowScan(table.metadata, table.io, scan.projection(), scan.row_filter, scan.case_sensitive)
    for task in scan.plan_files():
        if data_files is not None and task.file.file_path not in data_files:
            continue
        batches = list(reader.to_record_batches([task]))
        if batches:
            yield pa.Table.from_batches(batches)
