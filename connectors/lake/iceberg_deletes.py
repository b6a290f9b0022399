"""Iceberg v2 position-delete files, which pyiceberg 0.12 reads in scans but cannot write.

The layout follows the Iceberg spec ("Position Delete Files"): columns ``file_path`` (field id
2147483546) and ``pos`` (2147483545), rows sorted by file_path then pos. A merge writes one such
file per merge-on-read commit and adds it to the snapshot it commits (`connectors.lake.iceberg_commit`,
which also lists the other pyiceberg internals the lake relies on). pyiceberg internals relied on
here, checked against pyiceberg 0.12.0: ``pyiceberg.manifest``: `DataFile.from_args`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.conversions import to_bytes
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat, ManifestEntry
from pyiceberg.table import Table as IcebergTable
from pyiceberg.typedef import Record
from pyiceberg.types import LongType, StringType

# Imported from here by the tests (the module held them before it was split).
from connectors.lake.iceberg_files import DataFileWriter as DataFileWriter
from connectors.lake.live_rows import LiveFiles as LiveFiles
from connectors.lake.live_rows import live_files as live_files

FILE_PATH_FIELD_ID = 2147483546  # Iceberg spec: reserved field ids of position-delete files
POS_FIELD_ID = 2147483545
POSITION_DELETE_SCHEMA = pa.schema(
    [
        pa.field(
            "file_path",
            pa.string(),
            nullable=False,
            metadata={b"PARQUET:field_id": str(FILE_PATH_FIELD_ID).encode()},
        ),
        pa.field(
            "pos", pa.int64(), nullable=False, metadata={b"PARQUET:field_id": str(POS_FIELD_ID).encode()}
        ),
    ]
)


def read_position_deletes(table: IcebergTable, entries: Iterable[ManifestEntry]) -> dict[str, pa.Array]:
    """Deleted row positions per data file path, from position-delete files."""
    parts: dict[str, list[pa.Array]] = defaultdict(list)
    for entry in entries:
        with table.io.new_input(entry.data_file.file_path).open() as f:
            deletes = pq.read_table(f, columns=["file_path", "pos"])
        paths = deletes["file_path"]
        for path in pc.unique(paths).to_pylist():
            parts[path].append(deletes["pos"].filter(pc.equal(paths, path)).combine_chunks())
    return {p: pa.concat_arrays(a) if len(a) > 1 else a[0] for p, a in parts.items()}


def write_position_deletes(table: IcebergTable, positions: pa.Table) -> DataFile:
    """Write one position-delete file (rows: file_path, pos) and describe it for a manifest."""
    rows = positions.cast(POSITION_DELETE_SCHEMA).sort_by([("file_path", "ascending"), ("pos", "ascending")])
    path = table.location_provider().new_data_location(f"00000-0-{uuid.uuid4()}-deletes.parquet")
    out = table.io.new_output(path)
    with out.create(overwrite=False) as stream:
        pq.write_table(rows, stream, compression="zstd")
    paths, pos = rows["file_path"], rows["pos"]
    min_path, max_path = paths[0].as_py(), paths[-1].as_py()
    min_pos, max_pos = pc.min(pos).as_py(), pc.max(pos).as_py()
    n = rows.num_rows
    return DataFile.from_args(
        content=DataFileContent.POSITION_DELETES,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=Record(),
        record_count=n,
        file_size_in_bytes=len(out),
        value_counts={FILE_PATH_FIELD_ID: n, POS_FIELD_ID: n},
        null_value_counts={FILE_PATH_FIELD_ID: 0, POS_FIELD_ID: 0},
        # Full (untruncated) path bounds let readers skip delete files for other data files; a
        # file with one referenced data file has lower == upper, which pyiceberg indexes by path.
        lower_bounds={
            FILE_PATH_FIELD_ID: to_bytes(StringType(), min_path),
            POS_FIELD_ID: to_bytes(LongType(), min_pos),
        },
        upper_bounds={
            FILE_PATH_FIELD_ID: to_bytes(StringType(), max_path),
            POS_FIELD_ID: to_bytes(LongType(), max_pos),
        },
        sort_order_id=None,
        spec_id=table.metadata.default_spec_id,
        equality_ids=None,
        key_metadata=None,
    )
