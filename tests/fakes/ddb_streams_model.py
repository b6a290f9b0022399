"""In-memory DynamoDB Streams whose shards split, iterators expire, readers throttle and records trim.

moto's streams have one shard that never splits, iterators that never expire and no trimming
(shared PITFALLS.md), so a stream reader's lineage, expiry, throttling and trim handling cannot be
tested there. This model behaves like the service in those respects; ``ddb_streams_server`` puts
the real JSON wire protocol in front of it, and ``ddb_streams_records`` holds the types its state
is made of (errors, shards, streams, iterators) and the record encoding. Every record is serialised
to its final wire JSON once, when it is written, so GetRecords only joins bytes. One lock guards all
state.

How the service's limits are modelled (all times come from the injected ``clock``):
- Iterators carry their issue time; older than ``iterator_ttl_seconds`` -> ExpiredIteratorException.
- "At most 2 readers per shard": a reader is the lineage of one GetShardIterator call (each
  NextShardIterator inherits it). A GetRecords call from a lineage not seen on that shard within the
  last second, while ``max_readers_per_shard`` other lineages were, -> LimitExceededException.
- ``trim`` drops records older than a horizon; a closed shard closed before the horizon with no
  records left disappears. Positions at or before the newest trimmed record are errors, never skipped.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from tests.fakes.ddb_streams_records import (
    ExpiredIteratorError,
    FakeUsageError,
    Item,
    KeyTuple,
    LimitExceededError,
    RequestValidationError,
    ResourceNotFoundError,
    Shard,
    ShardIterator,
    Stream,
    StreamsError,
    TrimmedDataAccessError,
    dumps,
    encode_record,
    key_hash,
    key_value,
)

# The errors and item types are re-exported: tests.fakes.ddb_streams and the server import them here.
__all__ = [
    "FIRST_SEQUENCE_NUMBER",
    "HASH_SPACE",
    "MAX_PAGE",
    "MAX_RECORDS_PER_CALL",
    "MAX_RESPONSE_BYTES",
    "OPERATIONS",
    "READER_WINDOW_SECONDS",
    "ExpiredIteratorError",
    "FakeStreams",
    "FakeUsageError",
    "Item",
    "KeyTuple",
    "LimitExceededError",
    "RequestValidationError",
    "ResourceNotFoundError",
    "StreamsError",
    "TrimmedDataAccessError",
]

FIRST_SEQUENCE_NUMBER = 10**20  # 21 digits: the service model's SequenceNumber has min length 21
MAX_RECORDS_PER_CALL = 1000
MAX_RESPONSE_BYTES = 1024 * 1024  # GetRecords returns at most 1 MB of records
MAX_PAGE = 100  # DescribeStream and ListStreams Limit upper bound
READER_WINDOW_SECONDS = 1.0
HASH_SPACE = 1 << 64
OPERATIONS = frozenset({"DescribeStream", "GetRecords", "GetShardIterator", "ListStreams"})


def _page_limit(limit: int | None, maximum: int) -> int:
    if limit is None:
        return maximum
    if limit > maximum:
        raise RequestValidationError(
            f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
            f"Member must have value less than or equal to {maximum}"
        )
    return limit


def _start_after(ids: list[str], exclusive_start: str | None) -> int:
    if exclusive_start is None:
        return 0
    if exclusive_start in ids:
        return ids.index(exclusive_start) + 1
    return next((i for i, x in enumerate(ids) if x > exclusive_start), len(ids))


class FakeStreams:
    """The service state: streams, shards, records, iterators, throttles. Thread-safe."""

    def __init__(
        self,
        region: str = "us-east-1",
        account: str = "123456789012",
        iterator_ttl_seconds: float = 900.0,
        max_readers_per_shard: int = 2,
        clock: Callable[[], float] = time.time,
        first_sequence_number: int = FIRST_SEQUENCE_NUMBER,
    ) -> None:
        self.region, self.account = region, account
        self._ttl, self._max_readers, self._clock = iterator_ttl_seconds, max_readers_per_shard, clock
        self._lock = threading.RLock()
        self._streams: dict[str, Stream] = {}
        self._next_seq = first_sequence_number  # one counter: children always follow their parents
        self._next_serial = 0  # iterator serial numbers, also reader lineage ids
        self._expired_below = 0
        self._shards_made = 0
        self._throttles: dict[str, int] = {}

    # ---- test controls -------------------------------------------------------------------
    def create_stream(
        self, table: str, hash_key: str, range_key: str | None = None, label: str | None = None
    ) -> str:
        """Create a NEW_AND_OLD_IMAGES stream with one open shard; returns its StreamArn.

        `label` (the ARN's last part) lets a test serve the stream of a table that lives on
        another server (moto), under the ARN that server's DescribeTable reports.
        """
        with self._lock:
            now = self._clock()
            millis = int(now * 1000)
            if label is not None:
                arn = f"arn:aws:dynamodb:{self.region}:{self.account}:table/{table}/stream/{label}"
                if arn in self._streams:
                    raise FakeUsageError(f"stream {arn} exists")
            while label is None:  # the label is the creation time; two streams of a table need two
                candidate = datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
                arn = f"arn:aws:dynamodb:{self.region}:{self.account}:table/{table}/stream/{candidate}"
                if arn not in self._streams:
                    label = candidate
                millis += 1
            keys = (hash_key,) if range_key is None else (hash_key, range_key)
            stream = Stream(arn, label, table, keys, now)
            self._new_shard(stream, None, (0, HASH_SPACE), now)
            stream.open_shards = list(stream.shards.values())
            self._streams[arn] = stream
            return arn

    def put(self, arn: str, item: Item) -> str | None:
        """PutItem: INSERT or MODIFY; returns the record's SequenceNumber, None if nothing changed."""
        with self._lock:
            return self._write(self._stream(arn), copy.deepcopy(item), self._clock())

    def delete(self, arn: str, key: Item) -> str | None:
        """DeleteItem: REMOVE with OldImage; a missing key emits nothing (None)."""
        with self._lock:
            stream = self._stream(arn)
            key_tuple = self._key_of(stream, key)
            old = stream.items.pop(key_tuple, None)
            if old is None:
                return None
            return self._append(stream, key_tuple, "REMOVE", None, old, self._clock())

    def update(self, arn: str, key: Item, changes: Mapping[str, Any]) -> str | None:
        """UpdateItem SET/REMOVE: each change sets an attribute (DynamoDB JSON) or removes it (None)."""
        with self._lock:
            stream = self._stream(arn)
            if set(changes) & set(stream.key_names):
                raise FakeUsageError("key attributes cannot be updated")
            old = stream.items.get(self._key_of(stream, key))
            item = (
                copy.deepcopy(old)
                if old is not None
                else {n: copy.deepcopy(key[n]) for n in stream.key_names}
            )
            for name, value in changes.items():
                if value is None:
                    item.pop(name, None)
                else:
                    item[name] = copy.deepcopy(value)
            return self._write(stream, item, self._clock())

    def seed_synthetic(self, arn: str, n_records: int, make_item: Callable[[int], Item]) -> int:
        """Put ``make_item(i)`` for i in range(n_records) under one lock and clock reading, without
        copying the items; returns how many records were emitted."""
        with self._lock:
            stream, now = self._stream(arn), self._clock()
            return sum(self._write(stream, make_item(i), now) is not None for i in range(n_records))

    def items(self, arn: str) -> dict[KeyTuple, Item]:
        """The table's current items by key tuple: the truth a reader's output is compared against."""
        with self._lock:
            return dict(self._stream(arn).items)

    def open_shard_ids(self, arn: str) -> list[str]:
        with self._lock:
            return [s.shard_id for s in self._stream(arn).open_shards]

    def split(self, arn: str, shard_id: str | None = None) -> tuple[str, ...]:
        """Close ``shard_id`` (default: every open shard) and open two children per closed shard,
        each owning half its key-hash range; returns the new child ids (two per split shard)."""
        with self._lock:
            stream, now = self._stream(arn), self._clock()
            if shard_id is None:
                parents = list(stream.open_shards)
            elif (shard := stream.shards.get(shard_id)) is not None and shard.end_seq is None:
                parents = [shard]
            else:
                raise FakeUsageError(f"{shard_id} is not an open shard of {arn}")
            children: list[str] = []
            for parent in parents:
                parent.end_seq = (
                    parent.seqs[-1] if parent.seqs else parent.trimmed_through or parent.start_seq
                )
                parent.closed_at = now
                lo, hi = parent.hash_range
                mid = (lo + hi) // 2
                for half in ((lo, mid), (mid, hi)):
                    children.append(self._new_shard(stream, parent.shard_id, half, now).shard_id)
            stream.open_shards = [s for s in stream.shards.values() if s.end_seq is None]
            return tuple(children)

    def trim(self, arn: str, older_than_seconds: float) -> int:
        """Drop records older than ``clock() - older_than_seconds``; returns how many were dropped."""
        with self._lock:
            stream = self._stream(arn)
            horizon = self._clock() - older_than_seconds
            dropped = 0
            for shard in list(stream.shards.values()):
                n = bisect.bisect_left(shard.times, horizon)
                if n:
                    shard.trimmed_through = shard.seqs[n - 1]
                    del shard.seqs[:n], shard.times[:n], shard.blobs[:n]
                    shard.base += n
                    dropped += n
                if shard.closed_at is not None and shard.closed_at < horizon and not shard.seqs:
                    del stream.shards[shard.shard_id]
            return dropped

    def expire_iterators(self) -> None:
        """Make every iterator issued so far expired."""
        with self._lock:
            self._expired_below = self._next_serial

    def throttle(self, operation: str, times: int) -> None:
        """Make the next ``times`` calls of ``operation`` (e.g. "GetRecords") fail with LimitExceeded."""
        if operation not in OPERATIONS:
            raise FakeUsageError(f"unknown operation {operation!r}; expected one of {sorted(OPERATIONS)}")
        with self._lock:
            self._throttles[operation] = self._throttles.get(operation, 0) + times

    # ---- service operations (wire-shaped results) -----------------------------------------
    def list_streams(
        self,
        table_name: str | None = None,
        limit: int | None = None,
        exclusive_start_stream_arn: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self._take_throttle("ListStreams")
            limit = _page_limit(limit, MAX_PAGE)
            streams = [s for s in self._streams.values() if table_name is None or s.table == table_name]
            start = _start_after([s.arn for s in streams], exclusive_start_stream_arn)
            page = streams[start : start + limit]
            out: dict[str, Any] = {
                "Streams": [{"StreamArn": s.arn, "TableName": s.table, "StreamLabel": s.label} for s in page]
            }
            if page and start + limit < len(streams):
                out["LastEvaluatedStreamArn"] = page[-1].arn
            return out

    def describe_stream(
        self,
        arn: str,
        limit: int | None = None,
        exclusive_start_shard_id: str | None = None,
        shard_filter: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self._take_throttle("DescribeStream")
            limit = _page_limit(limit, MAX_PAGE)
            stream = self._stream(arn)
            shards = list(stream.shards.values())
            if shard_filter is not None:
                if shard_filter.get("Type") != "CHILD_SHARDS" or "ShardId" not in shard_filter:
                    raise RequestValidationError("ShardFilter needs Type CHILD_SHARDS and a ShardId")
                shards = [s for s in shards if s.parent_id == shard_filter["ShardId"]]
            start = _start_after([s.shard_id for s in shards], exclusive_start_shard_id)
            page = shards[start : start + limit]
            desc: dict[str, Any] = {
                "StreamArn": stream.arn,
                "StreamLabel": stream.label,
                "StreamStatus": "ENABLED",
                "StreamViewType": "NEW_AND_OLD_IMAGES",
                "CreationRequestDateTime": round(stream.created_at, 3),
                "TableName": stream.table,
                "KeySchema": [
                    {"AttributeName": n, "KeyType": kt}
                    for n, kt in zip(
                        stream.key_names, ("HASH", "RANGE")[: len(stream.key_names)], strict=True
                    )
                ],
                "Shards": [s.describe() for s in page],
            }
            if page and start + limit < len(shards):
                desc["LastEvaluatedShardId"] = page[-1].shard_id
            return {"StreamDescription": desc}

    def get_shard_iterator(
        self,
        arn: str,
        shard_id: str,
        iterator_type: str,
        sequence_number: str | None = None,
        timestamp: float | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self._take_throttle("GetShardIterator")
            shard = self._shard(self._stream(arn), shard_id)
            if iterator_type in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
                seq = self._checked_sequence(shard, iterator_type, sequence_number)
                find = bisect.bisect_left if iterator_type == "AT_SEQUENCE_NUMBER" else bisect.bisect_right
                position = shard.base + find(shard.seqs, seq)
            elif iterator_type == "TRIM_HORIZON":
                position = shard.base
            elif iterator_type == "LATEST":
                position = shard.end
            elif iterator_type == "AT_TIMESTAMP":
                if timestamp is None:
                    raise RequestValidationError("Timestamp is required for ShardIteratorType AT_TIMESTAMP")
                # Like Kinesis, a time before the trim horizon starts at the oldest record left.
                position = shard.base + bisect.bisect_left(shard.times, timestamp)
            else:
                raise RequestValidationError(f"Invalid ShardIteratorType: {iterator_type}")
            return {"ShardIterator": self._issue(arn, shard_id, position, None).encode()}

    def get_records(self, shard_iterator: str, limit: int | None = None) -> bytes:
        """GetRecords; returns the response body, built by joining the records' stored JSON."""
        with self._lock:
            self._take_throttle("GetRecords")
            limit = _page_limit(limit, MAX_RECORDS_PER_CALL)
            it = ShardIterator.decode(shard_iterator)
            shard = self._shard(self._stream(it.arn), it.shard_id)
            now = self._clock()
            if it.serial < self._expired_below:
                raise ExpiredIteratorError(
                    "Iterator expired (every iterator issued so far was expired by the test)"
                )
            if now - it.issued > self._ttl:
                raise ExpiredIteratorError(
                    f"Iterator expired. The iterator was created at time {it.issued:.3f} while right now it "
                    f"is {now:.3f}, which is further in the future than the tolerated delay of "
                    f"{int(self._ttl * 1000)} milliseconds."
                )
            self._admit_reader(shard, it.lineage, now)
            if it.position < shard.base:
                raise TrimmedDataAccessError(
                    f"Attempted to access a trimmed position of shard {it.shard_id}: the oldest record left "
                    f"follows sequence number {shard.trimmed_through}."
                )
            first = it.position - shard.base
            stop, last, size = min(len(shard.seqs), first + limit), first, 0
            while last < stop and (last == first or size + len(shard.blobs[last]) <= MAX_RESPONSE_BYTES):
                size += len(shard.blobs[last])
                last += 1
            body = b'{"Records":[' + b",".join(shard.blobs[first:last]) + b"]"
            closed_and_done = shard.end_seq is not None and shard.base + last >= shard.end
            if not closed_and_done:  # only a closed shard read to its end hands out no next iterator
                nxt = self._issue(it.arn, it.shard_id, shard.base + last, it.lineage).encode()
                body += b',"NextShardIterator":' + dumps(nxt)
            return body + b"}"

    # ---- internals (callers hold the lock) ------------------------------------------------
    def _stream(self, arn: str) -> Stream:
        stream = self._streams.get(arn)
        if stream is None:
            raise ResourceNotFoundError(f"Requested resource not found: Stream: {arn} not found")
        return stream

    def _shard(self, stream: Stream, shard_id: str) -> Shard:
        shard = stream.shards.get(shard_id)
        if shard is None:
            raise ResourceNotFoundError(f"Requested resource not found: Shard does not exist: {shard_id}")
        return shard

    def _take_seq(self) -> int:
        self._next_seq += 1
        return self._next_seq - 1

    def _new_shard(
        self, stream: Stream, parent: str | None, hash_range: tuple[int, int], now: float
    ) -> Shard:
        self._shards_made += 1
        suffix = hashlib.sha256(f"{stream.arn}#{self._shards_made}".encode()).hexdigest()[:8]
        shard = Shard(f"shardId-{int(now * 1000):020d}-{suffix}", parent, hash_range, self._take_seq(), now)
        stream.shards[shard.shard_id] = shard
        return shard

    def _issue(self, arn: str, shard_id: str, position: int, lineage: int | None) -> ShardIterator:
        serial = self._next_serial
        self._next_serial += 1
        return ShardIterator(
            arn, shard_id, position, self._clock(), serial, serial if lineage is None else lineage
        )

    def _take_throttle(self, operation: str) -> None:
        if self._throttles.get(operation, 0) > 0:
            self._throttles[operation] -= 1
            raise LimitExceededError(f"Rate exceeded for {operation} (throttled by the test)")

    def _admit_reader(self, shard: Shard, lineage: int, now: float) -> None:
        for other, last in list(shard.readers.items()):
            if last <= now - READER_WINDOW_SECONDS:
                del shard.readers[other]
        if lineage not in shard.readers and len(shard.readers) >= self._max_readers:
            raise LimitExceededError(
                f"Rate exceeded for shard {shard.shard_id}: more than {self._max_readers} readers within "
                f"{READER_WINDOW_SECONDS:g} s"
            )
        shard.readers[lineage] = now

    def _checked_sequence(self, shard: Shard, iterator_type: str, sequence_number: str | None) -> int:
        if sequence_number is None or not sequence_number.isdigit():
            raise RequestValidationError(f"A numeric SequenceNumber is required for {iterator_type}")
        seq = int(sequence_number)
        if seq < shard.start_seq or seq > (self._next_seq - 1 if shard.end_seq is None else shard.end_seq):
            raise RequestValidationError(
                f"Invalid SequenceNumber {sequence_number} for shard {shard.shard_id}"
            )
        if shard.trimmed_through is not None and seq <= shard.trimmed_through:
            raise TrimmedDataAccessError(
                f"SequenceNumber {sequence_number} of shard {shard.shard_id} is beyond the trim horizon"
            )
        return seq

    def _key_of(self, stream: Stream, item: Mapping[str, Any]) -> KeyTuple:
        try:
            return tuple([key_value(n, item[n]) for n in stream.key_names])
        except KeyError as exc:
            raise FakeUsageError(f"item lacks key attribute {exc.args[0]!r}") from exc

    def _write(self, stream: Stream, item: Item, now: float) -> str | None:
        key = self._key_of(stream, item)
        old = stream.items.get(key)
        if old == item:  # DynamoDB emits no record when a put changes nothing
            return None
        stream.items[key] = item
        return self._append(stream, key, "INSERT" if old is None else "MODIFY", item, old, now)

    def _append(
        self, stream: Stream, key: KeyTuple, event: str, new: Item | None, old: Item | None, now: float
    ) -> str:
        image = new if new is not None else old
        assert image is not None
        h = key_hash(key[0])  # the partition key alone picks the shard, as in DynamoDB
        shard = next(s for s in stream.open_shards if s.hash_range[0] <= h < s.hash_range[1])
        seq = self._take_seq()
        keys = {n: image[n] for n in stream.key_names}
        shard.seqs.append(seq)
        shard.times.append(now)
        shard.blobs.append(encode_record(self.region, event, keys, new, old, seq, now))
        return str(seq)
