"""Readers are never broken: time-based snapshot retention and orphan files deleted after a grace.

A reader pinned to an old snapshot (pyiceberg's scan by snapshot id, DuckDB's `iceberg_scan` of the
old metadata.json, as a Glue pointer copy would name it) must read complete, correct rows while
merges and a compaction run, for the whole retention window; only after the window and the grace
period do the old files go, and only through the maintenance pass. Time is a clock the test moves
(snapshot timestamps, retention and grace all read it), locally and on moto S3.
"""

from __future__ import annotations

import importlib
import pathlib
import random
from urllib.parse import urlparse

import pyarrow as pa
import pytest

from connectors.lake import orphans
from connectors.lake.compaction import CompactionPolicy
from connectors.lake.config import LakeConfig, SnapshotRetention
from connectors.lake.current import CurrentState
from connectors.lake.iceberg_expiry import referenced_files
from connectors.lake.lake import Lake
from tests.lake.helpers import PATIENTS, changes, snapshot_batch, stream_batch
from tests.lake.test_current import lake, plain, stray_files

__all__ = ["lake"]  # the local / moto S3 fixture of test_current

HOUR = 3600.0
MINUTE = 60.0
RETENTION = SnapshotRetention(
    keep_snapshots=2, max_snapshot_age_seconds=HOUR, orphan_grace_seconds=10 * MINUTE
)


class Clock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def state(lake: Lake, clock: Clock, retention: SnapshotRetention = RETENTION, **kw: object) -> CurrentState:
    return CurrentState(lake.storage, lake.catalog, "src", retention=retention, clock=clock, **kw)  # type: ignore[arg-type]


def duckdb_read(lake: Lake, metadata_location: str) -> pa.Table:
    """A table as DuckDB's Iceberg reader sees it through one given metadata.json (offline)."""
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in ("httpfs", "avro", "iceberg"):  # avro before iceberg (PITFALLS.md)
        module = importlib.import_module(f"duckdb_extension_{name}")
        path = pathlib.Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}"
        con.sql(f"LOAD '{path / f'{name}.duckdb_extension'}'")
    if lake.storage.is_s3:
        endpoint = urlparse(lake.config.s3.endpoint_url or "")
        con.sql(
            "CREATE SECRET (TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', "
            f"ENDPOINT '{endpoint.netloc}', URL_STYLE 'path', USE_SSL false)"
        )
    return con.sql(f"SELECT * FROM iceberg_scan('{metadata_location}')").to_arrow_table()


def exists(lake: Lake, uri: str) -> bool:
    """Whether a file named by its full URI (as Iceberg metadata names it) is in the lake."""
    root = lake.storage.uri("")
    assert uri.startswith(root), (uri, root)
    return lake.storage.exists(uri[len(root) :])


def pinned_files(lake: Lake, current: CurrentState, snapshot_id: int) -> set[str]:
    """Every file a reader of the snapshot opens: manifest list, manifests, data and delete files."""
    table = current.load(PATIENTS.lake_name)
    assert table is not None
    snapshot = table.snapshot_by_id(snapshot_id)
    assert snapshot is not None
    return referenced_files(table.io, [snapshot])


def model_rows(model: dict[int, str]) -> list[dict[str, object]]:
    return [{"id": k, "name": v} for k, v in sorted(model.items())]


def seed(lake: Lake, current: CurrentState, n: int = 60) -> dict[int, str]:
    lake.writer("src").write(
        snapshot_batch(10, changes([("I", 10, {"id": i, "name": f"p{i}"}) for i in range(n)]))
    )
    current.merge()
    return {i: f"p{i}" for i in range(n)}


def change_some(
    lake: Lake, current: CurrentState, model: dict[int, str], step: int, rng: random.Random
) -> None:
    """One commit of updates, deletes and inserts, merged; `model` follows the source."""
    rows = []
    lsn = 100 * step
    for k in rng.sample(sorted(model), 5):
        rows.append(("U", lsn, {"id": k, "name": f"u{step}-{k}"}))
        model[k] = f"u{step}-{k}"
    gone = rng.choice(sorted(model))
    rows.append(("D", lsn, {"id": gone, "name": None}))
    del model[gone]
    new = 1000 + step
    rows.append(("I", lsn, {"id": new, "name": f"n{step}"}))
    model[new] = f"n{step}"
    start = 10 if step == 1 else lsn - 100  # steps run 1, 2, 3...: each starts where the last ended
    lake.writer("src").write(stream_batch(start, lsn, changes(rows)))
    current.merge()


def test_the_default_retention_keeps_an_hour_and_a_grace_period() -> None:
    retention = LakeConfig().retention
    assert retention.max_snapshot_age_seconds >= HOUR
    assert retention.orphan_grace_seconds >= HOUR
    assert retention.keep_snapshots >= 1


def test_a_pinned_reader_reads_its_snapshot_whole_through_merges_and_a_compaction(lake: Lake) -> None:
    clock = Clock()
    rng = random.Random(14)
    # Compacts once a fourth delete file would appear: a compaction runs inside the window.
    current = state(lake, clock, compaction=CompactionPolicy(max_delete_files=3))
    model = seed(lake, current)
    change_some(lake, current, model, 1, rng)  # the pinned snapshot has a position-delete file
    table = current.load(PATIENTS.lake_name)
    assert table is not None and table.current_snapshot() is not None
    pinned_id = table.current_snapshot().snapshot_id  # type: ignore[union-attr]
    pinned_metadata = table.metadata_location  # what `lakehouse publish` would copy to Glue
    expected = model_rows(model)
    files = pinned_files(lake, current, pinned_id)
    assert plain(table.scan(snapshot_id=pinned_id).to_arrow()) == expected

    # Eleven merges within the hour (more than the 8 metadata files the metadata log keeps), one
    # of them a compaction, with the maintenance pass running after each.
    compacted = False
    for step in range(2, 13):
        clock.advance(5 * MINUTE)
        change_some(lake, current, model, step, rng)
        assert current.delete_orphans() is not None
        fresh = current.load(PATIENTS.lake_name)
        assert fresh is not None
        compacted |= not any(t.delete_files for t in fresh.scan().plan_files())
        assert all(exists(lake, f) for f in files), step
        assert plain(fresh.scan(snapshot_id=pinned_id).to_arrow()) == expected, step
        assert plain(duckdb_read(lake, pinned_metadata)) == expected, step
        assert plain(current.read(PATIENTS.lake_name)) == model_rows(model)
    assert compacted
    assert pinned_metadata not in {e.metadata_file for e in fresh.metadata.metadata_log}

    # Past the window: the next merge expires the pinned snapshot; its files wait out the grace.
    clock.advance(15 * MINUTE)
    change_some(lake, current, model, 13, rng)
    table = current.load(PATIENTS.lake_name)
    assert table is not None and table.snapshot_by_id(pinned_id) is None
    clock.advance(RETENTION.orphan_grace_seconds - 1)
    current.delete_orphans()
    assert all(exists(lake, f) for f in files)
    assert plain(duckdb_read(lake, pinned_metadata)) == expected  # planned before the expiry

    # After the window and the grace (for metadata files: age + grace after they left the log),
    # the pinned snapshot's own files are gone, nothing unreferenced is left, and the newest
    # snapshots still read.
    clock.advance(RETENTION.max_snapshot_age_seconds + RETENTION.orphan_grace_seconds)
    current.delete_orphans()
    assert not current.orphans.records()
    table = current.load(PATIENTS.lake_name)
    assert table is not None
    live = referenced_files(table.io, table.snapshots())
    assert [f for f in files if f not in live and exists(lake, f)] == []
    assert not exists(lake, pinned_metadata)
    assert not stray_files(lake)
    lineage = [table.current_snapshot()]
    while len(lineage) < RETENTION.keep_snapshots:
        parent = table.snapshot_by_id(lineage[-1].parent_snapshot_id)  # type: ignore[union-attr,arg-type]
        assert parent is not None
        lineage.append(parent)
    for snapshot in lineage:
        assert table.scan(snapshot_id=snapshot.snapshot_id).to_arrow().num_rows > 0  # type: ignore[union-attr]
    assert plain(table.scan().to_arrow()) == model_rows(model)
    assert plain(duckdb_read(lake, table.metadata_location)) == model_rows(model)


def test_nothing_is_deleted_before_the_grace_period_ends(lake: Lake) -> None:
    """Guards the rule itself: a maintenance pass any time before expiry + grace deletes nothing."""
    clock = Clock()
    rng = random.Random(7)
    current = state(lake, clock)
    model = seed(lake, current)
    table = current.load(PATIENTS.lake_name)
    assert table is not None
    pinned_id = table.current_snapshot().snapshot_id  # type: ignore[union-attr]
    pinned_metadata = table.metadata_location
    expected = model_rows(model)
    files = pinned_files(lake, current, pinned_id)
    # Superseded, then kept for the hour; merges keep coming meanwhile.
    for step in range(1, 4):
        clock.advance(20 * MINUTE)
        change_some(lake, current, model, step, rng)
        current.delete_orphans()
        assert all(exists(lake, f) for f in files), step
    clock.advance(21 * MINUTE)  # superseded at +20 min, now +81: past the hour
    change_some(lake, current, model, 4, rng)  # expires the pinned snapshot
    expired_at = clock.now
    table = current.load(PATIENTS.lake_name)
    assert table is not None and table.snapshot_by_id(pinned_id) is None
    assert current.orphans.records()
    for offset in (0.0, 1.0, RETENTION.orphan_grace_seconds / 2, RETENTION.orphan_grace_seconds - 1):
        clock.now = expired_at + offset
        current.delete_orphans()
        assert all(exists(lake, f) for f in files), offset
        assert plain(duckdb_read(lake, pinned_metadata)) == expected, offset
    clock.now = expired_at + RETENTION.orphan_grace_seconds
    current.delete_orphans()
    live = referenced_files(table.io, table.snapshots())
    assert [f for f in files if f not in live and exists(lake, f)] == []


def test_age_counts_from_when_a_snapshot_was_superseded_and_the_newest_are_always_kept(lake: Lake) -> None:
    clock = Clock()
    rng = random.Random(3)
    retention = SnapshotRetention(keep_snapshots=1, max_snapshot_age_seconds=HOUR, orphan_grace_seconds=0)
    current = state(lake, clock, retention)
    model = seed(lake, current)
    clock.advance(5 * HOUR)  # idle: the seeded snapshot is five hours old, and still current
    table = current.load(PATIENTS.lake_name)
    assert table is not None
    idle_id = table.current_snapshot().snapshot_id  # type: ignore[union-attr]
    change_some(lake, current, model, 1, rng)
    change_some(lake, current, model, 2, rng)
    table = current.load(PATIENTS.lake_name)
    assert table is not None and table.snapshot_by_id(idle_id) is not None  # superseded just now
    # Hours apart: only the newest `keep_snapshots` stay, however old.
    for step in range(3, 6):
        clock.advance(10 * HOUR)
        change_some(lake, current, model, step, rng)
    current.delete_orphans()
    table = current.load(PATIENTS.lake_name)
    # The newest, and the one it superseded just now (a query may have started on it a second ago).
    assert table is not None and len(table.snapshots()) == 2
    assert plain(table.scan().to_arrow()) == model_rows(model)
    assert not stray_files(lake)


def test_a_maintenance_pass_that_crashes_midway_is_finished_by_the_next(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    rng = random.Random(5)
    retention = SnapshotRetention(keep_snapshots=1, max_snapshot_age_seconds=0, orphan_grace_seconds=MINUTE)
    current = state(lake, clock, retention)
    model = seed(lake, current)
    for step in range(1, 4):
        clock.advance(1)
        change_some(lake, current, model, step, rng)
    clock.advance(HOUR)
    real = orphans.delete_files

    def crash_after_one(table, paths):  # type: ignore[no-untyped-def]
        paths = list(paths)
        real(table, paths[:1])
        raise OSError("killed")

    monkeypatch.setattr(orphans, "delete_files", crash_after_one)
    with pytest.raises(OSError):
        current.delete_orphans()
    monkeypatch.setattr(orphans, "delete_files", real)
    assert current.orphans.records()  # the record stays until its files are all gone
    current.delete_orphans()
    assert not current.orphans.records()
    assert not stray_files(lake)
    assert plain(current.read(PATIENTS.lake_name)) == model_rows(model)
