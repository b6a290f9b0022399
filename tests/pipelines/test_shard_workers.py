"""Two `lakehouse stream --shard-worker` processes share one DynamoDB table's shards.

The stream is served by the fake service (shards split while the workers read, iterators expire
after 250 ms); the table itself lives on moto. Worker processes are SIGKILLed at random and
restarted while a writer keeps changing items: the other worker takes the killed one's shards
over. Then every confirmed change must be in the change log exactly once, each item's changes in
the order they were made (lineage across workers), and the merged state must equal the items.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import boto3
import pyarrow.compute as pc
import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from tests.crash_support import REPO, lakehouse
from tests.ddb_support import SplittingWriter, create_table

SOURCE = "crash_dynamodb"


def _config(path: Path, lake_root: Path, table: str, endpoint: str, streams: str) -> Path:
    path.write_text(
        f"""
[lake]
root = "{lake_root}"
lease_ttl_seconds = 3

[[sources]]
name = "{SOURCE}"
kind = "dynamodb"
tables = ["{table}"]
batch_max_rows = 50
batch_max_seconds = 0.2
settle_seconds = 0
poll_max_seconds = 0.3
discover_seconds = 0.5
worker_session_seconds = 3

[sources.aws]
endpoint_url = "{endpoint}"
streams_endpoint_url = "{streams}"
access_key_id = "testing"
secret_access_key = "${{CRASH_AWS_SECRET}}"
"""
    )
    return path


class Worker:
    """One `lakehouse stream --shard-worker` child process, its stderr kept in a file."""

    def __init__(self, config: Path, env: dict[str, str], log_dir: Path, name: str) -> None:
        self.config, self.env, self.log_dir, self.name = config, env, log_dir, name
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.runs += 1
        err = (self.log_dir / f"{self.name}-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "--config", str(self.config), "stream", "--source", SOURCE, "--shard-worker"],
            cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}-*.log"))
        )


def _catch_up(config: Path, env: dict[str, str], log_dir: Path) -> str:
    """A final `lakehouse sync --once` once the workers stopped; its stderr (it must succeed)."""
    path = log_dir / "catch-up.log"
    with path.open("wb") as err:
        final = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "--config", str(config), "sync", "--once"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        try:
            code = final.wait(timeout=180)
        except subprocess.TimeoutExpired:
            final.kill()
            raise AssertionError(f"catch-up hung:\n{path.read_text(errors='replace')[-4000:]}") from None
    assert code == 0, path.read_text(errors="replace")[-4000:]
    return path.read_text(errors="replace")


@pytest.mark.slow
def test_two_workers_one_killed_again_and_again_every_record_once_in_order(
    aws_client_kwargs: dict[str, str], tmp_path: Path
) -> None:
    from tests.fakes.ddb_streams import FakeStreams, FakeStreamsServer

    client = boto3.client("dynamodb", **aws_client_kwargs)
    table = f"workers_{uuid.uuid4().hex[:10]}"
    arn = create_table(client, table)
    model = FakeStreams(iterator_ttl_seconds=0.25)
    assert model.create_stream(table, "pk", "sk", label=arn.rsplit("/", 1)[1]) == arn
    for _ in range(3):  # four open shards to share from the start
        model.split(arn, model.open_shard_ids(arn)[0])
    server = FakeStreamsServer(model)
    server.start()
    workers: list[Worker] = []
    try:
        config = _config(
            tmp_path / "lakehouse.toml",
            tmp_path / "lake",
            table,
            aws_client_kwargs["endpoint_url"],
            server.endpoint_url,
        )
        env = {**os.environ, "CRASH_AWS_SECRET": "testing", "PYTHONPATH": str(REPO)}
        for i in range(40):
            model.put(arn, {"pk": {"S": f"d{i}"}, "sk": {"N": "0"}, "v": {"N": str(i)}})
        snapshot = lakehouse(config, "sync", "--once", env=env)
        assert snapshot.wait(timeout=120) == 0, (
            snapshot.stderr.read().decode()[-3000:] if snapshot.stderr else ""
        )

        workers = [Worker(config, env, tmp_path, name) for name in ("a", "b")]
        for w in workers:
            w.start()
        writer = SplittingWriter(model, arn, seed=21, split_every=200, pause=0.004)
        writer.start()
        rng = random.Random(22)
        kills = 0
        deadline = time.monotonic() + float(os.environ.get("CRASH_TEST_SECONDS", "30"))
        try:
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(1.5, 4.0))
                for w in workers:
                    assert w.alive(), f"worker {w.name} exited by itself:\n{w.log()[-3000:]}"
                victim = rng.choice(workers)
                victim.stop(signal.SIGKILL)
                kills += 1
                victim.start()
        finally:
            writer.finish()
        time.sleep(4)  # the workers read what the writer's last changes put in the stream
        for w in workers:
            assert w.stop(signal.SIGTERM) == 0, w.log()[-3000:]  # SIGTERM: stop cleanly, release leases
        assert kills >= 5

        lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
        commits = lake.commit_log(SOURCE)
        by_worker = Counter(commits.read(s).writer for s in range(2, commits.latest_seq() + 1))
        assert len([w for w in by_worker if w is not None]) >= 3, by_worker  # both, across restarts
        assert "testing" not in _catch_up(config, env, tmp_path) + "".join(w.log() for w in workers)

        state = lake.current(SOURCE).read(f"dynamodb__{table}")
        got = {r["pk"]: int(r["v"]) for r in state.to_pylist()}
        assert got == {item["pk"]["S"]: int(item["v"]["N"]) for item in model.items(arn).values()}
        log = lake.read_changelog(SOURCE, f"dynamodb__{table}")
        streamed = log.filter(pc.greater_equal(log["_seq"], 2 << 32))
        assert dict(Counter(streamed["Op"].to_pylist())) == dict(writer.counts)
        positions = streamed["_position"].to_pylist()
        assert len(positions) == len(set(positions))  # every record once
        # Lineage kept across workers: each item's written values rise with the lake's order.
        values: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for row in streamed.select(["pk", "v", "_seq", "Op"]).to_pylist():
            if row["Op"] != "D":
                values[row["pk"]].append((row["_seq"], int(row["v"])))
        for pk, seen in values.items():
            ordered = [v for _, v in sorted(seen)]
            assert ordered == sorted(ordered), f"{pk}: changes out of order {ordered}"
        assert len(model.open_shard_ids(arn)) >= 6  # the stream really split while shared
    finally:
        for w in workers:
            if w.alive():
                w.stop(signal.SIGKILL)
        server.stop()
