"""Bin-packing compaction: a merge rewrites only small or delete-heavy data files, never the table.

The policy is checked on its own (which files it picks), then through merges into a table of many
well-sized files: small files are rewritten together and the large ones keep their paths however
many there are, a delete-heavy file is rewritten alone and its positions leave the delete files,
and after every merge the table equals a model of the source and deleted-row counts stay exact.
"""

from __future__ import annotations

import random
import string
import time

import pytest

from connectors.lake.compaction import CompactionPolicy, FileShape
from connectors.lake.config import LakeConfig
from connectors.lake.current import COMMIT_SEQ_PROPERTY, CurrentState
from connectors.lake.iceberg_commit import commit_snapshot
from connectors.lake.iceberg_deletes import read_position_deletes
from connectors.lake.iceberg_files import write_chunks
from connectors.lake.lake import Lake
from connectors.lake.live_rows import live_files
from tests.lake.helpers import PATIENTS, changes, snapshot_batch, stream_batch
from tests.lake.test_current import duckdb_scan, live, plain, stray_files

MB = 2**20


# -- the policy ------------------------------------------------------------------------------------
def shape(path: str, size: int, rows: int = 1000, deleted: int = 0) -> FileShape:
    return FileShape(path, size, rows, deleted)


def test_many_well_sized_files_are_no_reason_to_compact() -> None:
    """Forty large files and few delete files: nothing to do (the old rule rewrote the table)."""
    files = [shape(f"big{i}", 200 * MB) for i in range(40)]
    deletes = [shape(f"d{i}", MB, rows=10_000 * 4**i) for i in range(3)]
    assert CompactionPolicy().plan(files, deletes, target_file_bytes=512 * MB) is None


def test_a_full_tier_of_small_files_is_rewritten_with_the_smaller_ones_only() -> None:
    policy = CompactionPolicy()  # small: under 32 MB; tiers a factor of 4 apart, 4 files fill one
    big = [shape(f"big{i}", 300 * MB) for i in range(20)]
    tier_1mb = [shape(f"m{i}", MB + i) for i in range(3)]
    tier_4mb = [shape("q", 5 * MB)]
    assert policy.plan([*big, *tier_1mb, *tier_4mb], [], 512 * MB) is None  # no tier holds 4 yet
    plan = policy.plan([*big, *tier_1mb, *tier_4mb, shape("new", MB + 9)], [], 512 * MB)
    assert plan is not None
    assert sorted(plan.small) == ["m0", "m1", "m2", "new"]  # the 4 MB file waits for its tier
    assert not plan.delete_heavy and not plan.dropped and not plan.folded


def test_delete_files_are_folded_by_tiers_of_positions_and_all_past_the_maximum() -> None:
    policy = CompactionPolicy(max_delete_files=16)
    big = [shape("big", 300 * MB)]
    deletes = [shape("old", MB, rows=2_000_000), *(shape(f"d{i}", 100_000, rows=9_000 + i) for i in range(4))]
    plan = policy.plan(big, deletes, 512 * MB)
    assert plan is not None and sorted(plan.folded) == ["d0", "d1", "d2", "d3"]  # "old" is not carried
    many = [shape(f"d{i}", 100_000, rows=10_000 * 4**i) for i in range(15)]  # one per tier
    plan = policy.plan(big, many, 512 * MB)  # 15 + the merge's 2 > 16
    assert plan is not None and len(plan.folded) == 15


def test_delete_heavy_files_are_rewritten_and_wholly_deleted_ones_dropped() -> None:
    policy = CompactionPolicy(max_delete_files=16)
    files = [
        shape("big0", 300 * MB, rows=1000, deleted=200),  # 20 %: not over
        shape("big1", 300 * MB, rows=1000, deleted=201),
        shape("small", MB, rows=10, deleted=10),
    ]
    plan = policy.plan(files, [], target_file_bytes=512 * MB)
    assert plan is not None
    assert (plan.small, plan.delete_heavy, plan.dropped, plan.folded) == ((), ("big1",), ("small",), ())
    assert plan.rewritten == {"big1", "small"}


# -- through merges --------------------------------------------------------------------------------
NAME_CHARS = string.ascii_letters + string.digits


def name(rng: random.Random) -> str:
    return "".join(rng.choices(NAME_CHARS, k=60))  # incompressible: files' sizes follow their rows


@pytest.fixture
def lake(tmp_path) -> Lake:  # type: ignore[no-untyped-def]
    return Lake(LakeConfig(root=str(tmp_path / "lake")))


def load_large_files(lake: Lake, files: int, rows_per_file: int, rng: random.Random) -> dict[int, str]:
    """A table of `files` data files of `rows_per_file` rows each (ids in order): loaded by a
    snapshot, then its one data file split in place (a snapshot load writes one file per 512 MB)."""
    model = {i: name(rng) for i in range(files * rows_per_file)}
    lake.writer("src").write(
        snapshot_batch(10, changes([("I", 10, {"id": k, "name": v}) for k, v in model.items()]))
    )
    state = CurrentState(lake.storage, lake.catalog, "src")
    state.merge()
    table = state.load(PATIENTS.lake_name)
    assert table is not None
    rows = table.scan().to_arrow().sort_by("id")
    target = table.schema().as_arrow()
    with table.transaction() as tx:  # each chunk closes its file
        tx.set_properties({"write.target-file-size-bytes": "1"})
    chunks = (rows.slice(n * rows_per_file, rows_per_file).cast(target) for n in range(files))
    added = write_chunks(table, target, chunks)
    commit_snapshot(
        table,
        added=added,
        removed=live_files(table).all,
        removes_all=True,
        properties={COMMIT_SEQ_PROPERTY: str(state.applied_seq(table))},
        retention=state.retention,
        now_ms=int(time.time() * 1000),
    )
    with table.transaction() as tx:  # what "small" is measured against: 40 kB
        tx.set_properties({"write.target-file-size-bytes": "40000"})
    return model


def merge_changes(
    lake: Lake, state: CurrentState, model: dict[int, str], lsn: int, keys: list[int], rng: random.Random
) -> int:
    """Update (or, one in five, delete) `keys`; merge; check rows and counts against the model."""
    rows: list[tuple[str, int, dict[str, object]]] = []
    for k in keys:
        lsn += 1
        if k in model and rng.random() < 0.2:
            model.pop(k)
            rows.append(("D", lsn, {"id": k, "name": None}))
        else:
            op = "U" if k in model else "I"
            model[k] = name(rng)
            rows.append((op, lsn, {"id": k, "name": model[k]}))
    lake.writer("src").write(stream_batch(lsn - len(rows), lsn, changes(rows)))
    [result] = state.merge()
    assert result.rows == len(model)
    files = live(lake)
    assert files.data_rows - files.deleted_rows == len(model)
    assert {r["id"]: r["name"] for r in plain(state.read(PATIENTS.lake_name))} == model
    return lsn


def test_small_files_are_bin_packed_and_large_files_keep_their_paths(lake: Lake) -> None:
    rng = random.Random(14)
    model = load_large_files(lake, files=20, rows_per_file=400, rng=rng)
    large = {e.data_file.file_path for e in live(lake).data}
    assert len(large) == 20  # more than the 16 data files that used to rewrite the whole table
    # Small: under 8 kB on disk (a merge's few rows); the loaded files are some 25 kB each.
    state = CurrentState(lake.storage, lake.catalog, "src", compaction=CompactionPolicy(small_file_ratio=0.2))
    lsn, small_counts = 10, []
    for _ in range(12):
        lsn = merge_changes(lake, state, model, lsn, rng.sample(range(8400), 5), rng)
        files = live(lake)
        paths = {e.data_file.file_path for e in files.data}
        assert large <= paths  # never rewritten: neither small nor delete-heavy
        small_counts.append(len(paths - large))
        assert len(files.deletes) <= 16
    # Small files pile up to a full tier, then are rewritten into one: their count drops.
    assert max(small_counts) <= 5 and any(b < a for a, b in zip(small_counts, small_counts[1:], strict=False))
    assert plain(duckdb_scan(lake)) == plain(state.read(PATIENTS.lake_name))
    assert not stray_files(lake)


def test_a_delete_heavy_file_is_rewritten_alone_and_its_deletes_dropped(lake: Lake) -> None:
    rng = random.Random(15)
    model = load_large_files(lake, files=18, rows_per_file=400, rng=rng)
    state = CurrentState(lake.storage, lake.catalog, "src")  # the default policy
    lsn = merge_changes(lake, state, model, 10, rng.sample(range(7200), 30), rng)  # deletes everywhere
    before = live(lake)
    large = {e.data_file.file_path for e in before.data if e.data_file.record_count == 400}
    assert len(large) == 18 and before.deletes
    # A quarter of the file holding ids 1200..1599 changes at once: over the 20 % threshold.
    lsn = merge_changes(lake, state, model, lsn, list(range(1200, 1300)), rng)
    after = live(lake)
    paths = {e.data_file.file_path for e in after.data}
    [rewritten] = large - paths
    assert len(large & paths) == 17
    table = state.load(PATIENTS.lake_name)
    assert table is not None
    still_deleted = read_position_deletes(table, after.deletes)
    assert rewritten not in still_deleted  # no delete file references the removed file
    assert set(still_deleted) <= paths
    # The positions of the other files were carried over: counts stay exact.
    assert sum(len(p) for p in still_deleted.values()) == after.deleted_rows
    assert plain(duckdb_scan(lake)) == plain(state.read(PATIENTS.lake_name))
    assert not stray_files(lake)
