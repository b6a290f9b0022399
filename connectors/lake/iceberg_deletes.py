"""Iceberg v2 row-level changes that pyiceberg 0.12 cannot write: position deletes in one snapshot.

pyiceberg reads position-delete files in scans but has no public API to *add* them, and its own
snapshot producers retry a conflicting commit against the refreshed table (re-basing a change we
computed from row positions of the old snapshot — wrong for us). So a merge builds its snapshot
here, the way Iceberg's Java ``RowDelta``/``RewriteFiles`` do, and commits it with exactly one
catalog call whose requirement is "main is still the snapshot I read": a racing merger gets
`CommitFailedException` and nothing it wrote stays behind.

Everything that touches pyiceberg internals is in this module. Checked against pyiceberg 0.12.0:
- ``pyiceberg.manifest``: `write_manifest` / `ManifestWriterV2` (we subclass it only to declare
  ``content = DELETES``, which its v2 writer hard-codes to DATA), `write_manifest_list`,
  `ManifestEntry.from_args`, `DataFile.from_args`;
- ``pyiceberg.io.pyarrow._dataframe_to_data_files`` and `_check_pyarrow_schema_compatible` (what
  `Table.append` uses to write data files with field ids and column statistics), and for writing
  data files chunk by chunk the pieces its `write_file` is made of: `ParquetFormatWriter` (via
  ``FileFormatFactory``), `_to_requested_schema`, `pyarrow_to_schema`, `sanitize_column_names`;
- ``pyiceberg.io.pyarrow.ArrowScan`` (reading a table's live rows one data file at a time);
- ``pyiceberg.table.Table._do_commit`` (one catalog commit, then the old-metadata cleanup that the
  ``write.metadata.delete-after-commit.enabled`` property asks for);
- ``pyiceberg.table.update``: `AddSnapshotUpdate`, `SetSnapshotRefUpdate`, `RemoveSnapshotsUpdate`,
  `AssertRefSnapshotId`, `AssertTableUUID`; ``pyiceberg.table.snapshots``: `Snapshot`, `Summary`,
  `SnapshotSummaryCollector`, `update_snapshot_summaries`.
The position-delete file layout follows the Iceberg spec ("Position Delete Files"): columns
``file_path`` (field id 2147483546) and ``pos`` (2147483545), rows sorted by file_path then pos.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.conversions import from_bytes, to_bytes
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.io.fileformat import FileFormatFactory, FileFormatWriter
from pyiceberg.io.pyarrow import (
    ArrowScan,
    _check_pyarrow_schema_compatible,
    _dataframe_to_data_files,
    _to_requested_schema,
    pyarrow_to_schema,
    sanitize_column_names,
)
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    ManifestWriter,
    ManifestWriterV2,
    write_manifest,
    write_manifest_list,
)
from pyiceberg.table import Table as IcebergTable
from pyiceberg.table import TableProperties
from pyiceberg.table.refs import SnapshotRefType
from pyiceberg.table.snapshots import (
    Operation,
    Snapshot,
    SnapshotSummaryCollector,
    Summary,
    update_snapshot_summaries,
)
from pyiceberg.table.update import (
    AddSnapshotUpdate,
    AssertRefSnapshotId,
    AssertTableUUID,
    RemoveSnapshotsUpdate,
    SetSnapshotRefUpdate,
    TableRequirement,
    TableUpdate,
)
from pyiceberg.typedef import Record
from pyiceberg.types import IntegerType, LongType, PrimitiveType, StringType
from pyiceberg.utils.config import Config
from pyiceberg.utils.properties import property_as_int

MAIN_BRANCH = "main"
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
        return pf.read(columns=[by_id[i] for i in field_ids])


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
        self._format = FileFormatFactory.get(FileFormat.PARQUET)
        self._target = (
            property_as_int(
                meta.properties,
                TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
                TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
            )
            or TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT
        )
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
            self._writer = self._format.create_writer(
                self._output, self._file_schema, self._table.metadata.properties
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


def live_row_chunks(table: IcebergTable) -> Iterator[pa.Table]:
    """The table's live rows in the current schema, one data file at a time (deletes applied).

    `Table.scan().to_arrow()` and its batch reader read every file concurrently and hold them
    all; this reads the scan's file tasks one by one, so memory holds one data file.
    """
    scan = table.scan()
    reader = ArrowScan(table.metadata, table.io, scan.projection(), scan.row_filter, scan.case_sensitive)
    for task in scan.plan_files():
        batches = list(reader.to_record_batches([task]))
        if batches:
            yield pa.Table.from_batches(batches)


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


class _DeleteManifestWriter(ManifestWriterV2):
    """A v2 manifest of delete files (pyiceberg's v2 writer always declares content=data)."""

    def content(self) -> ManifestContent:
        return ManifestContent.DELETES

    @property
    def _meta(self) -> dict[str, str]:
        return {**super()._meta, "content": "deletes"}


@dataclass
class _SnapshotWriter:
    """Writes the manifests and manifest list of one new snapshot, remembering what it wrote."""

    table: IcebergTable
    snapshot_id: int
    written: list[str] = field(default_factory=list)

    def manifest(self, content: ManifestContent) -> ManifestWriter:
        meta = self.table.metadata
        if meta.format_version != 2:
            raise ValueError(f"{self.table.name()}: merge-on-read needs an Iceberg v2 table")
        path = self.table.location_provider().new_metadata_location(
            f"{uuid.uuid4()}-m{len(self.written)}.avro"
        )
        self.written.append(path)
        args = dict(
            spec=meta.spec(),
            schema=meta.schema(),
            output_file=self.table.io.new_output(path),
            snapshot_id=self.snapshot_id,
            avro_compression=_avro_codec(self.table),
        )
        if content == ManifestContent.DELETES:
            return _DeleteManifestWriter(**args)  # type: ignore[arg-type]
        return write_manifest(format_version=2, **args)  # type: ignore[arg-type]

    def write(self, content: ManifestContent, entries: Sequence[tuple[str, ManifestEntry]]) -> ManifestFile:
        """One manifest; entries are (how, entry) with how in added/existing/deleted."""
        with self.manifest(content) as writer:
            for how, entry in entries:
                getattr(writer, {"added": "add", "existing": "existing", "deleted": "delete"}[how])(entry)
        return writer.to_manifest_file()

    def discard(self) -> None:
        for path in self.written:
            _delete_quietly(self.table, path)


def commit_snapshot(
    table: IcebergTable,
    *,
    added: Sequence[DataFile],
    removed: Sequence[ManifestEntry] = (),
    removes_all: bool = False,
    properties: dict[str, str],
    keep_snapshots: int,
) -> list[str]:
    """Commit one snapshot that adds data/delete files and removes live ones; expire old snapshots.

    The commit requires main to still point at the snapshot `table` was loaded with, so a
    concurrent writer makes it fail with `CommitFailedException` (after this function deleted
    every file written for the attempt, `added` included). `removes_all` says `removed` is every
    live file (a rewrite): then no manifest is carried over or read. Snapshots beyond the newest
    `keep_snapshots` of main are removed in the same commit. Returns the paths of files only the
    removed snapshots referenced, for the caller to delete once the commit has succeeded.
    `table` is updated in place to the committed metadata.
    """
    meta = table.metadata
    parent = table.current_snapshot()
    snapshot_id = meta.new_snapshot_id()
    sequence_number = meta.next_sequence_number()
    writer = _SnapshotWriter(table, snapshot_id)
    try:
        manifests = _new_manifests(table, writer, parent, added, removed, removes_all)
        summary = _summary(table, parent, added, removed, properties)
        list_path = table.location_provider().new_metadata_location(
            f"snap-{snapshot_id}-0-{uuid.uuid4()}.avro"
        )
        writer.written.append(list_path)
        with write_manifest_list(
            format_version=2,
            output_file=table.io.new_output(list_path),
            snapshot_id=snapshot_id,
            parent_snapshot_id=parent.snapshot_id if parent else None,
            sequence_number=sequence_number,
            avro_compression=_avro_codec(table),
        ) as list_writer:
            list_writer.add_manifests(manifests)
        snapshot = Snapshot(
            snapshot_id=snapshot_id,
            parent_snapshot_id=parent.snapshot_id if parent else None,
            sequence_number=sequence_number,
            manifest_list=list_path,
            summary=summary,
            schema_id=meta.current_schema_id,
        )
        retained, expired = _retention(table, snapshot, keep_snapshots)
        updates: tuple[TableUpdate, ...] = (
            AddSnapshotUpdate(snapshot=snapshot),
            SetSnapshotRefUpdate(
                snapshot_id=snapshot_id,
                parent_snapshot_id=parent.snapshot_id if parent else None,
                ref_name=MAIN_BRANCH,
                type=SnapshotRefType.BRANCH,
                max_ref_age_ms=None,
                max_snapshot_age_ms=None,
                min_snapshots_to_keep=None,
            ),
        )
        if expired:
            updates += (RemoveSnapshotsUpdate(snapshot_ids=[s.snapshot_id for s in expired]),)
        requirements: tuple[TableRequirement, ...] = (
            AssertTableUUID(uuid=meta.table_uuid),
            AssertRefSnapshotId(ref=MAIN_BRANCH, snapshot_id=parent.snapshot_id if parent else None),
        )
        table._do_commit(updates=updates, requirements=requirements)
    except CommitFailedException:
        # The catalog refused the commit: nothing written for it can be referenced.
        writer.discard()
        for data_file in added:
            _delete_quietly(table, data_file.file_path)
        raise
    return _orphaned_files(table, retained, manifests, expired)


def _new_manifests(
    table: IcebergTable,
    writer: _SnapshotWriter,
    parent: Snapshot | None,
    added: Sequence[DataFile],
    removed: Sequence[ManifestEntry],
    removes_all: bool,
) -> list[ManifestFile]:
    manifests = []
    for content, kind in (
        (ManifestContent.DATA, DataFileContent.DATA),
        (ManifestContent.DELETES, DataFileContent.POSITION_DELETES),
    ):
        entries = [
            (
                "added",
                ManifestEntry.from_args(
                    status=ManifestEntryStatus.ADDED, snapshot_id=writer.snapshot_id, data_file=f
                ),
            )
            for f in added
            if f.content == kind
        ]
        if removes_all:
            # Every live file goes: no parent manifest is carried, and the removed files are
            # recorded as DELETED entries (the snapshot's history, as Iceberg's own writers do).
            entries += [("deleted", e) for e in removed if e.data_file.content == kind]
        if entries:
            manifests.append(writer.write(content, entries))
    if removes_all:
        return manifests
    if parent is None:
        return manifests
    removed_paths = {e.data_file.file_path for e in removed}
    for manifest in parent.manifests(table.io):
        if not (manifest.has_added_files() or manifest.has_existing_files()):
            continue  # only deleted entries: history the new snapshot need not carry
        if not removed_paths:
            manifests.append(manifest)
            continue
        current = manifest.fetch_manifest_entry(table.io, discard_deleted=True)
        if not any(e.data_file.file_path in removed_paths for e in current):
            manifests.append(manifest)
            continue
        # Rewrite the manifest: removed files become DELETED entries (kept for the snapshot's
        # history, as Iceberg's own writers do), the others EXISTING with their sequence numbers.
        rewritten = [
            ("deleted" if e.data_file.file_path in removed_paths else "existing", e) for e in current
        ]
        manifests.append(writer.write(manifest.content, rewritten))
    return manifests


def _summary(
    table: IcebergTable,
    parent: Snapshot | None,
    added: Sequence[DataFile],
    removed: Sequence[ManifestEntry],
    properties: dict[str, str],
) -> Summary:
    meta = table.metadata
    collector = SnapshotSummaryCollector()
    for data_file in added:
        collector.add_file(data_file, schema=meta.schema())
    for entry in removed:
        collector.remove_file(entry.data_file, schema=meta.schema())
    only_appends = not removed and all(f.content == DataFileContent.DATA for f in added)
    operation = Operation.APPEND if only_appends else Operation.OVERWRITE
    return update_snapshot_summaries(
        Summary(operation=operation, **collector.build(), **properties),
        previous_summary=parent.summary if parent else None,
    )


def _retention(table: IcebergTable, new: Snapshot, keep: int) -> tuple[list[Snapshot], list[Snapshot]]:
    """Split the table's snapshots into the newest `keep` of main's lineage (with `new`) and the rest."""
    lineage = [new]
    current = table.current_snapshot()
    while current is not None and len(lineage) < keep:
        lineage.append(current)
        current = table.snapshot_by_id(current.parent_snapshot_id) if current.parent_snapshot_id else None
    kept = {s.snapshot_id for s in lineage}
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}  # tags/branches, if any
    expired = [s for s in table.snapshots() if s.snapshot_id not in kept | protected]
    return lineage, expired


def _orphaned_files(
    table: IcebergTable,
    retained: Sequence[Snapshot],
    new_manifests: Sequence[ManifestFile],
    expired: Sequence[Snapshot],
) -> list[str]:
    """Files referenced only by expired snapshots: their manifest lists, manifests, data and deletes."""
    if not expired:
        return []
    orphans = [s.manifest_list for s in expired]
    kept_manifests: dict[str, ManifestFile] = {m.manifest_path: m for m in new_manifests}
    for snapshot in retained[1:]:
        kept_manifests.update((m.manifest_path, m) for m in snapshot.manifests(table.io))
    gone: dict[str, ManifestFile] = {}
    for snapshot in expired:
        for m in snapshot.manifests(table.io):
            if m.manifest_path not in kept_manifests:
                gone[m.manifest_path] = m
    if not gone:
        return orphans
    referenced = {
        e.data_file.file_path
        for m in kept_manifests.values()
        for e in m.fetch_manifest_entry(table.io, discard_deleted=True)
    }
    for path, m in gone.items():
        orphans.append(path)
        orphans.extend(
            e.data_file.file_path
            for e in m.fetch_manifest_entry(table.io, discard_deleted=False)
            if e.data_file.file_path not in referenced
        )
    return sorted(set(orphans))


def _avro_codec(table: IcebergTable) -> Any:
    """The table's manifest codec, as pyiceberg's writers choose it (gzip by default: DuckDB's
    Avro reader does not read zstandard-compressed manifests)."""
    return table.metadata.properties.get(
        TableProperties.WRITE_AVRO_COMPRESSION, TableProperties.WRITE_AVRO_COMPRESSION_DEFAULT
    )


def delete_files(table: IcebergTable, paths: Iterable[str]) -> None:
    """Delete files (already unreferenced); a missing one is fine (a re-run after a crash)."""
    for path in paths:
        _delete_quietly(table, path)


def _delete_quietly(table: IcebergTable, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        table.io.delete(path)
