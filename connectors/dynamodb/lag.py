"""How far the lake is behind each shard of a DynamoDB stream, measured by peeking, not consuming.

DynamoDB Streams has no "latest sequence number" call, so the lag of a shard is the age of its
oldest record the lake does not have yet: one GetRecords (Limit 1) after the committed sequence
number. Zero when the lake has everything; the call uses one of the shard's two reader slots
for a moment.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from connectors.dynamodb.offset import ShardPosition, StreamPositions
from connectors.dynamodb.shards import describe_shards, plan_reads
from connectors.dynamodb.source import DynamoDBSource


@dataclass(frozen=True, slots=True)
class ShardLag:
    table: str
    shard: str
    committed: str  # the lake's position in the shard ("" = nothing yet)
    lag_seconds: float  # age of the oldest record the lake lacks; 0 when caught up


def shard_lags(source: DynamoDBSource, positions: StreamPositions) -> list[ShardLag]:
    """The lag of every shard the lake still has to read, per table."""
    source.preflight()
    streams = source.clients.streams
    now = dt.datetime.now(dt.UTC).timestamp()
    out: list[ShardLag] = []
    for table, arn in source.stream_arns.items():
        listed = describe_shards(streams, arn)
        shard_positions = positions.shards(table)
        for shard_id in plan_reads(listed, shard_positions).readable:
            position = shard_positions.get(shard_id, ShardPosition())
            kwargs = {"StreamArn": arn, "ShardId": shard_id}
            if position.sequence is None:
                kwargs |= {"ShardIteratorType": "TRIM_HORIZON"}
            else:
                kwargs |= {
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "SequenceNumber": str(position.sequence),
                }
            iterator = streams.get_shard_iterator(**kwargs)["ShardIterator"]
            page = source.clients.get_records(iterator, limit=1)
            lag = 0.0
            if page.records:
                created = page.records[0]["dynamodb"]["ApproximateCreationDateTime"]
                stamp = created.timestamp() if isinstance(created, dt.datetime) else float(created)
                lag = max(0.0, now - stamp)
            out.append(ShardLag(table, shard_id, str(position), lag))
    return out
