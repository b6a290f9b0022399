"""Current-state merge: latest version per key, deletes applied, snapshots replace, schema evolves."""

from __future__ import annotations

import decimal
import uuid

import boto3
import pyarrow as pa
import pytest

from connectors.events import Column, TableId, TableSchema
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.lake.storage import S3Options
from tests.lake.helpers import PATIENTS, changes, schema, snapshot_batch, stream_batch


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path) -> Lake:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return Lake(LakeConfig(root=str(tmp_path / "lake")))
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return Lake(
        LakeConfig(
            root=f"s3://{bucket}/lake",
            s3=S3Options(endpoint_url=endpoint, access_key_id="testing", secret_access_key="testing"),
            catalog_uri=f"sqlite:///{tmp_path}/catalog.db",
        )
    )


def rows(lake: Lake, table: str = PATIENTS.lake_name) -> dict[object, dict[str, object]]:
    state = lake.current("src").read(table)
    key = "id"
    return {r[key]: {k: v for k, v in r.items() if not k.startswith("_")} for r in state.to_pylist()}


def test_merge_keeps_the_latest_version_and_applies_deletes(lake: Lake) -> None:
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": f"p{i}"}) for i in range(1, 6)])))
    lake.current("src").merge()
    w.write(
        stream_batch(
            10,
            20,
            changes(
                [
                    ("U", 11, {"id": 1, "name": "first"}),
                    ("U", 12, {"id": 1, "name": "second"}),
                    ("D", 13, {"id": 2, "name": None}),
                    ("I", 14, {"id": 9, "name": "new"}),
                    ("D", 15, {"id": 9, "name": None}),
                    ("I", 16, {"id": 9, "name": "back"}),  # delete then re-insert of the same key
                ]
            ),
        )
    )
    current = lake.current("src")
    [result] = current.merge()
    assert (result.upserts, result.deletes, result.rows) == (2, 1, 5)
    assert rows(lake) == {
        1: {"id": 1, "name": "second"},
        3: {"id": 3, "name": "p3"},
        4: {"id": 4, "name": "p4"},
        5: {"id": 5, "name": "p5"},
        9: {"id": 9, "name": "back"},
    }
    # Re-running the merge is a no-op; a new merge applies only later commits.
    assert current.merge() == []
    w.write(stream_batch(20, 30, changes([("D", 25, {"id": 3, "name": None})])))
    [again] = lake.current("src").merge()
    assert again.commit_seq == 3 and again.rows == 4
    assert 3 not in rows(lake)


def test_a_backfill_snapshot_replaces_the_table(lake: Lake) -> None:
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": "old"}) for i in range(3)])))
    lake.current("src").merge()
    w.write(
        snapshot_batch(10, changes([("I", 40, {"id": 7, "name": "fresh"})]), start=10)
    )  # start=end: a backfill
    assert w.last_committed().floors[PATIENTS].serialize() == "pg-lsn:0/A"
    lake.current("src").merge()
    assert rows(lake) == {7: {"id": 7, "name": "fresh"}}


def test_schema_evolution_adds_columns_and_widens_types(lake: Lake) -> None:
    w = lake.writer("src")
    v1 = schema([("id", pa.int64()), ("score", pa.int32()), ("fee", pa.decimal128(10, 2))])
    w.write(
        snapshot_batch(10, changes([("I", 10, {"id": 1, "score": 5, "fee": decimal.Decimal("1.50")})], v1))
    )
    lake.current("src").merge()
    v2 = schema(
        [("id", pa.int64()), ("score", pa.int64()), ("fee", pa.decimal128(18, 2)), ("email", pa.string())]
    )
    w.write(
        stream_batch(
            10,
            20,
            changes(
                [
                    (
                        "I",
                        12,
                        {"id": 2, "score": 2**40, "fee": decimal.Decimal("1234567890123.45"), "email": "z@x"},
                    )
                ],
                v2,
            ),
        )
    )
    lake.current("src").merge()
    state = lake.current("src").read(PATIENTS.lake_name)
    assert state.schema.field("score").type == pa.int64()
    assert state.schema.field("fee").type == pa.decimal128(18, 2)
    assert rows(lake) == {
        1: {"id": 1, "score": 5, "fee": decimal.Decimal("1.50"), "email": None},
        2: {"id": 2, "score": 2**40, "fee": decimal.Decimal("1234567890123.45"), "email": "z@x"},
    }


def test_composite_keys(lake: Lake) -> None:
    table = TableId("src", "health", "readings")
    sch = TableSchema(
        table,
        (Column("patient", pa.int64()), Column("day", pa.string()), Column("steps", pa.int32())),
        ("patient", "day"),
    )
    w = lake.writer("src")
    w.write(
        snapshot_batch(
            10,
            changes(
                [
                    ("I", 10, {"patient": 1, "day": "a", "steps": 1}),
                    ("I", 10, {"patient": 1, "day": "b", "steps": 2}),
                ],
                sch,
            ),
            tables=(table,),
        )
    )
    w.write(stream_batch(10, 20, changes([("U", 12, {"patient": 1, "day": "b", "steps": 20})], sch)))
    lake.current("src").merge()
    state = lake.current("src").read(table.lake_name).sort_by("day")
    assert state.select(["patient", "day", "steps"]).to_pylist() == [
        {"patient": 1, "day": "a", "steps": 1},
        {"patient": 1, "day": "b", "steps": 20},
    ]


def test_old_snapshots_and_their_files_are_expired(lake: Lake) -> None:
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "a"})])))
    current = lake.current("src")
    for i in range(8):
        w.write(stream_batch(10 + i, 11 + i, changes([("U", 11 + i, {"id": 1, "name": f"v{i}"})])))
        current.merge()
    table = current.load(PATIENTS.lake_name)
    assert table is not None
    assert len(table.snapshots()) <= 3
    data_files = [e for e in lake.storage.list_files(f"current/src/{PATIENTS.lake_name}/data")]
    assert len(data_files) <= 3
    assert rows(lake) == {1: {"id": 1, "name": "v7"}}


def test_values_the_source_did_not_send_keep_the_lakes_value(lake: Lake) -> None:
    """PostgreSQL leaves unchanged TOAST values out of an UPDATE; the lake keeps what it had."""
    from connectors.events import TableChanges

    sch = schema([("id", pa.int64()), ("doc", pa.string()), ("n", pa.int32())])
    w = lake.writer("src")
    big = "x" * 10_000
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 1, "doc": big, "n": 0}), ("I", 10, {"id": 2, "doc": "small", "n": 0})], sch)))
    lake.current("src").merge()
    # Two updates of id 1 without its doc (one merged on its own, one together with a sent value).
    upd = changes([("U", 11, {"id": 1, "doc": None, "n": 1})], sch)
    w.write(stream_batch(10, 20, TableChanges(upd.schema, upd.data, unchanged=((0, ("doc",)),))))
    lake.current("src").merge()
    assert rows(lake)[1] == {"id": 1, "doc": big, "n": 1}
    both = changes([("U", 21, {"id": 2, "doc": "sent", "n": 5}), ("U", 22, {"id": 2, "doc": None, "n": 6})], sch)
    w.write(stream_batch(20, 30, TableChanges(both.schema, both.data, unchanged=((1, ("doc",)),))))
    lake.current("src").merge()
    assert rows(lake)[2] == {"id": 2, "doc": "sent", "n": 6}
    assert rows(lake)[1] == {"id": 1, "doc": big, "n": 1}
    # The change log itself says which values were not sent.
    log = lake.read_changelog("src", PATIENTS.lake_name)
    assert log.filter(pa.compute.equal(log["id"], 1))["_unchanged"].to_pylist() == [None, ["doc"]]
