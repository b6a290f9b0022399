"""Files no snapshot needs any more: recorded when they became so, deleted after a grace period.

A merge that expires snapshots (`iceberg_expiry`) deletes nothing. Once its commit has succeeded
it records the files only the expired snapshots referenced, and the metadata.json files the commit
dropped from the table's metadata log, in a ledger object named after the earliest time they may
go:

    <root>/_maintenance/<source>/orphans/<lake table>/<not before, epoch ms>-<uuid>.json

The maintenance pass (`delete_orphans`) takes the records that are due, loads the table afresh and
deletes only the recorded files that no snapshot still in the table's metadata references (any
snapshot, not only main's, plus the current and logged metadata files); the record goes last. So:
- nothing a live snapshot references is ever deleted, even if a record were wrong;
- a crash mid-way leaves the record, and the next pass deletes the rest (a missing file is fine);
- a crash between a merge's commit and its record leaves files behind (storage, never a reader's
  loss); nothing lists the table's directory to find such strays.
A file cannot become referenced again once unreferenced: a merge only carries its parent's live
files and the files it wrote itself, and its commit requires main to be the snapshot it read.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from pyiceberg.table import Table as IcebergTable

from connectors.lake.iceberg_expiry import referenced_files
from connectors.lake.iceberg_files import delete_files
from connectors.lake.storage import Storage

log = logging.getLogger(__name__)

LEDGER_PREFIX = "_maintenance"


@dataclass(frozen=True, slots=True)
class OrphanRecord:
    """One ledger object: files of one table that may be deleted from `not_before_ms` on."""

    path: str  # relative to the lake root
    lake_table: str
    not_before_ms: int


@dataclass(frozen=True, slots=True)
class OrphanReport:
    """What one maintenance pass did to one table's orphans."""

    table: str
    deleted: int  # files deleted (or already gone)
    still_referenced: int  # recorded files a snapshot references again: kept, record dropped
    waiting: int  # records not yet due
    next_due_ms: int | None  # when the earliest waiting record is due


class OrphanLedger:
    """The orphan records of one source's current-state tables."""

    def __init__(self, storage: Storage, source: str) -> None:
        self.storage = storage
        self.source = source

    def _prefix(self, lake_table: str | None = None) -> str:
        base = f"{LEDGER_PREFIX}/{self.source}/orphans/"
        return base if lake_table is None else f"{base}{lake_table}/"

    def record(self, lake_table: str, files: Iterable[str], not_before_ms: int) -> OrphanRecord | None:
        """Record files (full URIs, as the table's metadata names them) deletable from `not_before_ms`."""
        paths = sorted(set(files))
        if not paths:
            return None
        path = f"{self._prefix(lake_table)}{not_before_ms:013d}-{uuid.uuid4().hex}.json"
        body = {"table": lake_table, "not_before_ms": not_before_ms, "files": paths}
        self.storage.write_bytes(path, json.dumps(body).encode())
        return OrphanRecord(path, lake_table, not_before_ms)

    def records(self, lake_table: str | None = None) -> list[OrphanRecord]:
        """Every record (of one table, or of all), oldest due first; read from names only."""
        out = []
        for entry in self.storage.list_files(self._prefix(lake_table)):
            rest = entry.path[len(self._prefix()) :]
            table, _, name = rest.rpartition("/")
            stamp = name.split("-", 1)[0]
            if table and name.endswith(".json") and stamp.isdigit():
                out.append(OrphanRecord(entry.path, table, int(stamp)))
        return sorted(out, key=lambda r: (r.not_before_ms, r.path))

    def files(self, record: OrphanRecord) -> list[str]:
        return list(json.loads(self.storage.read_bytes(record.path))["files"])

    def discard(self, record: OrphanRecord) -> None:
        self.storage.delete(record.path)


def delete_orphans(table: IcebergTable, ledger: OrphanLedger, lake_table: str, now_ms: int) -> OrphanReport:
    """Delete the table's recorded orphans that are due at `now_ms` and still unreferenced.

    `table` must be loaded after the records were listed (the references are checked against it).
    """
    records = ledger.records(lake_table)
    due = [r for r in records if r.not_before_ms <= now_ms]
    waiting = [r for r in records if r.not_before_ms > now_ms]
    next_due = waiting[0].not_before_ms if waiting else None
    if not due:
        return OrphanReport(lake_table, 0, 0, len(waiting), next_due)
    meta = table.metadata
    referenced = referenced_files(table.io, meta.snapshots)
    referenced.add(table.metadata_location)
    referenced.update(e.metadata_file for e in meta.metadata_log)
    deleted = kept = 0
    for record in due:
        files = ledger.files(record)
        gone = [f for f in files if f not in referenced]
        if len(gone) < len(files):
            # Should not happen (see the module docstring); never delete what a snapshot reads.
            log.warning(
                "%s: %d recorded orphan file(s) are referenced again; kept",
                table.name(),
                len(files) - len(gone),
            )
        delete_files(table, gone)
        ledger.discard(record)  # last: a crash before this re-runs the deletes, harmlessly
        deleted += len(gone)
        kept += len(files) - len(gone)
    return OrphanReport(lake_table, deleted, kept, len(waiting), next_due)
