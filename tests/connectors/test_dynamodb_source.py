"""The DynamoDB source through the real runner against tables on the moto server.

Each test creates its own tables (unique names) and its own local lake, runs `sync_source`, and
compares the lake's current state with a Scan of the table, item for item.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from connectors.dynamodb import snapshot as snapshots
from connectors.dynamodb.offset import StreamPositions
from connectors.source import PreflightError, SourceError
from pipelines.capture.runner import backfill_tables
from pipelines.capture.sources import open_source
from pipelines.config import ConfigError, parse_config
from tests.ddb_support import DdbWorld

BIG = "12345678901234567890123456789012345678"  # 38 digits: exact as decimal(38, 0)


@pytest.fixture
def ddb(aws_client_kwargs: dict[str, str], tmp_path: Path) -> DdbWorld:
    return DdbWorld(aws_client_kwargs, tmp_path / "lake")


def event(pk: str, sk: int, **attrs: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}, **attrs}


def seed(ddb: DdbWorld, n: int) -> None:
    for i in range(n):
        ddb.put(event(f"p{i % 7}", i, steps={"N": str(i * 10)}, kind={"S": "steps"}))


def test_snapshot_then_stream_insert_modify_remove(ddb: DdbWorld) -> None:
    seed(ddb, 30)
    first = ddb.sync()
    assert first.snapshot_tables == [f"dynamodb__{ddb.name}"]
    assert ddb.lake_items() == ddb.table_items()
    ddb.put(event("p1", 1, steps={"N": "999"}, kind={"S": "steps"}))  # MODIFY
    ddb.delete("p2", 2)  # REMOVE
    ddb.put(event("new", 100, steps={"N": "5"}, kind={"S": "sleep"}))  # INSERT
    second = ddb.sync()
    assert not second.snapshot_tables
    assert second.rows_by_table[f"dynamodb__{ddb.name}"] == 3
    assert ddb.lake_items() == ddb.table_items()
    log = ddb.changelog()
    stream_rows = log.filter(pc.not_equal(log["Op"], "I")).to_pylist()
    assert sorted(r["Op"] for r in stream_rows) == ["D", "U"]
    # The commit time is the record's ApproximateCreationDateTime, in UTC.
    newest = max(log["_commit_ts"].to_pylist())
    assert abs((dt.datetime.now(dt.UTC) - newest).total_seconds()) < 120


def test_every_attribute_type_round_trips(ddb: DdbWorld) -> None:
    ddb.put(event("a", 1))  # an item without attributes, so the snapshot is not empty
    ddb.sync()
    item = event(
        "types ✓ ünïcode",
        2,
        big={"N": BIG},
        small={"N": "-0.000001"},
        text={"S": "héllo 世界"},
        blob={"B": b"\x00\x01\xfe\xff"},
        flag={"BOOL": False},
        nothing={"NULL": True},
        names={"SS": ["b", "a"]},
        numbers={"NS": ["1.5", "2", "-3"]},
        blobs={"BS": [b"\x01", b"\x02"]},
        nested={
            "M": {
                "n": {"N": "1.50"},
                "l": {"L": [{"S": "x"}, {"N": BIG}, {"B": b"\x07"}]},
                "b": {"BOOL": True},
            }
        },
        listed={"L": [{"N": "3"}, {"M": {"k": {"SS": ["z"]}}}, {"NULL": True}]},
    )
    ddb.put(item)
    ddb.sync()
    assert ddb.lake_items() == ddb.table_items()
    state = ddb.lake_state()
    assert state.schema.field("big").type == pa.decimal128(38, 0)
    row = state.filter(pc.equal(state["pk"], "types ✓ ünïcode")).to_pylist()[0]
    assert row["big"] == Decimal(BIG)
    assert row["blob"] == b"\x00\x01\xfe\xff"
    assert json.loads(row["nested"])["n"] == 1.5  # JSON text with the number's exact digits
    assert '"n":1.50' in row["nested"]


def test_remove_then_reinsert_the_same_key(ddb: DdbWorld) -> None:
    seed(ddb, 5)
    ddb.sync()
    ddb.delete("p1", 1)
    ddb.put(event("p1", 1, steps={"N": "77"}, kind={"S": "again"}))
    ddb.delete("p3", 3)
    ddb.sync()
    assert ddb.lake_items() == ddb.table_items()
    log = ddb.changelog()
    p1 = log.filter(pc.and_(pc.equal(log["pk"], "p1"), pc.equal(log["sk"], 1))).sort_by("_seq")
    assert p1["Op"].to_pylist() == ["I", "D", "I"]


def test_attribute_drift_adds_columns_and_keeps_other_types(ddb: DdbWorld) -> None:
    ddb.put(event("a", 1, pulse={"N": "60"}))
    ddb.sync()
    ddb.put(event("b", 2, pulse={"S": "irregular"}, spo2={"N": "97.5"}))
    ddb.put(event("c", 3, pulse={"N": "1" * 39}))  # wider than 38 digits
    report = ddb.sync()
    assert report.rows == 2
    state = ddb.lake_state()
    rows = {r["pk"]: r for r in state.to_pylist()}
    assert rows["b"]["pulse"] is None and rows["b"]["pulse__s"] == "irregular"
    assert rows["b"]["spo2"] == Decimal("97.5")
    assert rows["c"]["pulse"] is None and rows["c"]["pulse__n_text"] == "1" * 39
    assert rows["a"]["pulse"] == Decimal(60)


def test_types_stay_stable_across_restarts(ddb: DdbWorld) -> None:
    """A new process adopts the lake's column types instead of re-inferring them."""
    ddb.put(event("a", 1, reading={"N": "7"}))
    ddb.sync()
    ddb.put(event("b", 2, reading={"N": "7.1234567"}))  # more scale than the column has
    ddb.sync()
    state = ddb.lake_state()
    assert state.schema.field("reading").type == ddb.changelog().schema.field("reading").type
    rows = {r["pk"]: r for r in state.to_pylist()}
    assert rows["b"]["reading"] is None and rows["b"]["reading__n_text"] == "7.1234567"


def test_resume_and_replay_is_a_no_op(ddb: DdbWorld) -> None:
    seed(ddb, 10)
    ddb.sync()
    start = ddb.lake.writer(ddb.config.name).last_committed().offset
    ddb.put(event("p9", 9, steps={"N": "1"}, kind={"S": "x"}))
    assert ddb.sync().rows == 1
    # Replaying the stream from the older position commits nothing.
    writer = ddb.lake.writer(ddb.config.name)
    source = open_source(ddb.config)
    try:
        assert start is not None
        source.preflight()
        results = [
            writer.write(b)
            for b in source.stream(start, writer.last_committed().floors, until=source.current_position())
        ]
    finally:
        source.close()
    assert results and all(r is None for r in results)
    assert ddb.sync().rows == 0
    assert ddb.changelog().num_rows == 11


@pytest.mark.parametrize("margin", [0.0, 60.0])
def test_snapshot_hand_over_while_the_table_changes(
    aws_client_kwargs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, margin: float
) -> None:
    """Writes during the Scan are neither lost nor doubled: one row per key in the snapshot.

    With no clock margin (moto stamps records in milliseconds from the same clock) only the
    writes during the scan are corrected from the stream; with the default margin every recent
    record is, and the result must be the same.
    """
    ddb = DdbWorld(aws_client_kwargs, tmp_path / "lake", clock_margin_seconds=margin)
    seed(ddb, 40)
    real_scan = snapshots.SnapshotTaker._scan

    def scan_with_writes(self: snapshots.SnapshotTaker, name: str) -> Any:
        for n, item in enumerate(real_scan(self, name)):
            yield item
            if n == 20:  # half-way: change items already scanned and items still to come
                for i in range(40):
                    if i % 4 == 0:
                        ddb.delete(f"p{i % 7}", i)
                    elif i % 4 == 1:
                        ddb.put(event(f"p{i % 7}", i, steps={"N": "-1"}, kind={"S": "during"}))
                ddb.put(event("born", 1000, steps={"N": "3"}, kind={"S": "during"}))

    monkeypatch.setattr(snapshots.SnapshotTaker, "_scan", scan_with_writes)
    ddb.sync()
    assert ddb.lake_items() == ddb.table_items()
    log = ddb.changelog()
    assert log.num_rows == len(ddb.table_items())  # the snapshot: one row per live key, no extras
    # The stream resumes after the hand-over point: nothing of the scan window comes again.
    monkeypatch.undo()
    assert ddb.sync().rows == 0
    ddb.put(event("after", 1, kind={"S": "later"}))
    assert ddb.sync().rows == 1
    assert ddb.lake_items() == ddb.table_items()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_snapshot_from_an_export(
    ddb: DdbWorld, tmp_path: Path, aws_client_kwargs: dict[str, str], s3_lake: Any, where: str
) -> None:
    """Seeded from a DynamoDB JSON export (the documented layout, under an S3 prefix); changes after
    the export time come from the stream."""
    seed(ddb, 12)
    export_id = "01700000000000-abcdef12"
    folder_key = f"exports/AWSDynamoDB/{export_id}"
    items = ddb.client.scan(TableName=ddb.name)["Items"]
    files = {
        f"{folder_key}/data/part-0.json.gz": gzip.compress(
            "\n".join(json.dumps({"Item": _wire(i)}) for i in items).encode()
        ),
        f"{folder_key}/manifest-summary.json": json.dumps(
            {
                "exportTime": dt.datetime.now(dt.UTC).isoformat(),
                "exportFormat": "DYNAMODB_JSON",
                "itemCount": len(items),
            }
        ).encode(),
        f"{folder_key}/manifest-files.json": (
            json.dumps({"dataFileS3Key": f"{folder_key}/data/part-0.json.gz", "itemCount": len(items)}) + "\n"
        ).encode(),
    }
    if where == "local":
        for key, body in files.items():
            (tmp_path / "bucket" / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "bucket" / key).write_bytes(body)
        uri = str(tmp_path / "bucket" / folder_key)
    else:
        s3 = boto3.client("s3", **aws_client_kwargs)
        for key, body in files.items():
            s3.put_object(Bucket=s3_lake.bucket, Key=key, Body=body)
        uri = f"s3://{s3_lake.bucket}/{folder_key}/"
    ddb.put(event("p1", 1, steps={"N": "4242"}, kind={"S": "after export"}))
    ddb.delete("p2", 2)
    ddb.config = ddb.config.model_copy(update={"exports": {ddb.name: uri}})
    ddb.sync()
    assert ddb.lake_items() == ddb.table_items()


def test_an_export_older_than_the_stream_retention_is_refused(ddb: DdbWorld, tmp_path: Path) -> None:
    folder = tmp_path / "AWSDynamoDB" / "old"
    folder.mkdir(parents=True)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=30)
    (folder / "manifest-summary.json").write_text(json.dumps({"exportTime": old.isoformat()}))
    (folder / "manifest-files.json").write_text("")
    ddb.config = ddb.config.model_copy(update={"exports": {ddb.name: str(folder)}})
    with pytest.raises(SourceError, match="older than the stream's 24 h retention"):
        ddb.sync()


def test_backfill_one_table_while_the_other_streams(
    aws_client_kwargs: dict[str, str], tmp_path: Path
) -> None:
    ddb = DdbWorld(aws_client_kwargs, tmp_path / "lake", tables=2)
    a, b = ddb.names
    for i in range(5):
        ddb.put(event("x", i, v={"N": str(i)}), table=a)
        ddb.put(event("y", i, v={"N": str(i)}), table=b)
    ddb.sync()
    ddb.put(event("x", 1, v={"N": "100"}), table=a)
    ddb.put(event("y", 9, v={"N": "9"}), table=b)
    source = open_source(ddb.config)
    try:
        report = backfill_tables(ddb.lake, source, [t for t in source.tables() if t.name == a])
    finally:
        source.close()
    assert report.snapshot_tables == [f"dynamodb__{a}"]
    ddb.put(event("x", 2, v={"N": "200"}), table=a)
    ddb.sync()
    for table in (a, b):
        assert ddb.lake_items(table) == ddb.table_items(table)
    log = ddb.changelog(a)
    assert log.filter(pc.equal(log["v"], Decimal(100))).num_rows == 1  # via the backfill only


def test_a_backfill_requested_from_a_running_stream_is_staged_beside_it(
    aws_client_kwargs: dict[str, str], tmp_path: Path
) -> None:
    """`lakehouse stream` keeps reading both tables while one is re-scanned; the backfill commit,
    made later, keeps the changes the stream committed meanwhile."""
    import time

    from pipelines.capture import requests
    from tests.stream_support import running_stream

    ddb = DdbWorld(aws_client_kwargs, tmp_path / "lake", tables=2)
    a, b = ddb.names
    for i in range(5):
        ddb.put(event("x", i, v={"N": str(i)}), table=a)
        ddb.put(event("y", i, v={"N": str(i)}), table=b)
    ddb.sync()
    with running_stream(ddb.lake, ddb.config) as stream:
        stream.wait_alive(timeout=60)
        request_id = requests.submit(ddb.lake.storage, ddb.config.name, [a])
        for i in range(5):  # both tables change while the backfill is served
            ddb.put(event("x", i, v={"N": str(100 + i)}), table=a)
            ddb.put(event("y", 10 + i, v={"N": str(i)}), table=b)
        ddb.delete("x", 0, table=a)
        outcome = requests.wait(ddb.lake.storage, ddb.config.name, request_id, timeout=60)
        assert outcome["ok"], outcome
        ddb.put(event("x", 7, v={"N": "7"}), table=a)
        time.sleep(3)
    record = ddb.lake.commit_log(ddb.config.name).read(int(outcome["commit"]))  # type: ignore[call-overload]
    assert record.kind == "backfill" and record.tables[f"dynamodb__{a}"].replay_after is not None
    ddb.sync()
    for table in (a, b):
        assert ddb.lake_items(table) == ddb.table_items(table)


def test_preflight_names_the_fix(aws_client_kwargs: dict[str, str], tmp_path: Path) -> None:
    ddb = DdbWorld(aws_client_kwargs, tmp_path / "lake")
    ddb.client.create_table(
        TableName=ddb.name + "_nostream",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    config = ddb.config.model_copy(update={"tables": (ddb.name + "_nostream", "missing_table")})
    source = open_source(config)
    with pytest.raises(PreflightError) as err:
        source.preflight()
    text = str(err.value)
    assert "StreamViewType=NEW_AND_OLD_IMAGES" in text and "missing_table does not exist" in text
    assert "testing" not in text  # no credentials in errors


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"sources": [{"kind": "dynamodb", "name": "d", "tables": ["ok_table", "x"]}]})
    assert "sources[0].dynamodb.tables" in str(err.value) or "tables" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config(
            {"sources": [{"kind": "dynamodb", "name": "d", "tables": ["abc"], "aws": {"access_key_id": "A"}}]}
        )
    assert "secret_access_key" in str(err.value)


def test_offset_round_trip_and_order() -> None:
    from connectors.dynamodb.offset import ShardPosition
    from connectors.offsets import parse_offset

    a = StreamPositions({"t": {"s1": ShardPosition(5), "s2": ShardPosition(None)}})
    b = StreamPositions({"t": {"s1": ShardPosition(7, True), "s2": ShardPosition(1)}})
    assert parse_offset(a.serialize()) == a and parse_offset(b.serialize()) == b
    assert a <= b and not b <= a and a < b
    assert b.covers("t", "s1", 10**22) and a.covers("t", "s1", 5) and not a.covers("t", "s1", 6)
    assert not a.covers("t", "s3", 1)


def _wire(item: dict[str, Any]) -> dict[str, Any]:
    """A botocore-parsed item back to wire-form JSON (binary as base64)."""

    def value(v: dict[str, Any]) -> dict[str, Any]:
        ((kind, raw),) = v.items()
        if kind == "B":
            return {"B": base64.b64encode(raw).decode()}
        if kind == "BS":
            return {"BS": [base64.b64encode(x).decode() for x in raw]}
        if kind == "M":
            return {"M": {k: value(x) for k, x in raw.items()}}
        if kind == "L":
            return {"L": [value(x) for x in raw]}
        return v

    return {k: value(v) for k, v in item.items()}


def test_an_idle_stream_commits_nothing(ddb: DdbWorld) -> None:
    """An idle stream commits nothing: no rows, and the offset is unchanged."""
    seed(ddb, 3)
    ddb.sync()
    before = ddb.lake.commit_log(ddb.config.name).latest_seq()
    assert ddb.sync().rows == 0
    assert ddb.lake.commit_log(ddb.config.name).latest_seq() == before
