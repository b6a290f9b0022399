"""DynamoDB Streams -> lake change log records/s, next to boto3 get_records + TypeDeserializer.

The stream is served by the fake DynamoDB Streams service (tests/fakes/ddb_streams.py) in its own
process: moto's stream serves about 1,100 records/s from its single shard, so it would measure
moto, not the reader; the fake serves pre-encoded records at several hundred thousand per second
and validates every request against the botocore model. It holds RECORDS synthetic device records
(11 attributes: S, N, BOOL, SS, M, L, B, NULL; every fifth a MODIFY with an old image) in SHARDS
open shards. Each measurement runs in a child process of its own (so its peak RSS is its own):

* ours to the lake: `DynamoDBSource.stream(...)` into a `LakeWriter` on a fresh local lake —
  parallel shard reads, raw JSON, columnar decode, Parquet change-log files, commits (what
  `lakehouse sync` does, less the current-state merge);
* ours decode only: the same stream, batches dropped;
* baseline: a plain loop of boto3 `get_records` (Limit 1000) per shard, parents first, with
  boto3's `TypeDeserializer` over every record's images.

Run by hand:  .venv/bin/python bench/bench_dynamodb_to_lake.py [records] [shards] [rounds]
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECORDS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 200_000
SHARDS = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 4
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 2
AWS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_baseline(endpoint: str, arn: str) -> dict[str, float]:
    import boto3
    from boto3.dynamodb.types import TypeDeserializer

    client = boto3.client("dynamodbstreams", endpoint_url=endpoint, **AWS)
    deserializer = TypeDeserializer()
    started = time.perf_counter()
    shards = client.describe_stream(StreamArn=arn, Limit=100)["StreamDescription"]["Shards"]
    shards.sort(key=lambda s: int(s["SequenceNumberRange"]["StartingSequenceNumber"]))  # parents first
    count = 0
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                body = record["dynamodb"]
                for image in ("Keys", "NewImage", "OldImage"):
                    if image in body:
                        {k: deserializer.deserialize(v) for k, v in body[image].items()}
                count += 1
            if not page["Records"] and "EndingSequenceNumber" not in shard["SequenceNumberRange"]:
                break  # an open shard read to its tip
            iterator = page.get("NextShardIterator")
    seconds = time.perf_counter() - started
    return {"records": count, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def run_ours(endpoint: str, arn: str, to_lake: bool) -> dict[str, float]:
    from connectors.dynamodb.config import DynamoDBSourceConfig
    from connectors.dynamodb.layout import KeyAttribute
    from connectors.dynamodb.offset import StreamPositions, StreamTip
    from connectors.dynamodb.source import DynamoDBSource
    from connectors.events import Batch, TableChanges
    from connectors.lake.storage import Storage
    from connectors.lake.writer import LakeWriter

    table = arn.split("/")[1]
    config = DynamoDBSourceConfig(
        name="bench",
        tables=(table,),
        aws={"streams_endpoint_url": endpoint, "access_key_id": "testing", "secret_access_key": "testing"},
    )
    source = DynamoDBSource(config)
    source.attach({table: arn}, {table: [KeyAttribute("pk", "S")]})
    source._ready()
    with tempfile.TemporaryDirectory() as lake_dir:
        writer = LakeWriter(Storage(lake_dir), "bench")
        schema = source._layouts[table].schema()
        start = StreamPositions.empty([table])
        writer.write(
            Batch(
                None,
                start,
                (TableChanges(schema, schema.arrow_schema().empty_table()),),
                snapshot=frozenset({schema.table}),
            )
        )
        started = time.perf_counter()
        rows = commits = 0
        for batch in source.stream(start, {}, until=StreamTip(dt.datetime.now(dt.UTC))):
            rows += batch.num_rows
            if to_lake and writer.write(batch) is not None:
                commits += 1
        seconds = time.perf_counter() - started
    source.close()
    return {"records": rows, "seconds": seconds, "commits": commits, "peak_rss_mb": peak_rss_mb()}


def child(mode: str, endpoint: str, arn: str) -> None:
    if mode == "baseline":
        result = run_baseline(endpoint, arn)
    else:
        result = run_ours(endpoint, arn, to_lake=mode == "lake")
    print(json.dumps(result))


def measure(mode: str, endpoint: str, arn: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, endpoint, arn], check=True, capture_output=True, cwd=REPO
    )
    return json.loads(out.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    from tests.fakes.ddb_streams import start_in_subprocess

    print(f"DynamoDB Streams -> lake: {RECORDS:,} records in {SHARDS} shards (fake service, own process)")
    endpoint, arn, server = start_in_subprocess(synthetic_records=RECORDS, shards=SHARDS)
    try:
        labels = {
            "lake": "ours, stream -> lake change log",
            "decode": "ours, decode only",
            "baseline": "boto3 get_records + TypeDeserializer",
        }
        for n in range(1, ROUNDS + 1):
            results = {mode: measure(mode, endpoint, arn) for mode in ("baseline", "lake", "decode")}
            print(f"round {n}:")
            for mode, r in results.items():
                rate = r["records"] / r["seconds"]
                print(f"  {labels[mode]:<40} {int(r['records']):>9,} records  {r['seconds']:7.2f} s  "
                      f"{rate:>10,.0f} records/s  peak RSS {r['peak_rss_mb']:6.0f} MB")  # fmt: skip
            base = results["baseline"]["records"] / results["baseline"]["seconds"]
            ours = results["lake"]["records"] / results["lake"]["seconds"]
            print(f"  ratio (ours to the lake / baseline): {ours / base:.2f}x")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
