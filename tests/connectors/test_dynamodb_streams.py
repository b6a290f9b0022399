"""The stream reader against the fake DynamoDB Streams service: splits, expiry, throttling, trimming.

moto's stream has one shard that never splits, iterators that never expire and no trimming, so
these behaviours are tested against `tests.fakes.ddb_streams` (which validates every request
against the botocore service model). Each test drives the real source's `stream()` into a real
local lake and compares the merged current state with the fake's items, and the change log with
the records the fake emitted — no loss, no duplicate, per-item order kept.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.dynamodb.config import DynamoDBSourceConfig
from connectors.dynamodb.layout import KeyAttribute
from connectors.dynamodb.offset import StreamPositions, StreamTip
from connectors.dynamodb.source import DynamoDBSource
from connectors.events import Batch, TableChanges
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.source import PositionLostError
from tests.fakes.ddb_streams import FakeStreams, FakeStreamsServer

TABLE = "device_events"
KEYS = (KeyAttribute("pk", "S"), KeyAttribute("sk", "N"))


class Harness:
    """A fake stream, a local lake, and a source that reads the one into the other."""

    def __init__(self, model: FakeStreams, endpoint: str, lake_root: Path) -> None:
        self.model = model
        self.endpoint = endpoint
        self.arn = model.create_stream(TABLE, "pk", "sk")
        self.lake = Lake(LakeConfig(root=str(lake_root)))
        self.counter = itertools.count()
        self.expected_ops: dict[tuple[str, int], list[str]] = {}
        self.source = self.new_source()
        # The lake starts from an empty snapshot taken before the first record (position: nothing).
        writer = self.lake.writer("fake")
        empty = TableChanges(
            self.source._layouts[TABLE].schema(),
            self.source._layouts[TABLE].schema().arrow_schema().empty_table(),
        )
        writer.write(Batch(None, StreamPositions.empty([TABLE]), (empty,), snapshot=frozenset({empty.table})))

    def new_source(self, **overrides: Any) -> DynamoDBSource:
        """A fresh source, as a restarted process would make it."""
        settings: dict[str, Any] = {
            "name": "fake",
            "tables": (TABLE,),
            "aws": {"streams_endpoint_url": self.endpoint, "endpoint_url": self.endpoint,
                    "access_key_id": "testing", "secret_access_key": "testing"},
            "batch_max_rows": 40,
            "batch_max_seconds": 0.1,
            "poll_min_seconds": 0.01,
            "poll_max_seconds": 0.05,
            "discover_seconds": 0.2,
            # Throttles must be outlasted as a restarted process outlasts them: a new source (or a
            # renewed iterator) is a new reader, and two readers seen in the service's last second
            # throttle a third until one ages out. 0.05+0.1+0.2+0.4+0.4 s outlasts that window; the
            # default config's budget is longer still.
            "retry": {"attempts": 5, "initial_seconds": 0.05, "max_seconds": 0.4},
        }  # fmt: skip
        config = DynamoDBSourceConfig(**(settings | overrides))
        source = DynamoDBSource(config)
        source.attach({TABLE: self.arn}, {TABLE: KEYS})
        source.adopt_lake_schemas(self.lake.changelog_schemas("fake"))
        source._ready()
        return source

    def put(self, pk: str, sk: int) -> None:
        old = self.model.items(self.arn).get((pk, str(sk))) or self.model.items(self.arn).get((pk, sk))
        n = next(self.counter)
        self.model.put(
            self.arn, {"pk": {"S": pk}, "sk": {"N": str(sk)}, "n": {"N": str(n)}, "tag": {"SS": [f"t{n}"]}}
        )
        self.expected_ops.setdefault((pk, sk), []).append("U" if old is not None else "I")

    def delete(self, pk: str, sk: int) -> None:
        if self.model.delete(self.arn, {"pk": {"S": pk}, "sk": {"N": str(sk)}}) is not None:
            self.expected_ops.setdefault((pk, sk), []).append("D")

    def drain(self, after_batch: Any = None, until: dt.datetime | None = None) -> int:
        """Read everything up to now into the lake (a bounded run); returns commits made."""
        writer = self.lake.writer("fake")
        state = writer.last_committed()
        assert state.offset is not None
        commits = 0
        tip = StreamTip(until or dt.datetime.now(dt.UTC))
        for batch in self.source.stream(state.offset, state.floors, until=tip):
            if writer.write(batch) is not None:
                commits += 1
            if after_batch is not None:
                after_batch()
        return commits

    def check(self) -> None:
        """Current state == the fake's items; change log == the emitted records, in per-key order."""
        self.lake.current("fake").merge()
        state = self.lake.current("fake").read(f"dynamodb__{TABLE}")
        got = {(r["pk"], int(r["sk"])): int(r["n"]) for r in state.to_pylist()}
        truth = {
            (i["pk"]["S"], int(i["sk"]["N"])): int(i["n"]["N"]) for i in self.model.items(self.arn).values()
        }
        assert got == truth
        log = self.lake.read_changelog("fake", f"dynamodb__{TABLE}").sort_by("_seq")
        positions = log["_position"].to_pylist()
        assert len(positions) == len(set(positions)), "a stream record landed twice"
        ops: dict[tuple[str, int], list[str]] = {}
        for row in log.select(["pk", "sk", "Op"]).to_pylist():
            ops.setdefault((row["pk"], int(row["sk"])), []).append(row["Op"])
        assert ops == self.expected_ops


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    model = FakeStreams()
    server = FakeStreamsServer(model)
    server.start()
    try:
        yield Harness(model, server.endpoint_url, tmp_path / "lake")
    finally:
        server.stop()


def _writes(h: Harness, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        h.put(f"p{i % 13}", i % 7)
        if i % 5 == 4:
            h.delete(f"p{(i * 3) % 13}", (i * 3) % 7)


def test_parents_are_read_before_children_across_splits(harness: Harness) -> None:
    _writes(harness, 60)
    harness.drain()  # reads the open root shard
    harness.check()
    _writes(harness, 40, start=60)
    children = harness.model.split(harness.arn)  # the root closes with unread records
    _writes(harness, 60, start=100)  # these land in the two open children
    harness.model.split(harness.arn, children[0])  # one child splits again
    _writes(harness, 60, start=160)
    harness.source = harness.new_source()  # a restart in the middle of the lineage
    harness.drain()
    harness.check()
    positions = harness.lake.writer("fake").last_committed().offset
    assert isinstance(positions, StreamPositions)
    shards = positions.shards(TABLE)
    assert len(shards) == 5 and sum(p.finished for p in shards.values()) == 2  # root + first child
    # Open children were read in parallel, and records after the last commit were read again.
    assert len(harness.source.reader_stats.records_seen[TABLE]) >= 3


def test_expired_iterators_are_recreated_from_the_last_sequence_number(harness: Harness) -> None:
    """Every iterator issued so far expires every 300 ms while records keep arriving.

    Expiry by the fake's switch rather than by a short lifetime: a lifetime of milliseconds would
    also expire the fresh iterator of a renewal on a loaded machine, which AWS's 15 minutes never do.
    """
    _writes(harness, 100)
    done = threading.Event()

    def keep_writing_and_expiring() -> None:
        for i in range(8):
            _writes(harness, 1, start=200 + i)
            harness.model.expire_iterators()
            if done.wait(0.3):
                return

    worker = threading.Thread(target=keep_writing_and_expiring)
    worker.start()
    try:
        harness.drain(until=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2.0))
    finally:
        done.set()
        worker.join()
    renewed = harness.source.reader_stats.iterators_renewed
    harness.drain()  # whatever was written after `until`
    assert renewed >= 3
    harness.check()


def test_throttling_backs_off_and_carries_on(harness: Harness) -> None:
    _writes(harness, 80)
    harness.model.throttle("GetRecords", 8)  # more than botocore's own attempts (5): the reader backs off
    harness.drain()
    assert harness.source.reader_stats.throttled >= 1
    harness.check()


def test_a_trimmed_position_is_an_error_naming_the_reseed_command(harness: Harness) -> None:
    _writes(harness, 30)
    harness.drain()
    _writes(harness, 30, start=30)
    harness.model.trim(harness.arn, older_than_seconds=-1)  # everything is older than the horizon
    harness.source = harness.new_source()
    with pytest.raises(PositionLostError) as err:
        harness.drain()
    assert "trimmed" in str(err.value) and "lakehouse resnapshot --source fake" in str(err.value)


def test_a_vanished_unfinished_shard_is_an_error(harness: Harness) -> None:
    _writes(harness, 30)
    harness.drain()
    _writes(harness, 10, start=30)  # unread records in the root ...
    harness.model.split(harness.arn)  # ... which closes ...
    harness.model.trim(harness.arn, older_than_seconds=-1)  # ... and is trimmed away entirely
    harness.source = harness.new_source()
    with pytest.raises(PositionLostError) as err:
        harness.drain()
    assert "are gone" in str(err.value) and "resnapshot" in str(err.value)


def test_a_never_read_shard_whose_records_were_trimmed_is_an_error(harness: Harness) -> None:
    """A shard first seen empty is stored as "nothing taken"; if its first records are trimmed
    before the next read, the reader must notice instead of starting at the new horizon."""
    harness.drain()  # the root shard is known, nothing taken
    _writes(harness, 20)
    harness.model.trim(harness.arn, older_than_seconds=-1)
    _writes(harness, 5, start=20)
    harness.source = harness.new_source()
    with pytest.raises(PositionLostError):
        harness.drain()


def test_replaying_from_an_old_position_commits_nothing(harness: Harness) -> None:
    _writes(harness, 50)
    harness.drain()
    first = harness.lake.writer("fake").last_committed()
    _writes(harness, 50, start=50)
    harness.drain()
    writer = harness.lake.writer("fake")
    assert first.offset is not None
    # Both drains read the shard within the service's 1 s window, so the replay is a third reader,
    # throttled until one of them ages out (the harness's retry budget outlasts that).
    replayer = harness.new_source()
    replayed = [
        writer.write(b) for b in replayer.stream(first.offset, {}, until=StreamTip(dt.datetime.now(dt.UTC)))
    ]
    assert replayed and all(r is None for r in replayed)
    harness.check()
