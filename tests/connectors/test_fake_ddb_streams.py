"""The fake DynamoDB Streams, driven through a real boto3 client: what a stream reader will meet.

Every response any test receives is checked against its operation's output shape in botocore's
model twice: the raw JSON by ``wire_errors`` (strict: unknown members, enums, lengths, wire types)
and botocore's own parse of it by ``ParamValidator``. The clock is fake, so nothing here is timed.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.fakes import fake_server
from tests.fakes.ddb_streams import (
    FakeStreams,
    FakeStreamsServer,
    service_model,
    start_in_subprocess,
)
from tests.fakes.ddb_streams_model import MAX_RESPONSE_BYTES, READER_WINDOW_SECONDS
from tests.fakes.ddb_streams_server import FRAMEWORK_NAMESPACES

T0 = 1_700_000_000.25


class FakeClock:
    """A settable clock: the fake's iterator ages, reader windows and trim horizons read it."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ResponseAudit(fake_server.ResponseAudit):
    """Responses against the DynamoDB Streams model; keeps the last raw body's size."""

    def __init__(self) -> None:
        super().__init__()
        self.last_body_size = 0
        self._error_codes = {s.name for s in service_model().error_shapes} | set(FRAMEWORK_NAMESPACES)

    def __call__(self, http_response: Any, parsed: dict[str, Any], model: Any, **kwargs: Any) -> None:
        self.last_body_size = len(http_response.content)
        super().__call__(http_response, parsed, model, **kwargs)

    def error_problems(self, http_response: Any, body: dict[str, Any], model: Any) -> list[str]:
        if set(body) != {"__type", "message"} or body["__type"].rsplit("#", 1)[-1] not in self._error_codes:
            return [f"unexpected error body {body}"]
        return []


def make_client(endpoint_url: str, audit: ResponseAudit | None = None, attempts: int = 1) -> Any:
    client = boto3.client(
        "dynamodbstreams",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # Client-side validation off, so that bad requests reach (and are judged by) the fake.
        # Config's "max_attempts" counts retries (1 still retries once); "total_max_attempts" counts calls.
        config=Config(
            retries={"total_max_attempts": attempts, "mode": "standard"}, parameter_validation=False
        ),
    )
    if audit is not None:
        client.meta.events.register("after-call", audit)
    return client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> FakeStreams:
    return FakeStreams(clock=clock)


@pytest.fixture
def server(fake: FakeStreams) -> Iterator[FakeStreamsServer]:
    with FakeStreamsServer(fake) as srv:
        yield srv


@pytest.fixture
def audit() -> Iterator[ResponseAudit]:
    audit = ResponseAudit()
    yield audit
    assert audit.checked > 0
    assert audit.problems == []


@pytest.fixture
def client(server: FakeStreamsServer, audit: ResponseAudit) -> Any:
    return make_client(server.endpoint_url, audit)


def item(pk: str, **attrs: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, **{k: {"S": v} for k, v in attrs.items()}}


def shards_of(client: Any, arn: str) -> dict[str, dict[str, Any]]:
    return {s["ShardId"]: s for s in client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]}


def iterator(client: Any, arn: str, shard: str, kind: str = "TRIM_HORIZON", **kw: Any) -> str:
    return str(
        client.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType=kind, **kw)["ShardIterator"]
    )


def read_shard(
    client: Any, clock: FakeClock, arn: str, shard: str, kind: str = "TRIM_HORIZON", **kw: Any
) -> tuple[list[dict[str, Any]], bool]:
    """Read a shard as one reader; returns (records, shard_ended). The reader then leaves its window."""
    it: str | None = iterator(client, arn, shard, kind, **kw)
    records: list[dict[str, Any]] = []
    while it is not None:
        page = client.get_records(ShardIterator=it)
        records += page["Records"]
        it = page.get("NextShardIterator")
        if it is not None and not page["Records"]:
            break  # caught up with an open shard
    clock.advance(READER_WINDOW_SECONDS)
    return records, it is None


def error_code(call: Callable[..., Any], **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def test_requests_that_break_the_service_model_are_rejected(client: Any, fake: FakeStreams) -> None:
    arn = fake.create_stream("orders", "pk")
    shard = fake.open_shard_ids(arn)[0]
    it = iterator(client, arn, shard)
    cases: list[tuple[Callable[..., Any], dict[str, Any], str]] = [
        (client.get_records, {"ShardIterator": it, "Limit": 0}, "Limit"),
        (client.get_records, {"ShardIterator": it, "Limit": 1001}, "1000"),
        (client.get_records, {"ShardIterator": "not an iterator"}, "ShardIterator"),
        (client.get_shard_iterator, {"StreamArn": arn, "ShardId": shard}, "ShardIteratorType"),
        (client.get_shard_iterator, {"StreamArn": arn, "ShardId": shard, "ShardIteratorType": "NEWEST"}, "enum"),
        (client.get_shard_iterator, {"StreamArn": arn, "ShardId": "shard-1", "ShardIteratorType": "LATEST"}, "ShardId"),
        (client.get_shard_iterator, {"StreamArn": arn, "ShardId": shard, "ShardIteratorType": "AT_SEQUENCE_NUMBER"}, "SequenceNumber"),
        (client.describe_stream, {"StreamArn": arn, "Limit": 101}, "100"),
        (client.list_streams, {"TableName": "a b"}, "pattern"),
    ]  # fmt: skip
    for call, kwargs, mention in cases:
        code, message = error_code(call, **kwargs)
        assert code == "ValidationException" and mention in message, (kwargs, message)


def raw_post(endpoint: str, target: str, body: bytes, signed: bool = True) -> tuple[int, dict[str, Any]]:
    headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0"}
    if signed:
        headers["Authorization"] = (
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/dynamodb/aws4_request"
        )
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint, body, headers, method="POST")) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_unsigned_unknown_and_malformed_requests_get_protocol_errors(server: FakeStreamsServer) -> None:
    url, target = server.endpoint_url, "DynamoDBStreams_20120810.ListStreams"
    assert raw_post(url, target, b"{}") == (200, {"Streams": []})
    status, body = raw_post(url, target, b"{}", signed=False)
    assert status == 400 and body["__type"].endswith("#MissingAuthenticationTokenException")
    status, body = raw_post(url, "DynamoDBStreams_20120810.DeleteStream", b"{}")
    assert status == 400 and body["__type"].endswith("#UnknownOperationException")
    status, body = raw_post(url, target, b"{not json")
    assert status == 400 and body["__type"].endswith("#SerializationException")
    status, body = raw_post(url, target, b'{"Limit": "3"}')
    assert status == 400 and body["__type"].endswith("#ValidationException") and "Limit" in body["message"]


def test_writes_produce_records_with_images_like_dynamodb(
    client: Any, fake: FakeStreams, clock: FakeClock
) -> None:
    arn = fake.create_stream("orders", "pk", "sk")
    key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    fake.put(arn, {**key, "v": {"S": "één ☃"}})
    clock.advance(0.5)
    fake.update(arn, key, {"v": {"S": "two"}, "extra": {"L": [{"NULL": True}, {"N": "-1.5"}]}})
    fake.update(arn, key, {"extra": None})
    fake.delete(arn, key)
    fake.put(arn, {"pk": {"S": "b"}, "sk": {"N": "2"}, "m": {"M": {"x": {"BOOL": False}}}})
    records, ended = read_shard(client, clock, arn, fake.open_shard_ids(arn)[0])

    assert not ended
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "MODIFY", "REMOVE", "INSERT"]
    images = [(r["dynamodb"].get("OldImage"), r["dynamodb"].get("NewImage")) for r in records]
    v1, v2 = {**key, "v": {"S": "één ☃"}}, {**key, "v": {"S": "two"}}
    v2x = {**v2, "extra": {"L": [{"NULL": True}, {"N": "-1.5"}]}}
    assert images[:4] == [(None, v1), (v1, v2x), (v2x, v2), (v2, None)]
    assert [r["dynamodb"]["Keys"] for r in records][:4] == [key] * 4
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert seqs == sorted(set(seqs)) and all(len(r["dynamodb"]["SequenceNumber"]) >= 21 for r in records)
    for r in records:
        assert re.fullmatch(r"[0-9a-f]{32}", r["eventID"])
        assert (r["eventVersion"], r["eventSource"], r["awsRegion"]) == ("1.1", "aws:dynamodb", "us-east-1")
        assert r["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES" and r["dynamodb"]["SizeBytes"] > 0
        # Whole seconds, as the real service sends (moto sends milliseconds).
        assert r["dynamodb"]["ApproximateCreationDateTime"] == datetime.fromtimestamp(int(T0), UTC)
    assert fake.items(arn) == {
        ("b", Decimal(2)): {"pk": {"S": "b"}, "sk": {"N": "2"}, "m": {"M": {"x": {"BOOL": False}}}}
    }


def test_writes_that_change_nothing_emit_nothing(client: Any, fake: FakeStreams, clock: FakeClock) -> None:
    arn = fake.create_stream("orders", "pk")
    assert fake.put(arn, item("a", v="1")) is not None
    assert fake.put(arn, item("a", v="1")) is None
    assert fake.update(arn, item("a"), {"v": {"S": "1"}, "gone": None}) is None
    assert fake.delete(arn, item("missing")) is None
    records, _ = read_shard(client, clock, arn, fake.open_shard_ids(arn)[0])
    assert [r["eventName"] for r in records] == ["INSERT"]


def test_split_closes_the_parent_and_routes_each_key_to_one_child(
    client: Any, fake: FakeStreams, clock: FakeClock
) -> None:
    arn = fake.create_stream("orders", "pk")
    (parent,) = fake.open_shard_ids(arn)
    keys = [f"k{i}" for i in range(40)]
    for k in keys:
        fake.put(arn, item(k, v="before"))
    last_parent_seq = str(fake.put(arn, item("k0", v="before, again")))
    children = fake.split(arn)
    for k in keys:
        fake.put(arn, item(k, v="after"))
        fake.put(arn, item(k, v="after, again"))  # a second write must follow the first into the same child

    shards = shards_of(client, arn)
    assert list(shards) == [parent, *children]
    assert shards[parent]["SequenceNumberRange"]["EndingSequenceNumber"] == last_parent_seq
    for child in children:
        assert (
            shards[child]["ParentShardId"] == parent
            and "EndingSequenceNumber" not in shards[child]["SequenceNumberRange"]
        )
        assert int(shards[child]["SequenceNumberRange"]["StartingSequenceNumber"]) > int(last_parent_seq)
    parent_records, ended = read_shard(client, clock, arn, parent)
    assert ended and len(parent_records) == 41
    assert all(r["dynamodb"]["NewImage"]["v"]["S"].startswith("before") for r in parent_records)
    child_keys = []
    for child in children:
        records, ended = read_shard(client, clock, arn, child)
        assert (
            not ended
            and records
            and all(r["dynamodb"]["NewImage"]["v"]["S"].startswith("after") for r in records)
        )
        assert min(int(r["dynamodb"]["SequenceNumber"]) for r in records) > int(last_parent_seq)
        child_keys.append({r["dynamodb"]["Keys"]["pk"]["S"] for r in records})
    assert child_keys[0].isdisjoint(child_keys[1]) and child_keys[0] | child_keys[1] == set(keys)


def test_only_a_closed_shard_read_to_its_end_stops_handing_out_iterators(
    client: Any, fake: FakeStreams, clock: FakeClock
) -> None:
    arn = fake.create_stream("orders", "pk")
    (parent,) = fake.open_shard_ids(arn)
    empty_open = client.get_records(ShardIterator=iterator(client, arn, parent, "LATEST"))
    assert empty_open["Records"] == [] and "NextShardIterator" in empty_open
    for k in "abcde":
        fake.put(arn, item(k))
    fake.split(arn, parent)
    clock.advance(READER_WINDOW_SECONDS)
    pages, it = [], iterator(client, arn, parent)
    while it is not None:
        page = client.get_records(ShardIterator=it, Limit=2)
        pages.append(len(page["Records"]))
        it = page.get("NextShardIterator")
    assert pages == [2, 2, 1]
    at_end = client.get_records(ShardIterator=iterator(client, arn, parent, "LATEST"))
    assert at_end["Records"] == [] and "NextShardIterator" not in at_end


def test_iterators_expire_and_resume_after_the_last_sequence_number(
    client: Any, fake: FakeStreams, clock: FakeClock
) -> None:
    arn = fake.create_stream("orders", "pk")
    (shard,) = fake.open_shard_ids(arn)
    for k in "abc":
        fake.put(arn, item(k))
    page = client.get_records(ShardIterator=iterator(client, arn, shard), Limit=1)
    clock.advance(900.5)
    with pytest.raises(client.exceptions.ExpiredIteratorException):
        client.get_records(ShardIterator=page["NextShardIterator"])
    last_seq = page["Records"][-1]["dynamodb"]["SequenceNumber"]
    resumed = iterator(client, arn, shard, "AFTER_SEQUENCE_NUMBER", SequenceNumber=last_seq)
    clock.advance(READER_WINDOW_SECONDS)
    assert [
        r["dynamodb"]["Keys"]["pk"]["S"] for r in client.get_records(ShardIterator=resumed)["Records"]
    ] == ["b", "c"]
    fake.expire_iterators()
    with pytest.raises(client.exceptions.ExpiredIteratorException):
        client.get_records(ShardIterator=resumed)
    assert client.get_records(ShardIterator=iterator(client, arn, shard, "LATEST"))["Records"] == []


def test_throttled_operations_raise_limit_exceeded_and_standard_retries_absorb_them(
    client: Any, fake: FakeStreams, server: FakeStreamsServer
) -> None:
    arn = fake.create_stream("orders", "pk")
    it = iterator(client, arn, fake.open_shard_ids(arn)[0])
    fake.throttle("GetRecords", 2)
    for _ in range(2):
        with pytest.raises(client.exceptions.LimitExceededException):
            client.get_records(ShardIterator=it)
    assert client.get_records(ShardIterator=it)["Records"] == []
    # botocore's default (standard) retry mode treats LimitExceededException as throttling.
    fake.throttle("DescribeStream", 1)
    retrying = make_client(server.endpoint_url, attempts=3)
    assert retrying.describe_stream(StreamArn=arn)["ResponseMetadata"]["RetryAttempts"] == 1


def test_a_third_reader_of_a_shard_within_a_second_is_throttled(
    client: Any, fake: FakeStreams, clock: FakeClock
) -> None:
    arn = fake.create_stream("orders", "pk")
    fake.put(arn, item("a"))
    (shard,) = fake.open_shard_ids(arn)
    first, second, third = (iterator(client, arn, shard) for _ in range(3))
    page = client.get_records(ShardIterator=first)
    client.get_records(ShardIterator=second)
    with pytest.raises(client.exceptions.LimitExceededException):
        client.get_records(ShardIterator=third)
    client.get_records(ShardIterator=page["NextShardIterator"])  # the first reader, continuing
    (child, _) = fake.split(arn)
    client.get_records(ShardIterator=iterator(client, arn, child))  # other shards have their own readers
    clock.advance(READER_WINDOW_SECONDS)
    assert len(client.get_records(ShardIterator=third)["Records"]) == 1


def test_trimmed_positions_are_errors_and_trim_horizon_starts_at_the_oldest_record(
    client: Any, fake: FakeStreams, clock: FakeClock
) -> None:
    arn = fake.create_stream("orders", "pk")
    (shard,) = fake.open_shard_ids(arn)
    old = [fake.put(arn, item(k)) for k in ("a1", "a2", "a3")]
    clock.advance(100)
    new = [fake.put(arn, item(k)) for k in ("b1", "b2")]
    stale = iterator(client, arn, shard)
    assert fake.trim(arn, older_than_seconds=50) == 3

    for kind, seq in (
        ("AFTER_SEQUENCE_NUMBER", old[1]),
        ("AT_SEQUENCE_NUMBER", old[2]),
        ("AFTER_SEQUENCE_NUMBER", old[2]),
    ):
        with pytest.raises(client.exceptions.TrimmedDataAccessException):
            iterator(client, arn, shard, kind, SequenceNumber=seq)
    with pytest.raises(client.exceptions.TrimmedDataAccessException):
        client.get_records(ShardIterator=stale)
    clock.advance(READER_WINDOW_SECONDS)
    records, _ = read_shard(client, clock, arn, shard)
    assert [r["dynamodb"]["SequenceNumber"] for r in records] == new
    records, _ = read_shard(client, clock, arn, shard, "AFTER_SEQUENCE_NUMBER", SequenceNumber=new[0])
    assert [r["dynamodb"]["SequenceNumber"] for r in records] == new[1:]
    fake.trim(arn, older_than_seconds=0)
    assert list(shards_of(client, arn)) == [shard]  # an open shard never vanishes
    assert read_shard(client, clock, arn, shard) == ([], False)


def test_a_closed_shard_past_the_trim_horizon_vanishes(
    client: Any, fake: FakeStreams, clock: FakeClock
) -> None:
    arn = fake.create_stream("orders", "pk")
    (parent,) = fake.open_shard_ids(arn)
    fake.put(arn, item("a"))
    children = fake.split(arn)
    stale = iterator(client, arn, parent)
    clock.advance(100)
    fake.put(arn, item("a", v="2"))
    fake.trim(arn, older_than_seconds=50)

    shards = shards_of(client, arn)
    assert list(shards) == list(children) and {s["ParentShardId"] for s in shards.values()} == {parent}
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        iterator(client, arn, parent)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_records(ShardIterator=stale)


def test_get_records_stops_at_one_megabyte(
    client: Any, fake: FakeStreams, clock: FakeClock, audit: ResponseAudit
) -> None:
    arn = fake.create_stream("orders", "pk")
    big = "ü" * 100_000  # 200 kB of UTF-8: the cap counts bytes, not characters
    for i in range(12):
        fake.put(arn, item(f"k{i:02d}", blob=big))
    page = client.get_records(ShardIterator=iterator(client, arn, fake.open_shard_ids(arn)[0]))
    assert 1 <= len(page["Records"]) < 12
    # The envelope adds the iterator (at most 2048 characters) and a few bytes; one more record
    # (over 200 kB) would not have fitted.
    assert MAX_RESPONSE_BYTES - 200_000 < audit.last_body_size <= MAX_RESPONSE_BYTES + 2100
    rest, _ = read_shard(
        client,
        clock,
        arn,
        fake.open_shard_ids(arn)[0],
        "AFTER_SEQUENCE_NUMBER",
        SequenceNumber=page["Records"][-1]["dynamodb"]["SequenceNumber"],
    )
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in page["Records"] + rest] == [
        f"k{i:02d}" for i in range(12)
    ]


def test_get_records_returns_at_most_limit_records(client: Any, fake: FakeStreams) -> None:
    arn = fake.create_stream("devices", "pk")
    emitted = fake.seed_synthetic(arn, 2500, lambda i: item(f"k{i % 2000}", n=str(i)))
    assert emitted == 2500 and len(fake.items(arn)) == 2000
    it: str | None = iterator(client, arn, fake.open_shard_ids(arn)[0])
    sizes = []
    for limit in (None, 7, None, None):
        page = (
            client.get_records(ShardIterator=it)
            if limit is None
            else client.get_records(ShardIterator=it, Limit=limit)
        )
        sizes.append(len(page["Records"]))
        it = page["NextShardIterator"]
    assert sizes == [1000, 7, 1000, 493]
    assert all(r["eventName"] == "MODIFY" and "OldImage" in r["dynamodb"] for r in page["Records"])


def test_describe_stream_pages_through_shards_parents_first(client: Any, fake: FakeStreams) -> None:
    arn = fake.create_stream("orders", "pk")
    for _ in range(3):
        fake.split(arn)
    everything = client.describe_stream(StreamArn=arn)["StreamDescription"]
    assert len(everything["Shards"]) == 15 and "LastEvaluatedShardId" not in everything
    assert everything["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert (everything["StreamStatus"], everything["TableName"]) == ("ENABLED", "orders")
    pages: list[list[str]] = []
    start: dict[str, str] = {}
    while True:
        desc = client.describe_stream(StreamArn=arn, Limit=4, **start)["StreamDescription"]
        pages.append([s["ShardId"] for s in desc["Shards"]])
        if "LastEvaluatedShardId" not in desc:
            break
        start = {"ExclusiveStartShardId": desc["LastEvaluatedShardId"]}
    assert [len(p) for p in pages] == [4, 4, 4, 3]
    order = [shard_id for page in pages for shard_id in page]
    assert order == [s["ShardId"] for s in everything["Shards"]]
    assert all(order.index(s["ParentShardId"]) < order.index(s["ShardId"]) for s in everything["Shards"][1:])
    children = client.describe_stream(
        StreamArn=arn, ShardFilter={"Type": "CHILD_SHARDS", "ShardId": order[0]}
    )
    assert [s["ShardId"] for s in children["StreamDescription"]["Shards"]] == order[1:3]


def test_list_streams_filters_by_table_and_pages(client: Any, fake: FakeStreams) -> None:
    first, other, second = (fake.create_stream(t, "pk") for t in ("orders", "users", "orders"))
    assert first != second  # same table, same millisecond: the labels still differ
    assert [s["StreamArn"] for s in client.list_streams()["Streams"]] == [first, other, second]
    page = client.list_streams(TableName="orders", Limit=1)
    assert [s["StreamArn"] for s in page["Streams"]] == [first] and page["LastEvaluatedStreamArn"] == first
    rest = client.list_streams(TableName="orders", ExclusiveStartStreamArn=first)
    assert [s["StreamArn"] for s in rest["Streams"]] == [second] and "LastEvaluatedStreamArn" not in rest


def test_every_iterator_type_starts_where_the_service_says(
    client: Any, fake: FakeStreams, clock: FakeClock
) -> None:
    arn = fake.create_stream("orders", "pk")
    (shard,) = fake.open_shard_ids(arn)
    fake.put(arn, item("r1"))
    clock.advance(10)
    r2 = fake.put(arn, item("r2"))
    fake.put(arn, item("r3"))
    latest = client.get_records(ShardIterator=iterator(client, arn, shard, "LATEST"))
    fake.put(arn, item("r4"))
    assert [
        r["dynamodb"]["Keys"]["pk"]["S"]
        for r in client.get_records(ShardIterator=latest["NextShardIterator"])["Records"]
    ] == ["r4"]
    starts: list[tuple[str, dict[str, Any], list[str]]] = [
        ("AT_SEQUENCE_NUMBER", {"SequenceNumber": r2}, ["r2", "r3", "r4"]),
        ("AFTER_SEQUENCE_NUMBER", {"SequenceNumber": r2}, ["r3", "r4"]),
        ("AT_TIMESTAMP", {"Timestamp": datetime.fromtimestamp(T0 + 5, UTC)}, ["r2", "r3", "r4"]),
        ("TRIM_HORIZON", {}, ["r1", "r2", "r3", "r4"]),
    ]  # fmt: skip
    for kind, extra, expected in starts:
        clock.advance(READER_WINDOW_SECONDS)
        records, _ = read_shard(client, clock, arn, shard, kind, **extra)
        assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in records] == expected, kind
    code, _ = error_code(
        client.get_shard_iterator,
        StreamArn=arn,
        ShardId=shard,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber="9" * 30,
    )
    assert code == "ValidationException"  # a sequence number outside the shard's range


def test_the_fake_runs_in_its_own_process_for_benchmarks() -> None:
    endpoint, arn, proc = start_in_subprocess(synthetic_records=3000, shards=3)
    try:
        audit = ResponseAudit()
        client = make_client(endpoint, audit)
        shards = client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        open_shards = [s["ShardId"] for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
        assert len(shards) == 5 and len(open_shards) == 3
        names: list[str] = []
        for shard in open_shards:
            it: str | None = iterator(client, arn, shard)
            while it is not None:
                page = client.get_records(ShardIterator=it)
                names += [r["eventName"] for r in page["Records"]]
                it = page["NextShardIterator"] if page["Records"] else None
        assert len(names) == 3000 and names.count("MODIFY") == 600
        assert audit.problems == []
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
