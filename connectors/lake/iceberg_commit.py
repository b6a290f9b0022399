"""Committing a merge's files as one Iceberg snapshot and expiring old snapshots in it.

pyiceberg reads position-delete files in scans but has no public API to *add* them, and its own
snapshot producers retry a conflicting commit against the refreshed table (re-basing a change we
computed from row positions of the old snapshot — wrong for us). So a merge builds its snapshot
here, the way Iceberg's Java ``RowDelta``/``RewriteFiles`` do, and commits it with exactly one
catalog call whose requirement is "main is still the snapshot I read": a racing merger gets
`CommitFailedException` and nothing it wrote stays behind.

Everything that touches pyiceberg internals is in this module and its siblings `iceberg_files`
(writing data files), `iceberg_deletes` (position-delete files) and `live_rows` (reading live rows),
each listing what it relies on. Here, checked against pyiceberg 0.12.0:
- ``pyiceberg.manifest``: `write_manifest` / `ManifestWriterV2` (we subclass it only to declare
  ``content = DELETES``, which its v2 writer hard-codes to DATA), `write_manifest_list`,
  `ManifestEntry.from_args`;
- ``pyiceberg.table.Table._do_commit`` (one catalog commit, then the old-metadata cleanup that the
  ``write.metadata.delete-after-commit.enabled`` property asks for);
- ``pyiceberg.table.update``: `AddSnapshotUpdate`, `SetSnapshotRefUpdate`, `RemoveSnapshotsUpdate`,
  `SetPropertiesUpdate`, `AssertRefSnapshotId`, `AssertTableUUID`; ``pyiceberg.table.snapshots``: `Snapshot`, `Summary`,
  `SnapshotSummaryCollector`, `update_snapshot_summaries`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
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
    SetPropertiesUpdate,
    SetSnapshotRefUpdate,
    TableRequirement,
    TableUpdate,
)

from connectors.lake.config import SnapshotRetention
from connectors.lake.iceberg_expiry import Expiry, dropped_metadata_files, orphaned_files, split_snapshots
from connectors.lake.iceberg_files import delete_files

MAIN_BRANCH = "main"


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
        delete_files(self.table, self.written)


def commit_snapshot(
    table: IcebergTable,
    *,
    added: Sequence[DataFile],
    removed: Sequence[ManifestEntry] = (),
    removes_all: bool = False,
    properties: dict[str, str],
    retention: SnapshotRetention,
    now_ms: int,
) -> Expiry:
    """Commit one snapshot that adds data/delete files and removes live ones; expire old snapshots.

    The commit requires main to still point at the snapshot `table` was loaded with, so a
    concurrent writer makes it fail with `CommitFailedException` (after this function deleted
    every file written for the attempt, `added` included). `removes_all` says `removed` is every
    live file (a rewrite): then no manifest is carried over or read. Snapshots `retention` no
    longer keeps (`iceberg_expiry.split_snapshots`, at `now_ms`, also the new snapshot's
    timestamp) are removed in the same commit. Nothing is deleted here: the returned `Expiry`
    names the files only the removed snapshots referenced and the metadata files the commit
    dropped from the metadata log, for the caller to record and delete after a grace period.
    `table` is updated in place to the committed metadata.
    """
    meta = table.metadata
    base_location = table.metadata_location
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
            timestamp_ms=now_ms,
            manifest_list=list_path,
            summary=summary,
            schema_id=meta.current_schema_id,
        )
        retained, expired = split_snapshots(meta, snapshot, retention, now_ms)
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
        if meta.properties.get(TableProperties.METADATA_DELETE_AFTER_COMMIT_ENABLED, "false") != "false":
            # Tables created before time-based retention let pyiceberg delete superseded
            # metadata.json files right after each commit (`Table._do_commit` reads the property
            # from the *new* metadata, so this very commit already deletes none).
            updates += (
                SetPropertiesUpdate(updates={TableProperties.METADATA_DELETE_AFTER_COMMIT_ENABLED: "false"}),
            )
        requirements: tuple[TableRequirement, ...] = (
            AssertTableUUID(uuid=meta.table_uuid),
            AssertRefSnapshotId(ref=MAIN_BRANCH, snapshot_id=parent.snapshot_id if parent else None),
        )
        table._do_commit(updates=updates, requirements=requirements)
    except CommitFailedException:
        # The catalog refused the commit: nothing written for it can be referenced.
        writer.discard()
        delete_files(table, [data_file.file_path for data_file in added])
        raise
    return Expiry(
        snapshot_ids=tuple(s.snapshot_id for s in expired),
        files=tuple(orphaned_files(table.io, retained[1:], manifests, expired)),
        metadata_files=tuple(
            dropped_metadata_files(meta, base_location, table.metadata, table.metadata_location)
        ),
    )


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


def _avro_codec(table: IcebergTable) -> Any:
    """The table's manifest codec, as pyiceberg's writers choose it (gzip by default: DuckDB's
    Avro reader does not read zstandard-compressed manifests)."""
    return table.metadata.properties.get(
        TableProperties.WRITE_AVRO_COMPRESSION, TableProperties.WRITE_AVRO_COMPRESSION_DEFAULT
    )
