"""DynamoDB Streams -> lake with 1 and 2 shard-worker processes, next to one plain stream.

The stream is served by the fake DynamoDB Streams service (tests/fakes/ddb_streams.py) in its own
process, holding RECORDS synthetic device records in SHARDS open shards (as in
bench_dynamodb_to_lake.py). Each variant gets a fresh local lake whose first commit is an empty
snapshot at the streams' start, then reads every record into the change log:

* baseline: one plain `LakeWriter` stream (what `lakehouse stream` runs today for one source);
* 1 worker / 2 workers: `run_shard_worker` processes (`lakehouse stream --shard-worker`) sharing
  the shards through shard leases and committing into the one commit log.

Processes start, import and open the source first, then all begin at once; the figure is records
committed / seconds from that moment until the commit log holds every record. Run by hand:
    .venv/bin/python bench/bench_dynamodb_workers.py [records] [shards] [rounds]
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECORDS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 200_000
SHARDS = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 8
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 2
SOURCE = "bench"


def _source(endpoint: str, arn: str):  # type: ignore[no-untyped-def]
    from connectors.dynamodb.config import DynamoDBSourceConfig
    from connectors.dynamodb.layout import KeyAttribute
    from connectors.dynamodb.source import DynamoDBSource

    table = arn.split("/")[1]
    config = DynamoDBSourceConfig(
        name=SOURCE,
        tables=(table,),
        aws={"streams_endpoint_url": endpoint, "access_key_id": "testing", "secret_access_key": "testing"},
    )
    source = DynamoDBSource(config)
    source.attach({table: arn}, {table: [KeyAttribute("pk", "S")]})
    return config, source


def seed_lake(lake_dir: str, endpoint: str, arn: str) -> None:
    """The first commit: an empty snapshot of the table at the streams' start."""
    from connectors.dynamodb.offset import StreamPositions
    from connectors.events import Batch, TableChanges
    from connectors.lake.storage import Storage
    from connectors.lake.writer import LakeWriter

    _, source = _source(endpoint, arn)
    source._ready()
    table = arn.split("/")[1]
    schema = source._layouts[table].schema()
    LakeWriter(Storage(lake_dir), SOURCE).write(
        Batch(
            None,
            StreamPositions.empty([table]),
            (TableChanges(schema, schema.arrow_schema().empty_table()),),
            snapshot=frozenset({schema.table}),
        )
    )
    source.close()


def child(mode: str, lake_dir: str, endpoint: str, arn: str, go: str, worker: str) -> None:
    """One process: get ready, wait for `go`, then stream until SIGTERM."""
    from connectors.lake.config import LakeConfig
    from connectors.lake.lake import Lake
    from connectors.lake.shard_leases import ShardLeases
    from connectors.lake.writer import LakeWriter

    config, source = _source(endpoint, arn)
    source._ready()
    lake = Lake(LakeConfig(root=lake_dir))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if mode == "worker":
        ShardLeases(lake.storage, SOURCE, worker, lake.config.lease_ttl_seconds).beat()  # seen by the others
    print("ready", flush=True)
    while not Path(go).exists():
        time.sleep(0.01)
    if mode == "worker":
        from pipelines.capture.shard_worker import run_shard_worker

        run_shard_worker(lake, config, stop=stop, worker=worker, source=source)
        return
    writer = LakeWriter(lake.storage, SOURCE)
    for batch in source.stream(writer.last_committed().offset, {}):  # type: ignore[arg-type]
        writer.write(batch)
        if stop.is_set():
            break


def committed_rows(lake_dir: str) -> int:
    from connectors.lake.commits import CommitLog
    from connectors.lake.storage import Storage

    log = CommitLog(Storage(lake_dir), SOURCE)
    return sum(log.read(s).rows for s in range(2, log.latest_seq() + 1))


def measure(mode: str, processes: int, endpoint: str, arn: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as lake_dir:
        seed_lake(lake_dir, endpoint, arn)
        go = str(Path(lake_dir) / "GO")
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", mode, lake_dir, endpoint, arn, go, f"w{i}"],
                cwd=REPO,
                stdout=subprocess.PIPE,
            )  # fmt: skip
            for i in range(processes)
        ]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        Path(go).touch()
        started = time.perf_counter()
        rows = 0
        while rows < RECORDS:
            time.sleep(0.05)
            rows = committed_rows(lake_dir)
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a {mode} process ended early")
        seconds = time.perf_counter() - started
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=120)
        return seconds, rows


def main() -> None:
    from tests.fakes.ddb_streams import start_in_subprocess

    print(f"DynamoDB Streams -> lake: {RECORDS:,} records in {SHARDS} shards (fake service, own process), "
          f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")  # fmt: skip
    endpoint, arn, server = start_in_subprocess(synthetic_records=RECORDS, shards=SHARDS)
    try:
        variants = [("plain", 1, "baseline: one plain stream"), ("worker", 1, "1 shard worker"),
                    ("worker", 2, "2 shard workers")]  # fmt: skip
        for n in range(1, ROUNDS + 1):
            print(f"round {n}:")
            rates = {}
            for mode, processes, label in variants:
                seconds, rows = measure(mode, processes, endpoint, arn)
                rates[label] = rows / seconds
                print(
                    f"  {label:<28} {rows:>9,} records  {seconds:7.2f} s  {rows / seconds:>10,.0f} records/s"
                )
            base = rates["baseline: one plain stream"]
            print(f"  2 workers / 1 worker: {rates['2 shard workers'] / rates['1 shard worker']:.2f}x; "
                  f"2 workers / plain stream: {rates['2 shard workers'] / base:.2f}x")  # fmt: skip
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:8])
    else:
        main()
