"""Shard discovery and lineage of one DynamoDB stream.

DynamoDB Streams splits a shard by closing it (it gets an EndingSequenceNumber) and opening
children that name it as ParentShardId; an item's changes move from the parent to one child. So a
child is read only after its parent is read to its end, and per item the order is kept.
DescribeStream lists shards for 24 hours; a parent that is no longer listed was trimmed, and the
child is then a root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.dynamodb.offset import ShardPosition

DESCRIBE_PAGE = 100  # DescribeStream's maximum Limit


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard as DescribeStream lists it."""

    shard_id: str
    parent_id: str | None
    start: int
    end: int | None  # set once the shard is closed

    @property
    def closed(self) -> bool:
        return self.end is not None


def describe_shards(streams: Any, stream_arn: str) -> dict[str, Shard]:
    """Every shard the stream lists now (DescribeStream pages through at most 100 at a time)."""
    shards: dict[str, Shard] = {}
    kwargs: dict[str, Any] = {"StreamArn": stream_arn, "Limit": DESCRIBE_PAGE}
    while True:
        description = streams.describe_stream(**kwargs)["StreamDescription"]
        for raw in description.get("Shards", []):
            numbers = raw.get("SequenceNumberRange", {})
            end = numbers.get("EndingSequenceNumber")
            shards[raw["ShardId"]] = Shard(
                raw["ShardId"],
                raw.get("ParentShardId"),
                int(numbers.get("StartingSequenceNumber", "0")),
                int(end) if end is not None else None,
            )
        last = description.get("LastEvaluatedShardId")
        if not last:
            return shards
        kwargs["ExclusiveStartShardId"] = last


@dataclass(frozen=True, slots=True)
class Lineage:
    """Which shards may be read now, given the listed shards and the positions taken so far."""

    readable: tuple[str, ...]  # parents first (by starting sequence number)
    vanished: tuple[str, ...]  # unfinished shards the service no longer lists: data lost
    forgotten: tuple[str, ...]  # finished shards no longer listed: drop from the position


def plan_reads(listed: Mapping[str, Shard], positions: Mapping[str, ShardPosition]) -> Lineage:
    """Apply the lineage rule: a shard is readable once it is unfinished and its parent is done.

    The parent is done when its position is finished, or when it is listed nowhere and holds
    nothing unread of ours (trimmed before we knew it: the child is a root). A parent we were
    still reading that has vanished is reported, never skipped.
    """
    vanished = tuple(s for s, p in positions.items() if s not in listed and not p.finished)
    forgotten = tuple(s for s, p in positions.items() if s not in listed and p.finished)

    def parent_done(shard: Shard) -> bool:
        parent = shard.parent_id
        if parent is None:
            return True
        position = positions.get(parent)
        if position is not None:
            return position.finished
        return parent not in listed  # never known and gone: trimmed long ago

    readable = [
        s
        for s in listed.values()
        if not positions.get(s.shard_id, ShardPosition()).finished and parent_done(s)
    ]
    readable.sort(key=lambda s: s.start)
    return Lineage(tuple(s.shard_id for s in readable), vanished, forgotten)
