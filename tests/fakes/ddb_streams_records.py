"""What the fake DynamoDB Streams stores and returns: its errors, shards, streams, iterators, records.

``ddb_streams_model.FakeStreams`` holds the state and the operations; this module holds the types
that state is made of and the encoding of a record. Every record is serialised to its final wire
JSON once, when it is written (``encode_record``), so GetRecords only joins bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

Item = dict[str, Any]  # DynamoDB JSON, e.g. {"pk": {"S": "a"}, "n": {"N": "1"}}
KeyTuple = tuple[Any, ...]  # key attribute values in key-schema order: str (S), Decimal (N), bytes (B)


class StreamsError(Exception):
    """An error the service returns to a client; ``code`` is its wire name."""

    code: ClassVar[str] = "InternalServerError"


class ResourceNotFoundError(StreamsError):
    code = "ResourceNotFoundException"


class ExpiredIteratorError(StreamsError):
    code = "ExpiredIteratorException"


class TrimmedDataAccessError(StreamsError):
    code = "TrimmedDataAccessException"


class LimitExceededError(StreamsError):
    code = "LimitExceededException"


class RequestValidationError(StreamsError):
    code = "ValidationException"


class FakeUsageError(ValueError):
    """A test drove the fake wrongly (an item without its key, splitting a closed shard, ...)."""


@dataclass
class Shard:
    shard_id: str
    parent_id: str | None
    hash_range: tuple[int, int]  # [lo, hi) of partition-key hashes routed here while open
    start_seq: int
    created_at: float
    end_seq: int | None = None
    closed_at: float | None = None
    base: int = 0  # absolute position of seqs[0]; positions before it were trimmed
    trimmed_through: int | None = None  # sequence number of the newest trimmed record
    seqs: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)
    readers: dict[int, float] = field(default_factory=dict)  # reader lineage -> last GetRecords

    @property
    def end(self) -> int:
        return self.base + len(self.seqs)

    def describe(self) -> dict[str, Any]:
        seq_range = {"StartingSequenceNumber": str(self.start_seq)}
        if self.end_seq is not None:
            seq_range["EndingSequenceNumber"] = str(self.end_seq)
        out: dict[str, Any] = {"ShardId": self.shard_id, "SequenceNumberRange": seq_range}
        if self.parent_id is not None:
            out["ParentShardId"] = self.parent_id
        return out


@dataclass
class Stream:
    arn: str
    label: str
    table: str
    key_names: tuple[str, ...]
    created_at: float
    shards: dict[str, Shard] = field(default_factory=dict)  # creation order: parents first
    open_shards: list[Shard] = field(default_factory=list)
    items: dict[KeyTuple, Item] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardIterator:
    arn: str
    shard_id: str
    position: int
    issued: float
    serial: int
    lineage: int

    def encode(self) -> str:
        # Shaped like the real ones ("<stream arn>|1|<opaque>"); only this fake reads the payload.
        payload = f"{self.shard_id}|{self.position}|{self.issued!r}|{self.serial}|{self.lineage}"
        return f"{self.arn}|1|{base64.urlsafe_b64encode(payload.encode()).decode()}"

    @classmethod
    def decode(cls, token: str) -> ShardIterator:
        try:
            arn, _, payload = token.rsplit("|", 2)
            shard_id, pos, issued, serial, lineage = base64.urlsafe_b64decode(payload).decode().split("|")
            return cls(arn, shard_id, int(pos), float(issued), int(serial), int(lineage))
        except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise RequestValidationError("Invalid ShardIterator") from exc


# One encoder: json.dumps with non-default options builds a new one per call (a third of write time).
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, non-ASCII kept as is."""
    return _encode(value).encode()


def encode_record(
    region: str, event: str, keys: Item, new: Item | None, old: Item | None, seq: int, now: float
) -> bytes:
    """One NEW_AND_OLD_IMAGES stream record as the wire JSON GetRecords returns for it."""
    keys_j = dumps(keys)
    new_j = b"" if new is None else b',"NewImage":' + dumps(new)
    old_j = b"" if old is None else b',"OldImage":' + dumps(old)
    head = (
        f'{{"eventID":"{os.urandom(16).hex()}","eventName":"{event}","eventVersion":"1.1",'
        f'"eventSource":"aws:dynamodb","awsRegion":"{region}","dynamodb":'
        f'{{"ApproximateCreationDateTime":{int(now)},"Keys":'
    )
    tail = f',"SequenceNumber":"{seq}","SizeBytes":{len(keys_j) + len(new_j) + len(old_j)},'
    return head.encode() + keys_j + new_j + old_j + tail.encode() + b'"StreamViewType":"NEW_AND_OLD_IMAGES"}}'


def key_value(name: str, value: Any) -> Any:
    """A key attribute's DynamoDB JSON as the Python value a ``KeyTuple`` holds."""
    if not isinstance(value, dict) or len(value) != 1:
        raise FakeUsageError(f"key attribute {name!r} must be one DynamoDB JSON scalar, got {value!r}")
    (kind, raw), *_ = value.items()
    if kind == "S":
        return raw
    if kind == "N":
        return Decimal(raw)
    if kind == "B":
        return base64.b64decode(raw)
    raise FakeUsageError(f"key attribute {name!r} must be S, N or B, got {kind}")


def key_hash(value: Any) -> int:
    """A partition key value's place in the 64-bit key-hash space that shards divide."""
    canonical = (
        f"N:{value.normalize()}" if isinstance(value, Decimal) else f"{type(value).__name__}:{value!r}"
    )
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "big")
