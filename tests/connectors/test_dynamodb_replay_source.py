"""Replaying Lambda-delivered stream records from files (local and S3) into the lake.

The files are made from the real records of a table's stream on the moto server, wrapped as AWS
Lambda receives them; the lake built from the files must equal the table, item for item.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.dynamodb.client import AwsClients
from connectors.dynamodb.config import DynamoDBReplayConfig
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.source import SourceError
from pipelines.capture.runner import sync_source
from pipelines.capture.sources import open_source
from tests.ddb_support import DdbWorld


def _stream_records(ddb: DdbWorld) -> list[dict[str, Any]]:
    """Every record of the table's stream so far, as raw wire JSON, with eventSourceARN added."""
    clients = AwsClients(ddb.config)
    arn = ddb.client.describe_table(TableName=ddb.name)["Table"]["LatestStreamArn"]
    shard = clients.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = clients.streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict[str, Any]] = []
    while True:
        page = clients.get_records(iterator)
        if not page.records:
            return [{**r, "eventSourceARN": arn} for r in records]
        records.extend(page.records)
        iterator = page.next_iterator


def _lambda_event(records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"Records": records}).encode()


@pytest.fixture
def ddb(aws_client_kwargs: dict[str, str], tmp_path: Path) -> DdbWorld:
    return DdbWorld(aws_client_kwargs, tmp_path / "lake")


def _replay(ddb: DdbWorld, location: str, lake_root: Path, **extra: Any) -> tuple[Lake, DynamoDBReplayConfig]:
    config = DynamoDBReplayConfig(name="replayed", location=location, tables={ddb.name: "pk:S,sk:N"}, **extra)
    return Lake(LakeConfig(root=str(lake_root))), config


def _sync(lake: Lake, config: DynamoDBReplayConfig) -> Any:
    source = open_source(config)
    try:
        return sync_source(lake, source)
    finally:
        source.close()


def _lake_items(lake: Lake, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    state = lake.current("replayed").read(f"dynamodb__{table}")
    out = {}
    for row in state.to_pylist():
        clean = {k: v for k, v in row.items() if not k.startswith("_") and v is not None}
        out[(clean["pk"], clean["sk"])] = clean
    return out


def test_replay_local_files_in_order_resume_and_skip_duplicates(ddb: DdbWorld, tmp_path: Path) -> None:
    for i in range(20):
        ddb.put(
            {"pk": {"S": f"p{i % 4}"}, "sk": {"N": str(i)}, "bpm": {"N": str(60 + i)}, "tags": {"SS": ["a"]}}
        )
    ddb.delete("p1", 1)
    ddb.put({"pk": {"S": "p2"}, "sk": {"N": "2"}, "bpm": {"N": "99"}})
    records = _stream_records(ddb)
    folder = tmp_path / "archive"
    (folder / "2026" / "11").mkdir(parents=True)
    (folder / "2026" / "11" / "26-00.json").write_bytes(_lambda_event(records[:10]))
    # Lambda retried the first batch: the same records again, gzipped this time.
    (folder / "2026" / "11" / "26-01.json.gz").write_bytes(gzip.compress(_lambda_event(records[:10])))
    (folder / "2026" / "11" / "26-02.jsonl").write_text("\n".join(json.dumps(r) for r in records[10:]))
    lake, config = _replay(ddb, str(folder), tmp_path / "replay-lake")
    report = _sync(lake, config)
    assert report.rows == len(records)  # the retried batch was dropped
    expected = {k: {n: v for n, v in row.items()} for k, row in ddb.table_items().items()}
    got = _lake_items(lake, ddb.name)
    assert {k: v["bpm"] for k, v in got.items()} == {k: v["bpm"] for k, v in expected.items() if "bpm" in v}
    assert got.keys() == expected.keys()
    # New files arrive: only they are read.
    ddb.put({"pk": {"S": "late"}, "sk": {"N": "1"}, "bpm": {"N": "1"}})
    newest = _stream_records(ddb)[-1:]
    (folder / "2026" / "11" / "27-00.json").write_bytes(_lambda_event(newest))
    assert _sync(lake, config).rows == 1
    assert _sync(lake, config).rows == 0
    assert _lake_items(lake, ddb.name).keys() == ddb.table_items().keys()


def test_replay_from_s3(
    ddb: DdbWorld, tmp_path: Path, s3_lake: Any, aws_client_kwargs: dict[str, str]
) -> None:
    for i in range(5):
        ddb.put({"pk": {"S": "s"}, "sk": {"N": str(i)}, "bpm": {"N": "70"}})
    s3 = boto3.client("s3", **aws_client_kwargs)
    s3.put_object(
        Bucket=s3_lake.bucket,
        Key="firehose/2026/11/26/part-1.gz",
        Body=gzip.compress(_lambda_event(_stream_records(ddb))),
    )
    lake, config = _replay(
        ddb, f"s3://{s3_lake.bucket}/firehose", tmp_path / "replay-lake", s3=s3_lake.options
    )
    assert _sync(lake, config).rows == 5
    assert _lake_items(lake, ddb.name).keys() == ddb.table_items().keys()


def test_a_bad_file_is_an_error_naming_the_file(ddb: DdbWorld, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / "a.json").write_text('{"Records": [')
    lake, config = _replay(ddb, str(folder), tmp_path / "replay-lake")
    with pytest.raises(SourceError, match="a.json"):
        _sync(lake, config)
    assert lake.commit_log("replayed").latest_seq() == 1  # only the empty starting point


def test_key_specs_are_validated() -> None:
    with pytest.raises(ValueError, match="not '<hash>"):
        DynamoDBReplayConfig(name="r", location="/tmp", tables={"device_events": "patient_id"})
