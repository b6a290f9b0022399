"""DynamoDB Streams records and DynamoDB JSON items -> columnar change events.

This is the DynamoDB source's hot path, so it builds no Python object per value that it does not
need: one pass routes every attribute value, still in its wire form, into one list per lake column
(the `TableLayout` says which column; new attributes and drift are learned on the way), and each
list then becomes one Arrow array. Numbers are cast from their text by Arrow after a vectorised
digit-count check (measured about 2x faster than a `Decimal` per value); maps and lists are
rendered from DynamoDB JSON straight to JSON text, numbers as their exact text.

The routing and the Arrow arrays are `connectors.dynamodb.columns`; the per-value conversions
(binary, JSON text for maps, lists and sets) are `connectors.dynamodb.values`.

A record that cannot be decoded (no key, a malformed value, an unknown event) becomes a
`QuarantinedRow` with the reason, and the rest of the batch goes on.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.dynamodb.columns import Columns
from connectors.dynamodb.layout import TableLayout
from connectors.events import UTC_MICROS, QuarantinedRow, TableChanges


@dataclass(frozen=True, slots=True)
class Decoded:
    """One call's result: the rows (None if there are none), the rows it could not decode, and
    the sequence number of the last stream record it was given (None for items)."""

    changes: TableChanges | None
    quarantined: tuple[QuarantinedRow, ...]
    last_sequence: str | None


class _BadRecord(ValueError):
    """A record without the parts every change needs."""


# eventName -> (Op, the image the lake stores). A REMOVE's OldImage is absent on KEYS_ONLY and
# NEW_IMAGE streams; its Keys then stand in, as a delete needs only the key.
_EVENTS = {"INSERT": ("I", "NewImage"), "MODIFY": ("U", "NewImage"), "REMOVE": ("D", "OldImage")}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MICRO = dt.timedelta(microseconds=1)


def decode_records(layout: TableLayout, records: Sequence[Mapping[str, Any]]) -> Decoded:
    """Decode DynamoDB Streams records (wire JSON, boto3-parsed or Lambda event form), in order."""
    n = len(records)
    ops = ["I"] * n
    stamps: list[Any] = [0] * n
    positions = [""] * n
    images: list[Any] = [None] * n
    bad: dict[int, str] = {}
    last_sequence: str | None = None
    for i, record in enumerate(records):
        try:
            info = record["dynamodb"]
            sequence = info["SequenceNumber"]
            if type(sequence) is not str:
                raise _BadRecord(f"SequenceNumber {sequence!r} is not text")
            positions[i] = last_sequence = sequence
            stamps[i] = info["ApproximateCreationDateTime"]
            event = _EVENTS.get(record["eventName"])
            if event is None:
                raise _BadRecord(f"unknown eventName {record['eventName']!r}")
            ops[i], image_name = event
            image = info.get(image_name)
            if image is None:
                if image_name != "OldImage":
                    raise _BadRecord(
                        f"{record['eventName']} record has no NewImage (StreamViewType "
                        f"{info.get('StreamViewType')!r}; the stream must carry new images)"
                    )
                image = info["Keys"]
            images[i] = image
        except KeyError as e:
            bad[i] = f"record has no {e.args[0]!r}"
        except (_BadRecord, TypeError, AttributeError) as e:
            bad[i] = f"malformed record: {e}"
    stamp_array = _stamp_array(stamps, bad)
    arrays = Columns(layout, n, bad).build(images)
    quarantined = tuple(
        QuarantinedRow(layout.table, positions[i], _stamp_time(stamps[i]), reason, _payload(records[i]))
        for i, reason in sorted(bad.items())
    )
    changes = _changes(
        layout, pa.array(ops, pa.string()), stamp_array, pa.array(positions, pa.string()), arrays, bad
    )
    return Decoded(changes, quarantined, last_sequence)


def decode_items(
    layout: TableLayout, items: Sequence[Mapping[str, Any]], position: str, commit_ts: dt.datetime
) -> Decoded:
    """Decode snapshot items (Scan or export, DynamoDB JSON) as inserts at one position and time."""
    n = len(items)
    bad: dict[int, str] = {}
    arrays = Columns(layout, n, bad).build(items)
    quarantined = tuple(
        QuarantinedRow(layout.table, position, commit_ts, reason, _payload(items[i]))
        for i, reason in sorted(bad.items())
    )
    stamps = pa.array([_micros(commit_ts)] * n, pa.int64()).cast(UTC_MICROS)
    ops, positions = pa.array(["I"] * n, pa.string()), pa.array([position] * n, pa.string())
    return Decoded(_changes(layout, ops, stamps, positions, arrays, bad), quarantined, None)


def _changes(
    layout: TableLayout,
    ops: pa.Array,
    stamps: pa.Array,
    positions: pa.Array,
    arrays: list[pa.Array],
    bad: Mapping[int, str],
) -> TableChanges | None:
    n = len(ops)
    if len(bad) == n:
        return None
    data = pa.Table.from_arrays(
        [ops, stamps, positions, pa.nulls(n, pa.string()), *arrays], schema=layout.arrow_schema()
    )
    if bad:
        data = data.filter(pa.array([i not in bad for i in range(n)], pa.bool_()))
    return TableChanges(layout.schema(), data)


# -- timestamps ------------------------------------------------------------------------------
def _stamp_array(stamps: list[Any], bad: dict[int, str]) -> pa.Array:
    """ApproximateCreationDateTime values (epoch seconds, or datetimes from boto3) as UTC micros."""
    try:
        arr = pa.array(stamps)
        if pa.types.is_integer(arr.type):
            return pc.multiply_checked(arr.cast(pa.int64()), 1_000_000).cast(UTC_MICROS)
        if pa.types.is_floating(arr.type):
            return pc.round(pc.multiply(arr, 1e6)).cast(pa.int64()).cast(UTC_MICROS)
    except (pa.ArrowException, TypeError, ValueError):
        pass
    micros: list[int] = []
    for i, stamp in enumerate(stamps):
        try:
            micros.append(_micros(stamp))
        except (TypeError, ValueError, OverflowError, ArithmeticError):
            bad.setdefault(i, f"ApproximateCreationDateTime {stamp!r} is not a time")
            micros.append(0)
    return pa.array(micros, pa.int64()).cast(UTC_MICROS)


def _micros(stamp: Any) -> int:
    if isinstance(stamp, dt.datetime):
        aware = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)
        return (aware - _EPOCH) // _ONE_MICRO
    if isinstance(stamp, int | float | Decimal) and not isinstance(stamp, bool):
        return round(stamp * 1_000_000)
    raise TypeError(f"{stamp!r} is not epoch seconds or a datetime")


def epoch_seconds(stamp: Any) -> float:
    """ApproximateCreationDateTime as epoch seconds: the wire's number, or boto3's datetime."""
    if isinstance(stamp, dt.datetime):
        return stamp.timestamp()
    return float(stamp)


def _stamp_time(stamp: Any) -> dt.datetime:
    try:
        return _EPOCH + _micros(stamp) * _ONE_MICRO
    except (TypeError, ValueError, OverflowError, ArithmeticError):
        return _EPOCH


def _payload(raw: Any) -> str:
    return json.dumps(raw, default=str, ensure_ascii=False)
