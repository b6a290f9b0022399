"""Writing data files of an Iceberg table, chunk by chunk, and deleting unreferenced files.

A merge writes its data files first and commits them later, all in one snapshot
(`connectors.lake.iceberg_commit`), so they are written here with the pieces pyiceberg's own
writer is made of. pyiceberg internals relied on, checked against pyiceberg 0.12.0:
- ``pyiceberg.io.pyarrow._dataframe_to_data_files`` and `_check_pyarrow_schema_compatible` (what
  `Table.append` uses to write data files with field ids and column statistics), and for writing
  data files chunk by chunk the pieces its `write_file` is made of: `ParquetFormatWriter` (via
  ``FileFormatFactory``), `_to_requested_schema`, `pyarrow_to_schema`, `sanitize_column_names`;
- ``pyiceberg.manifest``: `DataFile.from_args`;
- ``pyiceberg.io.pyarrow.ParquetFormatWriter``: its `_parquet_writer_kwargs` (the table's Parquet
  properties as `pq.ParquetWriter` arguments), extended per column by `KeyEncodedParquetWriter`.

Integer key columns (the table's ``lakehouse.key`` property) are written DELTA_BINARY_PACKED and
uncompressed: a merge in a fresh process reads every key column of the table, and this makes that
read about 7x faster than the default dictionary-then-plain zstd pages, and the column about 9x
smaller (docs/decisions.md §2). ``lakehouse.key-encoding=plain`` on a table turns it off for a
reader that lacks the encoding (every engine we publish to reads it: Athena writes it itself).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import OutputFile
from pyiceberg.io.fileformat import FileFormatFactory, FileFormatWriter
from pyiceberg.io.pyarrow import (
    ParquetFormatWriter,
    _check_pyarrow_schema_compatible,
    _dataframe_to_data_files,
    _to_requested_schema,
    pyarrow_to_schema,
    sanitize_column_names,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.schema import Schema
from pyiceberg.table import Table as IcebergTable
from pyiceberg.table import TableProperties
from pyiceberg.typedef import Properties, Record
from pyiceberg.types import IntegerType, LongType
from pyiceberg.utils.config import Config
from pyiceberg.utils.properties import property_as_int

KEY_PROPERTY = "lakehouse.key"
"""Table property: the key columns, comma-separated (set when a current-state table is created)."""
KEY_ENCODING_PROPERTY = "lakehouse.key-encoding"
"""Table property: ``delta`` (default) or ``plain``, how integer key columns are encoded."""
KEY_ENCODINGS = ("delta", "plain")


def delta_key_columns(table: IcebergTable, file_schema: Schema) -> list[str]:
    """The file-schema names of the table's integer key columns to write delta-encoded."""
    props = table.metadata.properties
    encoding = props.get(KEY_ENCODING_PROPERTY, "delta")
    if encoding not in KEY_ENCODINGS:
        raise ValueError(
            f"{table.name()}: table property {KEY_ENCODING_PROPERTY}={encoding!r}; expected one of {KEY_ENCODINGS}"
        )
    if encoding == "plain" or not props.get(KEY_PROPERTY):
        return []
    schema = table.schema()
    names = []
    for name in props[KEY_PROPERTY].split(","):
        try:
            field = schema.find_field(name)
        except ValueError:  # a key column the table no longer has: nothing to encode
            continue
        if isinstance(field.field_type, IntegerType | LongType):
            names.append(file_schema.find_field(field.field_id).name)
    return names


class KeyEncodedParquetWriter(ParquetFormatWriter):
    """pyiceberg's Parquet writer with some columns DELTA_BINARY_PACKED and uncompressed.

    Every other column keeps the table's codec and dictionary encoding. pyarrow takes dictionary
    encoding per leaf column path, so the paths are read off the first chunk's schema.
    """

    def __init__(
        self, output_file: OutputFile, file_schema: Schema, properties: Properties, delta_columns: list[str]
    ) -> None:
        super().__init__(output_file, file_schema, properties)
        self._delta_columns = delta_columns

    def write(self, table: pa.Table) -> None:
        if self._writer is None and self._delta_columns:
            others = [p for p in _leaf_paths(table.schema) if p not in self._delta_columns]
            codec = self._parquet_writer_kwargs["compression"]
            self._parquet_writer_kwargs |= {
                "use_dictionary": others,
                "column_encoding": dict.fromkeys(self._delta_columns, "DELTA_BINARY_PACKED"),
                "compression": {p: codec for p in others} | dict.fromkeys(self._delta_columns, "none"),
            }
        super().write(table)


def _leaf_paths(schema: pa.Schema) -> list[str]:
    """The Parquet leaf column paths ("a", "s.x", "l.list.element") of an Arrow schema."""
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    meta = pq.read_metadata(pa.BufferReader(sink.getvalue())).schema
    return [meta.column(i).path for i in range(len(meta))]


def write_data_files(table: IcebergTable, rows: pa.Table) -> list[DataFile]:
    """Write rows as data files of the table (pyiceberg's writer: field ids, stats, target size)."""
    if not rows.num_rows:
        return []
    meta = table.metadata
    _check_pyarrow_schema_compatible(
        meta.schema(), provided_schema=rows.schema, format_version=meta.format_version
    )
    return list(_dataframe_to_data_files(table_metadata=meta, df=rows, io=table.io))


class DataFileWriter:
    """Writes rows as data files of the table chunk by chunk, so memory holds one chunk, not all.

    What `write_data_files` does for one in-memory table (pyiceberg's `write_file`: field ids,
    column statistics, the table's Parquet properties), but fed incrementally: each `write` adds
    row groups to the open file, which is closed once the chunks written to it reach the table's
    target file size (measured, as pyiceberg does, in in-memory Arrow bytes). Every chunk must
    have `schema`. `abort` deletes whatever was written (nothing is referenced until a commit).
    """

    def __init__(self, table: IcebergTable, schema: pa.Schema) -> None:
        from pyiceberg.table import DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE

        meta = table.metadata
        if not meta.spec().is_unpartitioned():
            raise ValueError(f"{table.name()}: chunked writes need an unpartitioned table")
        _check_pyarrow_schema_compatible(
            meta.schema(), provided_schema=schema, format_version=meta.format_version
        )
        self._table = table
        self._schema = schema
        self._downcast = Config().get_bool(DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE) or False
        self._task_schema = pyarrow_to_schema(
            schema,
            name_mapping=meta.schema().name_mapping,
            downcast_ns_timestamp_to_us=self._downcast,
            format_version=meta.format_version,
        )
        self._file_schema = sanitize_column_names(meta.schema())
        self._delta_columns = delta_key_columns(table, self._file_schema)
        self._format = FileFormatFactory.get(FileFormat.PARQUET)
        self._target = target_file_size(table)
        self._uuid = uuid.uuid4()
        self._writer: FileFormatWriter | None = None
        self._path = ""
        self._output: Any = None
        self._bytes = 0
        self._paths: list[str] = []
        self.files: list[DataFile] = []
        self.rows = 0

    def write(self, rows: pa.Table) -> None:
        """Append rows (with the writer's schema) to the current data file."""
        if not rows.num_rows:
            return
        if rows.schema != self._schema:
            rows = rows.cast(self._schema)
        if self._writer is None:
            name = f"00000-{len(self._paths)}-{self._uuid}.{self._format.file_extension()}"
            self._path = self._table.location_provider().new_data_location(data_file_name=name)
            self._paths.append(self._path)
            self._output = self._table.io.new_output(self._path)
            self._writer = KeyEncodedParquetWriter(
                self._output, self._file_schema, self._table.metadata.properties, self._delta_columns
            )
            self._bytes = 0
        batches = [
            _to_requested_schema(
                requested_schema=self._file_schema,
                file_schema=self._task_schema,
                batch=batch,
                downcast_ns_timestamp_to_us=self._downcast,
                include_field_ids=True,
                format_model=self._format,
            )
            for batch in rows.to_batches()
        ]
        self._writer.write(pa.Table.from_batches(batches))
        self.rows += rows.num_rows
        self._bytes += rows.nbytes
        if self._bytes >= self._target:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        statistics = writer.close()
        meta = self._table.metadata
        self.files.append(
            DataFile.from_args(
                content=DataFileContent.DATA,
                file_path=self._path,
                file_format=FileFormat.PARQUET,
                partition=Record(),
                file_size_in_bytes=len(self._output),
                sort_order_id=None,
                spec_id=meta.default_spec_id,
                equality_ids=None,
                key_metadata=None,
                **statistics.to_serialized_dict(),
            )
        )

    def finish(self) -> list[DataFile]:
        """Close the open file; the data files written (none if no row was written)."""
        self._close_file()
        return list(self.files)

    def abort(self) -> None:
        """Close quietly and delete every file written."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        for path in self._paths:
            _delete_quietly(self._table, path)
        self._paths, self.files = [], []


def target_file_size(table: IcebergTable) -> int:
    """The table's target data file size (``write.target-file-size-bytes``, pyiceberg's default)."""
    return (
        property_as_int(
            table.metadata.properties,
            TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
            TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
        )
        or TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT
    )


def write_chunks(table: IcebergTable, target: pa.Schema, chunks: Iterator[pa.Table]) -> list[DataFile]:
    """Write chunks as data files (none if no rows); on failure nothing written stays behind."""
    writer = DataFileWriter(table, target)
    try:
        for chunk in chunks:
            writer.write(chunk)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def delete_files(table: IcebergTable, paths: Iterable[str]) -> None:
    """Delete files (already unreferenced); a missing one is fine (a re-run after a crash)."""
    for path in paths:
        _delete_quietly(table, path)


def _delete_quietly(table: IcebergTable, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        table.io.delete(path)
