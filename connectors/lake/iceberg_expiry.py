"""Which snapshots of a current-state table expire, and which files only they referenced.

A snapshot is expired when it is beyond the newest `keep_snapshots` of main *and* was superseded
(its child on main was committed) more than `max_snapshot_age_seconds` ago; snapshots a tag or
branch points at are kept. Age counts from the supersession, not from the snapshot's creation
(Iceberg's ``history.expire.max-snapshot-age-ms`` counts from creation): a table idle for a day
and then merged twice must not lose, within seconds, the snapshot every running query still reads.

Finding orphans reads the manifest lists and manifests of every retained snapshot. With time-based
retention a hot table keeps hundreds of snapshots (one per merge for an hour), so both are cached
here by path: Iceberg never rewrites a manifest list or a manifest in place (their names carry a
UUID), so a cached decoding stays true. pyiceberg internals relied on (0.12.0):
``Snapshot.manifests`` and ``ManifestFile.fetch_manifest_entry``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from pyiceberg.io import FileIO
from pyiceberg.manifest import ManifestFile
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot

from connectors.lake.config import SnapshotRetention

_V = TypeVar("_V")
_CACHE_ENTRIES = 50_000  # paths only: a few MB at most


class _Lru(Generic[_V]):
    """A bounded least-recently-used map (thread-safe enough: a lost update only costs a re-read)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, _V] = OrderedDict()

    def get(self, key: str) -> _V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: _V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


_MANIFEST_LISTS: _Lru[tuple[ManifestFile, ...]] = _Lru(_CACHE_ENTRIES)
_LIVE_FILES: _Lru[frozenset[str]] = _Lru(_CACHE_ENTRIES)
_ALL_FILES: _Lru[frozenset[str]] = _Lru(_CACHE_ENTRIES)


@dataclass(frozen=True, slots=True)
class Expiry:
    """What one commit made unreferenced: expired snapshots, their files, dropped metadata files."""

    snapshot_ids: tuple[int, ...] = ()
    files: tuple[str, ...] = ()  # manifest lists, manifests, data and delete files
    metadata_files: tuple[str, ...] = ()  # metadata.json files dropped from the metadata log

    def __bool__(self) -> bool:
        return bool(self.snapshot_ids or self.files or self.metadata_files)


def split_snapshots(
    metadata: TableMetadata, head: Snapshot | None, retention: SnapshotRetention, now_ms: int
) -> tuple[list[Snapshot], list[Snapshot]]:
    """(retained, expired) snapshots once `head` (a new snapshot, or None: main's) is main's.

    `retained` starts with main's lineage, newest first."""
    snapshots = list(metadata.snapshots)
    if head is not None and all(s.snapshot_id != head.snapshot_id for s in snapshots):
        snapshots.append(head)
    by_id = {s.snapshot_id: s for s in snapshots}
    if head is None:
        main = metadata.refs.get("main")
        head = by_id.get(main.snapshot_id) if main is not None else None
    max_age_ms = int(retention.max_snapshot_age_seconds * 1000)
    lineage: list[Snapshot] = []
    in_lineage: set[int] = set()
    kept: set[int] = set()
    superseded_ms = now_ms  # the head is current: superseded "now" at the earliest
    snapshot = head
    while snapshot is not None and snapshot.snapshot_id not in in_lineage:
        if len(lineage) < retention.keep_snapshots or now_ms - superseded_ms < max_age_ms:
            kept.add(snapshot.snapshot_id)
        lineage.append(snapshot)
        in_lineage.add(snapshot.snapshot_id)
        superseded_ms = snapshot.timestamp_ms
        parent = snapshot.parent_snapshot_id
        snapshot = by_id.get(parent) if parent is not None else None
    protected = {ref.snapshot_id for ref in metadata.refs.values()}  # tags and other branches
    for s in snapshots:
        if s.snapshot_id not in in_lineage and now_ms - s.timestamp_ms < max_age_ms:
            kept.add(s.snapshot_id)
    kept |= protected
    retained = [s for s in lineage if s.snapshot_id in kept]
    retained += [s for s in snapshots if s.snapshot_id in kept and s.snapshot_id not in in_lineage]
    expired = [s for s in snapshots if s.snapshot_id not in kept]
    return retained, expired


def manifests(io: FileIO, snapshot: Snapshot) -> tuple[ManifestFile, ...]:
    """A snapshot's manifests, decoded once per process."""
    cached = _MANIFEST_LISTS.get(snapshot.manifest_list)
    if cached is None:
        cached = tuple(snapshot.manifests(io))
        _MANIFEST_LISTS.put(snapshot.manifest_list, cached)
    return cached


def live_paths(io: FileIO, manifest: ManifestFile) -> frozenset[str]:
    """Paths of the files a manifest lists as live (added or existing): what its readers open."""
    return _manifest_paths(io, manifest, deleted=False)


def listed_paths(io: FileIO, manifest: ManifestFile) -> frozenset[str]:
    """Paths of every file a manifest lists, deleted entries included."""
    return _manifest_paths(io, manifest, deleted=True)


def _manifest_paths(io: FileIO, manifest: ManifestFile, *, deleted: bool) -> frozenset[str]:
    cache = _ALL_FILES if deleted else _LIVE_FILES
    cached = cache.get(manifest.manifest_path)
    if cached is None:
        entries = manifest.fetch_manifest_entry(io, discard_deleted=not deleted)
        cached = frozenset(e.data_file.file_path for e in entries)
        cache.put(manifest.manifest_path, cached)
    return cached


def referenced_files(
    io: FileIO, snapshots: Iterable[Snapshot], extra: Iterable[ManifestFile] = ()
) -> set[str]:
    """Every file a reader of any of `snapshots` may open: manifest lists, manifests, live files."""
    referenced: set[str] = set()
    seen: dict[str, ManifestFile] = {m.manifest_path: m for m in extra}
    for snapshot in snapshots:
        referenced.add(snapshot.manifest_list)
        seen.update((m.manifest_path, m) for m in manifests(io, snapshot))
    referenced.update(seen)
    for manifest in seen.values():
        referenced |= live_paths(io, manifest)
    return referenced


def orphaned_files(
    io: FileIO,
    retained: Sequence[Snapshot],
    new_manifests: Sequence[ManifestFile],
    expired: Sequence[Snapshot],
) -> list[str]:
    """Files referenced only by `expired`: their manifest lists, manifests, data and deletes.

    `retained` are the other snapshots kept; the new snapshot is given by its `new_manifests`.
    A deleted entry of an expired manifest is a candidate too (the file may be left over from an
    older snapshot); whatever any kept manifest lists as live is never one."""
    if not expired:
        return []
    kept = referenced_files(io, retained, new_manifests)
    candidates: set[str] = set()
    for snapshot in expired:
        candidates.add(snapshot.manifest_list)
        for manifest in manifests(io, snapshot):
            if manifest.manifest_path in kept:
                continue
            candidates.add(manifest.manifest_path)
            candidates |= listed_paths(io, manifest)
    return sorted(candidates - kept)


def dropped_metadata_files(
    base: TableMetadata, base_location: str | None, new: TableMetadata, new_location: str | None
) -> list[str]:
    """metadata.json files a commit dropped from the metadata log (no longer tracked by the table)."""
    before = {e.metadata_file for e in base.metadata_log} | ({base_location} if base_location else set())
    after = {e.metadata_file for e in new.metadata_log} | ({new_location} if new_location else set())
    return sorted(before - after)
