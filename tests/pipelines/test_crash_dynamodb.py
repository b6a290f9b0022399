"""Crash test for the DynamoDB source: SIGKILL `lakehouse stream` again and again, then compare.

Like tests/pipelines/test_crash.py for the SQL sources: a writer thread keeps putting, overwriting
and deleting items of a table on the moto server and counts what DynamoDB confirmed (insert vs
overwrite told apart by ReturnValues=ALL_OLD); `lakehouse stream` runs in a child process killed
at random moments and at the commit protocol's named crash points. A final `sync --once` catches
up, then the lake's current state must equal a Scan of the table item for item, and the change
log must hold exactly the confirmed changes — no loss, no duplicate.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pyarrow.compute as pc
import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from tests.crash_support import (
    REPO,
    backfills_requested,
    catch_up,
    ensure_a_backfill,
    kill_streams_repeatedly,
    lakehouse,
    without_backfill_rows,
)
from tests.ddb_support import SplittingWriter, create_table, normalise

SEED_ITEMS = 200


class ItemWriter(threading.Thread):
    """Puts, overwrites and deletes items until stopped; counts confirmed changes by Op."""

    def __init__(self, client: Any, table: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.client, self.table = client, table
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                key = {"pk": {"S": f"dev-{self.rng.randrange(60)}"}, "sk": {"N": str(self.rng.randrange(10))}}
                if self.rng.random() < 0.25:
                    old = self.client.delete_item(TableName=self.table, Key=key, ReturnValues="ALL_OLD")
                    if "Attributes" in old:
                        self.counts["D"] += 1
                else:
                    item = {
                        **key,
                        "bpm": {"N": str(self.rng.randrange(40, 180))},
                        "at": {"N": str(time.time_ns())},
                    }
                    old = self.client.put_item(TableName=self.table, Item=item, ReturnValues="ALL_OLD")
                    self.counts["U" if "Attributes" in old else "I"] += 1
                time.sleep(self.rng.uniform(0, 0.01))
        except BaseException as e:  # surfaced by the test
            self.error = e


def _write_config(path: Path, lake_root: Path, table: str, endpoint: str) -> Path:
    path.write_text(
        f"""
[lake]
root = "{lake_root}"

[[sources]]
name = "crash_dynamodb"
kind = "dynamodb"
tables = ["{table}"]
batch_max_rows = 50
batch_max_seconds = 0.2
settle_seconds = 0
poll_max_seconds = 0.3

[sources.aws]
endpoint_url = "{endpoint}"
access_key_id = "testing"
secret_access_key = "${{CRASH_AWS_SECRET}}"
"""
    )
    return path


@pytest.mark.slow
def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    aws_client_kwargs: dict[str, str], tmp_path: Path
) -> None:
    client = boto3.client("dynamodb", **aws_client_kwargs)
    table = f"crash_{uuid.uuid4().hex[:10]}"
    create_table(client, table)
    for i in range(SEED_ITEMS):
        client.put_item(
            TableName=table,
            Item={"pk": {"S": f"seed-{i}"}, "sk": {"N": str(i)}, "bpm": {"N": "60"}, "note": {"S": "seed ✓"}},
        )
    config = _write_config(
        tmp_path / "lakehouse.toml", tmp_path / "lake", table, aws_client_kwargs["endpoint_url"]
    )
    env = {**os.environ, "CRASH_AWS_SECRET": "testing", "PYTHONPATH": str(REPO)}

    crashy = lakehouse(
        config,
        "sync",
        "--once",
        env={**env, "LAKEHOUSE_CRASH_AT": "staged", "LAKEHOUSE_CRASH_PROBABILITY": "0.5"},
    )
    crashy.wait(timeout=120)
    clean = lakehouse(config, "sync", "--once", env=env)
    assert clean.wait(timeout=120) == 0, clean.stderr.read().decode()[-3000:] if clean.stderr else ""

    writer = ItemWriter(boto3.client("dynamodb", **aws_client_kwargs), table, seed=42)
    writer.start()
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    try:
        with backfills_requested(lake, "crash_dynamodb", [table]):
            kills = kill_streams_repeatedly(config, env, random.Random(7))
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    assert sum(kills.values()) >= 5, kills
    ensure_a_backfill(config, env, lake, "crash_dynamodb", [table])

    assert "testing" not in catch_up(config, env)  # the secret key never reaches the logs

    lake_table = f"dynamodb__{table}"
    expected = {}
    for item in client.scan(TableName=table, ConsistentRead=True)["Items"]:  # small: one page
        row = {k: normalise(v) for k, v in item.items()}
        expected[(row["pk"], row["sk"])] = row
    state = lake.current("crash_dynamodb").read(lake_table)
    got = {}
    for row in state.to_pylist():
        clean = {k: v for k, v in row.items() if not k.startswith("_") and v is not None}
        got[(clean["pk"], clean["sk"])] = clean
    assert got == expected

    log = without_backfill_rows(
        lake, "crash_dynamodb", lake.read_changelog("crash_dynamodb", lake_table), ("pk", "sk")
    )
    snapshot = log.filter(pc.less(log["_seq"], 2 << 32))  # commit 1 is the snapshot
    assert snapshot.num_rows == SEED_ITEMS and set(snapshot["Op"].to_pylist()) == {"I"}
    streamed = log.filter(pc.greater_equal(log["_seq"], 2 << 32))
    ops = Counter(streamed["Op"].to_pylist())
    assert dict(ops) == dict(writer.counts), (
        f"change log {dict(ops)} vs confirmed {dict(writer.counts)}; kills {dict(kills)}"
    )
    positions = streamed["_position"].to_pylist()
    assert len(positions) == len(set(positions))  # every stream record once


@pytest.mark.slow
def test_sigkill_through_shard_splits_and_expired_iterators(
    aws_client_kwargs: dict[str, str], tmp_path: Path
) -> None:
    """The same, with the stream served by the fake service: shards split while the pipeline
    is being killed, and iterators expire after 250 ms. The table lives on moto (DescribeTable,
    Scan); its stream, under the same ARN, on the fake, which is the truth compared against."""
    from tests.fakes.ddb_streams import FakeStreams, FakeStreamsServer

    client = boto3.client("dynamodb", **aws_client_kwargs)
    table = f"split_{uuid.uuid4().hex[:10]}"
    arn = create_table(client, table)
    model = FakeStreams(iterator_ttl_seconds=0.25)
    assert model.create_stream(table, "pk", "sk", label=arn.rsplit("/", 1)[1]) == arn
    server = FakeStreamsServer(model)
    server.start()
    try:
        config = _write_config(
            tmp_path / "lakehouse.toml", tmp_path / "lake", table, aws_client_kwargs["endpoint_url"]
        )
        config.write_text(config.read_text() + f'streams_endpoint_url = "{server.endpoint_url}"\n')
        env = {**os.environ, "CRASH_AWS_SECRET": "testing", "PYTHONPATH": str(REPO)}
        rng = random.Random(11)
        for i in range(50):  # history before the snapshot: the overlay brings it in
            model.put(arn, {"pk": {"S": f"d{i}"}, "sk": {"N": "0"}, "v": {"N": str(i)}})
        assert lakehouse(config, "sync", "--once", env=env).wait(timeout=120) == 0

        writer = SplittingWriter(model, arn, seed=12, split_every=150, pause=0.005)
        writer.start()
        try:
            kills = kill_streams_repeatedly(config, env, rng)
        finally:
            writer.finish()
        assert sum(kills.values()) >= 5, kills
        catch_up(config, env)

        lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
        state = lake.current("crash_dynamodb").read(f"dynamodb__{table}")
        got = {r["pk"]: int(r["v"]) for r in state.to_pylist()}
        assert got == {item["pk"]["S"]: int(item["v"]["N"]) for item in model.items(arn).values()}
        log = lake.read_changelog("crash_dynamodb", f"dynamodb__{table}")
        streamed = log.filter(pc.greater_equal(log["_seq"], 2 << 32))
        assert dict(Counter(streamed["Op"].to_pylist())) == dict(writer.counts)
        positions = streamed["_position"].to_pylist()
        assert len(positions) == len(set(positions))
        assert len(model.open_shard_ids(arn)) >= 4  # the stream really split while we read it
    finally:
        server.stop()
