"""Several writers of one commit log (DynamoDB shard workers): per-shard compare-and-swap, seq races."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from connectors.dynamodb.offset import ShardPosition, ShardsMovedError, StreamPositions, claim_positions
from connectors.events import Batch, Column, TableChanges, TableId, TableSchema
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.lake.shared_writer import SharedLogWriter
from connectors.offsets import Offset

T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
DEVICES = TableId("ddb", "dynamodb", "devices")
SCHEMA = TableSchema(DEVICES, (Column("pk", pa.string()), Column("v", pa.int64())), ("pk",))


def pos(**shards: str) -> StreamPositions:
    return StreamPositions({"devices": {s: ShardPosition.parse(p) for s, p in shards.items()}})


def changes(shard: str, rows: list[tuple[int, str, int]]) -> TableChanges:
    return TableChanges.from_rows(
        SCHEMA,
        [
            {"Op": "U", "_commit_ts": T0, "_position": f"{shard}:{seq}", "_txid": "", "pk": pk, "v": v}
            for seq, pk, v in rows
        ],
    )


def claim(latest: Offset, start: Offset, end: Offset) -> Offset:
    assert isinstance(latest, StreamPositions) and isinstance(start, StreamPositions)
    assert isinstance(end, StreamPositions)
    return claim_positions(latest, start, end)


def writer(lake: Lake, name: str, **kw: Any) -> SharedLogWriter:
    return SharedLogWriter(lake.storage, "ddb", name, claim, epoch=lambda latest: latest, **kw)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    seed = lake.writer("ddb")  # the snapshot a plain run takes first: both shards known, empty
    seed.write(
        Batch(start=None, end=pos(a="", b=""), changes=(changes("a", []),), snapshot=frozenset({DEVICES}))
    )
    return lake


def test_claim_moves_only_the_batchs_shards_and_refuses_a_moved_one() -> None:
    latest = pos(a="5", b="9")
    assert claim_positions(latest, pos(a="5", b="3"), pos(a="7", b="3")) == pos(a="7", b="9")
    # a child shard first read by this batch is added; a finished, unlisted parent is dropped
    assert claim_positions(pos(a="5!", b="9"), pos(a="5!", b="1"), pos(c="2", b="1")) == pos(b="9", c="2")
    with pytest.raises(ShardsMovedError, match="devices/a"):
        claim_positions(latest, pos(a="4"), pos(a="6"))


def test_two_writers_interleave_and_the_loser_of_a_seq_renumbers(lake: Lake) -> None:
    one, two = writer(lake, "one"), writer(lake, "two")
    # `one` stages for seq 2, then `two` commits seq 2 first: `one` must land as seq 3
    staged_for = one.last_committed().seq + 1
    first = two.write(
        Batch(start=pos(a="", b=""), end=pos(a="", b="20"), changes=(changes("b", [(20, "y", 1)]),))
    )
    assert first is not None and first.seq == staged_for
    second = one.write(
        Batch(start=pos(a="", b=""), end=pos(a="11", b=""), changes=(changes("a", [(11, "x", 1)]),))
    )
    assert second is not None and second.seq == staged_for + 1
    assert second.start == first.end and second.end == pos(a="11", b="20").serialize()
    assert (first.writer, second.writer) == ("two", "one")

    log = lake.read_changelog("ddb", DEVICES.lake_name)
    seqs = dict(zip(log["pk"].to_pylist(), log["_seq"].to_pylist(), strict=True))
    assert seqs["y"] >> 32 == first.seq and seqs["x"] >> 32 == second.seq  # rows rank by commit
    assert any(f"/{second.seq:012d}-" in f.path for f in second.tables[DEVICES.lake_name].files)


def test_a_batch_of_a_shard_another_writer_committed_is_dropped(lake: Lake) -> None:
    one, two = writer(lake, "one"), writer(lake, "two")
    one.write(Batch(start=pos(a="", b=""), end=pos(a="11", b=""), changes=(changes("a", [(11, "x", 1)]),)))
    # `two` read shard a from the old position (its lease had expired): refused, nothing staged left
    with pytest.raises(ShardsMovedError):
        two.write(
            Batch(start=pos(a="", b=""), end=pos(a="11", b=""), changes=(changes("a", [(11, "x", 1)]),))
        )
    assert not list(lake.storage.list_files("_staging/ddb"))
    log = lake.read_changelog("ddb", DEVICES.lake_name)
    assert pc.count(log["pk"]).as_py() == 1


def test_the_commit_check_runs_before_every_attempt(lake: Lake) -> None:
    calls: list[Batch] = []

    def refuse(batch: Batch) -> None:
        calls.append(batch)
        raise RuntimeError("lease lost")

    w = writer(lake, "one", before_commit=refuse)
    with pytest.raises(RuntimeError, match="lease lost"):
        w.write(Batch(start=pos(a="", b=""), end=pos(a="3", b=""), changes=(changes("a", [(3, "x", 1)]),)))
    assert len(calls) == 1 and lake.commit_log("ddb").latest_seq() == 1


def test_workers_take_a_fair_share_and_clear_only_dead_workers_staging(tmp_path: Path) -> None:
    import json
    import time

    from connectors.lake.shard_leases import ShardLeases
    from connectors.lake.storage import Storage

    storage = Storage(str(tmp_path / "lake"))
    one, two = ShardLeases(storage, "ddb", "one", ttl=5), ShardLeases(storage, "ddb", "two", ttl=5)
    one.beat()
    two.beat()
    shards = ["s1", "s2", "s3", "s4"]
    mine, theirs = set(one.choose("devices", shards)), set(two.choose("devices", shards))
    assert len(mine) == len(theirs) == 2 and not mine & theirs
    assert set(one.choose("devices", shards)) == mine  # held ones are kept, nothing more taken

    # a third worker that died long ago left staged files; a live worker's stay
    dead_beat = {"worker": "gone", "at": time.time() - 3600}
    storage.write_bytes("_leases/ddb/workers/gone.json", json.dumps(dead_beat).encode())
    storage.write_bytes("_staging/ddb/w-gone/u1/00000.t.parquet", b"x")
    storage.write_bytes("_staging/ddb/w-two/u2/00000.t.parquet", b"x")
    storage.write_bytes("_staging/ddb/w-never-beat/u3/00000.t.parquet", b"x")
    assert one.clear_dead_staging() == ["gone", "never-beat"]
    assert [e.path for e in storage.list_files("_staging/ddb")] == ["_staging/ddb/w-two/u2/00000.t.parquet"]
    one.release_all()
    two.release_all()
