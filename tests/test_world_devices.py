"""The DynamoDB part of the sample world (device events, daily summaries) against the moto server.

Every test works on tables with its own random prefix, so tests can share one moto server. Stream
reads on moto are slow (about 1k records/s), so the worlds here are tiny; the seeder puts the rare
attribute shapes on its first items, so even a tiny world shows every type.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import boto3
import pydantic
import pytest

from pipelines.world.devices import (
    EVENT_TYPES,
    SLEEP_STAGES,
    format_event_time,
    parse_event_time,
    seed_devices,
)
from pipelines.world.devices_schema import (
    EVENTS_TABLE,
    SUMMARY_TABLE,
    DeviceTables,
    DeviceTablesError,
    create_device_tables,
    drop_device_tables,
)
from pipelines.world.devices_workload import (
    STREAM_EVENT_NAMES,
    DeviceOperationMix,
    DeviceWorkload,
    DeviceWorkloadConfig,
    DeviceWorkloadError,
)
from pipelines.world.stats import ChangeKind, WorkloadStats

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
EVENT_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
Key = tuple[int, str]


@pytest.fixture(scope="module")
def dynamodb(aws_client_kwargs: dict[str, str]) -> Any:
    return boto3.client("dynamodb", **aws_client_kwargs)


@pytest.fixture(scope="module")
def streams(aws_client_kwargs: dict[str, str]) -> Any:
    return boto3.client("dynamodbstreams", **aws_client_kwargs)


@pytest.fixture
def new_prefix(dynamodb: Any) -> Iterator[Callable[[], str]]:
    """Hands out fresh table prefixes and drops their tables afterwards."""
    used: list[str] = []

    def make() -> str:
        used.append(f"t{uuid.uuid4().hex[:10]}_")
        return used[-1]

    yield make
    for prefix in used:
        drop_device_tables(dynamodb, prefix)


@pytest.fixture
def tables(dynamodb: Any, new_prefix: Callable[[], str]) -> DeviceTables:
    return create_device_tables(dynamodb, new_prefix())


def scan(client: Any, table: str) -> list[dict[str, Any]]:
    """Every item of ``table`` as raw AttributeValues, sorted by key."""
    items = [
        item
        for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
        for item in page["Items"]
    ]
    return sorted(
        items,
        key=lambda i: sorted((k, str(v)) for k, v in i.items() if k in ("patient_id", "event_time", "day")),
    )


def stream_records(
    streams: Any, arn: str, after: Mapping[str, str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Records of every shard (past ``after``'s sequence numbers) and the last sequence number per shard."""
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamArn": arn}
    while True:
        description = streams.describe_stream(**kwargs)["StreamDescription"]
        shards += description["Shards"]
        if not description.get("LastEvaluatedShardId"):
            break
        kwargs["ExclusiveStartShardId"] = description["LastEvaluatedShardId"]
    records: list[dict[str, Any]] = []
    positions = dict(after or {})
    for shard in shards:
        shard_id = shard["ShardId"]
        if shard_id in positions:
            iterator = streams.get_shard_iterator(
                StreamArn=arn,
                ShardId=shard_id,
                ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                SequenceNumber=positions[shard_id],
            )["ShardIterator"]
        else:
            iterator = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        # moto never returns an empty page before the end of a shard, so an empty page ends it.
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break
            records += page["Records"]
            positions[shard_id] = page["Records"][-1]["dynamodb"]["SequenceNumber"]
            iterator = page.get("NextShardIterator")
    return records, positions


def record_key(record: Mapping[str, Any], sort_key: str) -> Key:
    keys = record["dynamodb"]["Keys"]
    return int(keys["patient_id"]["N"]), keys[sort_key]["S"]


def per_key_events(records: list[dict[str, Any]], sort_key: str) -> dict[Key, list[str]]:
    """eventNames per item key, in stream order (the order DynamoDB guarantees)."""
    out: dict[Key, list[str]] = defaultdict(list)
    for record in records:
        out[record_key(record, sort_key)].append(record["eventName"])
    return dict(out)


def per_key_journal(stats: WorkloadStats, table: str) -> dict[Key, list[str]]:
    out: dict[Key, list[str]] = defaultdict(list)
    for change in stats.journal:
        if change.table == table:
            out[(change.key[0], change.key[1])].append(STREAM_EVENT_NAMES[change.kind])
    return dict(out)


def attribute_types(items: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Top-level attribute name -> the AttributeValue type codes it was seen with."""
    seen: dict[str, set[str]] = defaultdict(set)
    for item in items:
        for name, value in item.items():
            seen[name].update(value)
    return dict(seen)


# ---------------------------------------------------------------------- tables


def test_tables_have_key_schema_billing_and_streams(
    dynamodb: Any, streams: Any, tables: DeviceTables
) -> None:
    expected = {
        tables.device_events: ("event_time", tables.device_events_stream_arn),
        tables.daily_summary: ("day", tables.daily_summary_stream_arn),
    }
    for name, (sort_key, arn) in expected.items():
        assert name.startswith(tables.prefix)
        table = dynamodb.describe_table(TableName=name)["Table"]
        assert table["TableStatus"] == "ACTIVE"
        assert table["KeySchema"] == [
            {"AttributeName": "patient_id", "KeyType": "HASH"},
            {"AttributeName": sort_key, "KeyType": "RANGE"},
        ]
        assert {(a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]} == {
            ("patient_id", "N"),
            (sort_key, "S"),
        }
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        assert table["LatestStreamArn"] == arn
        description = streams.describe_stream(StreamArn=arn)["StreamDescription"]
        assert description["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert description["TableName"] == name
    assert tables.name(EVENTS_TABLE) == tables.device_events
    assert tables.stream_arn(SUMMARY_TABLE) == tables.daily_summary_stream_arn


def test_creating_again_is_a_no_op(dynamodb: Any, tables: DeviceTables) -> None:
    seed_devices(dynamodb, tables, patients=2, events_per_patient=2, seed=1)
    before = scan(dynamodb, tables.device_events)

    again = create_device_tables(dynamodb, tables.prefix)

    assert again == tables  # same names, same streams (no stream was replaced)
    assert scan(dynamodb, tables.device_events) == before


def test_existing_table_with_another_key_schema_is_an_error_naming_it(
    dynamodb: Any, new_prefix: Callable[[], str]
) -> None:
    prefix = new_prefix()
    dynamodb.create_table(
        TableName=f"{prefix}daily_summary",
        KeySchema=[{"AttributeName": "patient_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "patient_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    with pytest.raises(DeviceTablesError, match=f"{prefix}daily_summary"):
        create_device_tables(dynamodb, prefix)


def test_existing_table_without_a_stream_is_an_error(dynamodb: Any, new_prefix: Callable[[], str]) -> None:
    prefix = new_prefix()
    dynamodb.create_table(
        TableName=f"{prefix}device_events",
        KeySchema=[
            {"AttributeName": "patient_id", "KeyType": "HASH"},
            {"AttributeName": "event_time", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "patient_id", "AttributeType": "N"},
            {"AttributeName": "event_time", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(DeviceTablesError, match=f"{prefix}device_events.*stream"):
        create_device_tables(dynamodb, prefix)


def test_bad_prefix_is_refused(dynamodb: Any) -> None:
    with pytest.raises(DeviceTablesError, match="prefix"):
        create_device_tables(dynamodb, "no spaces/allowed ")


def test_drop_removes_both_tables(dynamodb: Any, new_prefix: Callable[[], str]) -> None:
    prefix = new_prefix()
    tables = create_device_tables(dynamodb, prefix)
    assert drop_device_tables(dynamodb, prefix) == [tables.device_events, tables.daily_summary]
    assert drop_device_tables(dynamodb, prefix) == []
    names = dynamodb.list_tables()["TableNames"]
    assert tables.device_events not in names and tables.daily_summary not in names


# ---------------------------------------------------------------------- seeding


def test_seed_counts_equal_items_scanned(dynamodb: Any, tables: DeviceTables) -> None:
    counts = seed_devices(
        dynamodb, tables, patients=7, events_per_patient=9, seed=5
    )  # 63: not a multiple of 25

    events = scan(dynamodb, tables.device_events)
    summaries = scan(dynamodb, tables.daily_summary)
    assert counts == {EVENTS_TABLE: 63, SUMMARY_TABLE: len(summaries)}
    assert len(events) == 63
    assert {int(e["patient_id"]["N"]) for e in events} == set(range(1, 8))
    # One summary per patient and UTC day of the two weeks before today; the events lie in them.
    today = dt.datetime.now(dt.UTC).date()
    days = {(today - dt.timedelta(days=i)).isoformat() for i in range(1, 15)}
    assert {(s["patient_id"]["N"], s["day"]["S"]) for s in summaries} == {
        (str(p), d) for p in range(1, 8) for d in days
    }
    assert {e["event_time"]["S"][:10] for e in events} <= days


def test_seeded_items_hold_every_attribute_type(dynamodb: Any, tables: DeviceTables) -> None:
    seed_devices(dynamodb, tables, patients=3, events_per_patient=2, seed=9)
    events = scan(dynamodb, tables.device_events)
    types = attribute_types(events)

    for name, code in [
        ("patient_id", "N"),
        ("event_time", "S"),
        ("type", "S"),
        ("device", "M"),
        ("steps", "N"),
        ("distance_m", "N"),
        ("stages", "L"),
        ("sleep_minutes", "N"),
        ("bpm", "N"),
        ("resting", "BOOL"),
        ("samples", "NS"),
        ("tags", "SS"),
        ("note", "S"),
        ("note", "NULL"),
        ("raw", "B"),
        ("battery", "N"),
        ("battery", "S"),  # the attribute that drifts type
        ("trace_id", "N"),
        ("received_at", "S"),
    ]:
        assert code in types.get(name, set()), f"no {name} of type {code} in {types}"

    assert {e["type"]["S"] for e in events} == set(EVENT_TYPES)
    assert all(EVENT_TIME.match(e["event_time"]["S"]) for e in events)
    assert all(e["event_time"]["S"] < format_event_time(dt.datetime.now(dt.UTC)) for e in events)
    for e in events:
        assert set(e["device"]["M"]) == {"id", "model", "firmware"}
        assert all(set(v) == {"S"} for v in e["device"]["M"].values())
    stages = [s["M"] for e in events if "stages" in e for s in e["stages"]["L"]]
    assert stages and all(set(s) == {"stage", "minutes"} for s in stages)
    assert {s["stage"]["S"] for s in stages} <= set(SLEEP_STAGES)
    assert any("." in e["distance_m"]["N"] for e in events if "distance_m" in e)
    assert any(len(e["trace_id"]["N"]) == 38 for e in events if "trace_id" in e)
    assert any(not e["note"]["S"].isascii() for e in events if "S" in e.get("note", {}))
    assert all(e["raw"]["B"] for e in events if "raw" in e)

    summary_types = attribute_types(scan(dynamodb, tables.daily_summary))
    for name, code in [("day", "S"), ("steps", "N"), ("sleep_minutes", "N"), ("updated_at", "S")]:
        assert code in summary_types.get(name, set())


def test_same_seed_same_items(dynamodb: Any, new_prefix: Callable[[], str]) -> None:
    worlds = [create_device_tables(dynamodb, new_prefix()) for _ in range(3)]
    for world, seed in zip(worlds, (4, 4, 5), strict=True):
        seed_devices(dynamodb, world, patients=3, events_per_patient=4, seed=seed, now=NOW)
    dumps = [(scan(dynamodb, w.device_events), scan(dynamodb, w.daily_summary)) for w in worlds]

    assert dumps[0] == dumps[1]
    assert dumps[0] != dumps[2]


# ---------------------------------------------------------------------- workload


def test_workload_stats_match_the_stream(dynamodb: Any, streams: Any, tables: DeviceTables) -> None:
    seed_devices(dynamodb, tables, patients=5, events_per_patient=4, seed=2)
    _, event_positions = stream_records(streams, tables.device_events_stream_arn)
    _, summary_positions = stream_records(streams, tables.daily_summary_stream_arn)
    config = DeviceWorkloadConfig(seed=3, patient_ids=(1, 5), summary_days=2, keep_journal=True)

    stats = DeviceWorkload(dynamodb, tables, config).run(operations=120)

    assert stats.operations == 120
    for kind in ChangeKind:  # the mix must exercise every kind on device_events
        assert stats.count(EVENTS_TABLE, kind) > 0, stats.by_table()
    assert stats.count(SUMMARY_TABLE, ChangeKind.INSERT) > 0
    assert stats.count(SUMMARY_TABLE, ChangeKind.UPDATE) > 0
    event_records, _ = stream_records(streams, tables.device_events_stream_arn, event_positions)
    summary_records, _ = stream_records(streams, tables.daily_summary_stream_arn, summary_positions)
    for records, table in ((event_records, EVENTS_TABLE), (summary_records, SUMMARY_TABLE)):
        names = Counter(r["eventName"] for r in records)
        assert names == {
            STREAM_EVENT_NAMES[k]: stats.count(table, k) for k in ChangeKind if stats.count(table, k)
        }
    assert per_key_events(event_records, "event_time") == per_key_journal(stats, EVENTS_TABLE)
    assert per_key_events(summary_records, "day") == per_key_journal(stats, SUMMARY_TABLE)
    # Overwrites change a value, so real DynamoDB would stream them too.
    for record in event_records + summary_records:
        if record["eventName"] == "MODIFY":
            assert record["dynamodb"]["OldImage"] != record["dynamodb"]["NewImage"]


def test_overwrites_and_deletes_hit_existing_items(dynamodb: Any, tables: DeviceTables) -> None:
    seed_devices(dynamodb, tables, patients=4, events_per_patient=5, seed=8)
    before = {(e["patient_id"]["N"], e["event_time"]["S"]) for e in scan(dynamodb, tables.device_events)}
    mix = DeviceOperationMix(new_event=0, overwrite_event=1, delete_event=1, update_summary=0)
    config = DeviceWorkloadConfig(seed=1, patient_ids=(1, 4), mix=mix, keep_journal=True)

    stats = DeviceWorkload(dynamodb, tables, config).run(operations=15)

    after = {(e["patient_id"]["N"], e["event_time"]["S"]) for e in scan(dynamodb, tables.device_events)}
    assert stats.count(EVENTS_TABLE, ChangeKind.INSERT) == 0
    assert stats.count(EVENTS_TABLE) == 15  # every operation changed an existing item
    deleted = {(str(c.key[0]), c.key[1]) for c in stats.journal if c.kind == ChangeKind.DELETE}
    assert len(deleted) == stats.count(EVENTS_TABLE, ChangeKind.DELETE) > 0
    assert after == before - deleted
    overwritten = {(str(c.key[0]), c.key[1]) for c in stats.journal if c.kind == ChangeKind.UPDATE}
    assert overwritten <= before


def test_same_workload_seed_same_changes(dynamodb: Any, new_prefix: Callable[[], str]) -> None:
    config = DeviceWorkloadConfig(seed=6, patient_ids=(1, 3), clock_start=NOW, keep_journal=True)
    results = []
    for _ in range(2):
        world = create_device_tables(dynamodb, new_prefix())
        seed_devices(dynamodb, world, patients=3, events_per_patient=3, seed=1, now=NOW)
        stats = DeviceWorkload(dynamodb, world, config).run(operations=40)
        results.append(
            (stats.journal, scan(dynamodb, world.device_events), scan(dynamodb, world.daily_summary))
        )

    assert results[0] == results[1]
    assert len(results[0][0]) == 40


def test_error_propagates_after_counting_confirmed_operations(
    dynamodb: Any, streams: Any, tables: DeviceTables
) -> None:
    seed_devices(dynamodb, tables, patients=3, events_per_patient=2, seed=3)
    mix = DeviceOperationMix(new_event=3, overwrite_event=1, delete_event=0, update_summary=1)
    workload = DeviceWorkload(dynamodb, tables, DeviceWorkloadConfig(seed=2, patient_ids=(1, 3), mix=mix))
    first = workload.run(operations=5)
    _, positions = stream_records(streams, tables.device_events_stream_arn)
    dynamodb.delete_table(TableName=tables.daily_summary)  # the next summary update fails

    with pytest.raises(DeviceWorkloadError, match="update_summary") as raised:
        workload.run(operations=200)

    partial = raised.value.stats
    assert partial.count(SUMMARY_TABLE) == 0
    assert partial.operations == partial.count(EVENTS_TABLE)  # the failed operation is not counted
    records, _ = stream_records(streams, tables.device_events_stream_arn, positions)
    assert len(records) == partial.count(EVENTS_TABLE)
    assert workload.totals.operations == first.operations + partial.operations
    assert workload.totals.count() == first.count() + partial.count()


def test_stop_event_ends_a_paced_run(dynamodb: Any, tables: DeviceTables) -> None:
    config = DeviceWorkloadConfig(seed=1, patient_ids=(1, 3), rate=40)
    workload = DeviceWorkload(dynamodb, tables, config)
    stop = threading.Event()
    stop.set()
    assert workload.run(stop=stop).operations == 0

    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        stats = workload.run(stop=stop)  # no other bound: only the event ends it
    finally:
        timer.cancel()
    assert stop.is_set()
    # Pacing lets operation k start at k / rate seconds, never earlier.
    assert stats.operations <= config.rate * stats.elapsed_seconds + 1  # type: ignore[operator]
    assert stats.count() == stats.operations


def test_config_is_frozen_and_validated() -> None:
    config = DeviceWorkloadConfig()
    with pytest.raises(pydantic.ValidationError):
        config.seed = 2  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        DeviceWorkloadConfig(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        DeviceWorkloadConfig(patient_ids=(5, 1))
    with pytest.raises(pydantic.ValidationError):
        DeviceWorkloadConfig(rate=0)
    with pytest.raises(pydantic.ValidationError):
        DeviceOperationMix(new_event=0, overwrite_event=0, delete_event=0, update_summary=0)
    with pytest.raises(pydantic.ValidationError):
        DeviceWorkloadConfig(clock_start=NOW.replace(tzinfo=None))


def test_seeded_items_are_recent_and_follow_the_reference_day(
    dynamodb: Any, new_prefix: Callable[[], str]
) -> None:
    """Times are relative to the reference "now" (today unless given), so "last 7 days" finds data."""
    worlds = [create_device_tables(dynamodb, new_prefix()) for _ in range(2)]
    seed_devices(dynamodb, worlds[0], patients=2, events_per_patient=5, seed=4)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    seed_devices(dynamodb, worlds[1], patients=2, events_per_patient=5, seed=4, now=later)
    now = dt.datetime.now(dt.UTC)
    for world, reference in ((worlds[0], now), (worlds[1], later)):
        events = scan(dynamodb, world.device_events)
        newest = max(parse_event_time(e["event_time"]["S"]) for e in events)
        oldest = min(parse_event_time(e["event_time"]["S"]) for e in events)
        assert reference - dt.timedelta(days=15) < oldest and newest < reference
        days = sorted(s["day"]["S"] for s in scan(dynamodb, world.daily_summary))
        assert days[-1] == (reference.date() - dt.timedelta(days=1)).isoformat()
