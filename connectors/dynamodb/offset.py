"""DynamoDB Streams positions: per table, per shard, the last sequence number in the lake.

A DynamoDB table's stream is a tree of shards (a shard closes and splits into children roughly
every few hours, and on throughput changes); sequence numbers order records within a shard only.
So the source's position is a map ``table -> shard id -> ShardPosition`` and serialises as
``ddb-shards:{"<table>":{"<shard>":"<seq>"}}`` (compact JSON, keys sorted, so equal positions give
equal strings — the lake's commit protocol compares them).

Per shard the position is one of
* ``""`` — the shard is known but nothing of it is in the lake yet (read it from TRIM_HORIZON);
* ``"<seq>"`` — everything up to and including record ``seq`` is in the lake
  (read on with AFTER_SEQUENCE_NUMBER);
* ``"<seq>!"`` / ``"!"`` — the shard is closed and read to its end: never read it again.
A shard missing from the map is newer than the position (discovered later): read it from
TRIM_HORIZON once its parent is done. Finished shards are dropped only when the service no longer
lists them, so a listed shard is never mistaken for a new one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from connectors.offsets import OffsetError, register_offset_kind

KIND = "ddb-shards"
TIP_KIND = "ddb-tip"


@dataclass(frozen=True, slots=True, order=True)
class ShardPosition:
    """How far the lake has one shard: the last sequence number taken, and whether it is done."""

    sequence: int | None = None  # None: nothing taken yet
    finished: bool = False

    @classmethod
    def parse(cls, text: str) -> ShardPosition:
        finished = text.endswith("!")
        digits = text[:-1] if finished else text
        if digits and not digits.isdigit():
            raise OffsetError(f"not a DynamoDB Streams sequence number: {text!r}")
        return cls(int(digits) if digits else None, finished)

    def __str__(self) -> str:
        return ("" if self.sequence is None else str(self.sequence)) + ("!" if self.finished else "")

    def covers(self, sequence: int) -> bool:
        """Whether record `sequence` of this shard is already in the lake."""
        return self.finished or (self.sequence is not None and sequence <= self.sequence)

    def at_least(self, other: ShardPosition) -> bool:
        if self.finished:
            return True
        if other.finished:
            return False
        return (self.sequence or -1) >= (other.sequence or -1)


@dataclass(frozen=True, slots=True)
class StreamPositions:
    """Positions of every captured table's stream (a source-wide offset)."""

    tables: Mapping[str, Mapping[str, ShardPosition]]
    kind: str = KIND

    @classmethod
    def empty(cls, tables: Iterable[str] = ()) -> StreamPositions:
        return cls({t: {} for t in tables})

    @classmethod
    def parse(cls, text: str) -> StreamPositions:
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError
            return cls(
                {
                    str(table): {str(s): ShardPosition.parse(str(p)) for s, p in shards.items()}
                    for table, shards in raw.items()
                }
            )
        except (ValueError, TypeError, AttributeError):
            raise OffsetError(f"not a DynamoDB Streams position: {text[:200]!r}") from None

    def serialize(self) -> str:
        body = {
            t: {s: str(p) for s, p in sorted(shards.items())} for t, shards in sorted(self.tables.items())
        }
        return f"{self.kind}:" + json.dumps(body, separators=(",", ":"))

    def __str__(self) -> str:
        parts = []
        for table, shards in sorted(self.tables.items()):
            done = sum(p.finished for p in shards.values())
            parts.append(f"{table}: {len(shards) - done} open / {done} finished shards")
        return "; ".join(parts) or "(no tables)"

    def shards(self, table: str) -> Mapping[str, ShardPosition]:
        return self.tables.get(table, {})

    def covers(self, table: str, shard: str, sequence: int) -> bool:
        """Whether record `sequence` of `shard` of `table` is already in the lake."""
        position = self.tables.get(table, {}).get(shard)
        return position is not None and position.covers(sequence)

    def with_shards(self, shards: Mapping[tuple[str, str], ShardPosition | None]) -> StreamPositions:
        """These (table, shard) positions set (None: the shard removed), the others kept."""
        tables = {t: dict(s) for t, s in self.tables.items()}
        for (table, shard), position in shards.items():
            if position is None:
                tables.setdefault(table, {}).pop(shard, None)
            else:
                tables.setdefault(table, {})[shard] = position
        return StreamPositions(tables)

    def with_table(self, table: str, shards: Mapping[str, ShardPosition]) -> StreamPositions:
        return StreamPositions({**self.tables, table: dict(shards)})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StreamPositions):
            return NotImplemented
        return self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash(self.serialize())

    def __le__(self, other: object) -> bool:
        """Partial order: every shard of ours is known to `other` at or beyond our position.

        A shard `other` does not list is not ≤: it may be one `other` has not discovered yet.
        (It may also be a finished shard `other` already forgot; treating that as "not ≤" only
        makes a replay across the forgetting fail loudly instead of being skipped, never the
        other way round.)
        """
        if not isinstance(other, StreamPositions):
            return NotImplemented
        for table, shards in self.tables.items():
            theirs = other.tables.get(table)
            if theirs is None:
                return False
            for shard, position in shards.items():
                their = theirs.get(shard)
                if their is None or not their.at_least(position):
                    return False
        return True

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, StreamPositions):
            return NotImplemented
        return self <= other and self != other


@dataclass(frozen=True, slots=True)
class StreamTip:
    """The high-water mark of a bounded run: "whatever the streams hold as of `at`".

    DynamoDB Streams has no call that returns the newest sequence number without reading, so a
    bounded run reads every shard until it is caught up at a moment after `at`.
    """

    at: dt.datetime
    kind: str = TIP_KIND

    @classmethod
    def parse(cls, text: str) -> StreamTip:
        try:
            return cls(dt.datetime.fromisoformat(text))
        except ValueError:
            raise OffsetError(f"not a stream tip time: {text!r}") from None

    def serialize(self) -> str:
        return f"{self.kind}:{self.at.isoformat()}"

    def __le__(self, other: object) -> bool:
        if not isinstance(other, StreamTip):
            return NotImplemented
        return self.at <= other.at


register_offset_kind(KIND, StreamPositions.parse)
register_offset_kind(TIP_KIND, StreamTip.parse)


class ShardsMovedError(Exception):
    """A shard this writer read was committed by another writer meanwhile: its batch is stale."""


def changed_shards(
    start: StreamPositions, end: StreamPositions
) -> list[tuple[tuple[str, str], ShardPosition | None, ShardPosition | None]]:
    """((table, shard), position in `start`, position in `end`) of every shard that differs, in order."""
    out = []
    for table in sorted(set(start.tables) | set(end.tables)):
        before, after = start.shards(table), end.shards(table)
        for shard in sorted(set(before) | set(after)):
            was, now = before.get(shard), after.get(shard)
            if was != now:
                out.append(((table, shard), was, now))
    return out


def claim_positions(latest: StreamPositions, start: StreamPositions, end: StreamPositions) -> StreamPositions:
    """The source's position after committing a batch that read its shards from `start` to `end`,
    on top of `latest`, the position of the commit log's newest record.

    Several writers share one log (DynamoDB shard workers, decisions §24): each reads only the
    shards it leases, so between `start` and `end` only its own shards moved, while `latest` has
    the other writers' shards moved on meanwhile. The batch may be committed only if every shard it
    moved is in `latest` exactly where the batch started it (a compare-and-swap per shard):
    otherwise another writer committed that shard since, and `ShardsMovedError` says which. A
    finished shard dropped from `end` (no longer listed by the service) is dropped from the result.
    """
    tables = {t: dict(shards) for t, shards in latest.tables.items()}
    moved: list[str] = []
    for (table, shard), was, now in changed_shards(start, end):
        theirs = tables.setdefault(table, {})
        if now is None and was is not None and was.finished:
            theirs.pop(shard, None)  # forgotten: finished and no longer listed
        elif theirs.get(shard) != was:
            moved.append(
                f"{table}/{shard} (read from {was or 'its start'}, the lake has {theirs.get(shard) or 'nothing'})"
            )
        else:
            assert now is not None
            theirs[shard] = now
    if moved:
        raise ShardsMovedError("shards committed by another writer meanwhile: " + ", ".join(moved))
    return StreamPositions(tables)
