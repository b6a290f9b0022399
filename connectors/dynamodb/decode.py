"""DynamoDB Streams records and DynamoDB JSON items -> columnar change events.

This is the DynamoDB source's hot path, so it builds no Python object per value that it does not
need: one pass routes every attribute value, still in its wire form, into one list per lake column
(the `TableLayout` says which column; new attributes and drift are learned on the way), and each
list then becomes one Arrow array. Numbers are cast from their text by Arrow after a vectorised
digit-count check (measured about 2x faster than a `Decimal` per value); maps and lists are
rendered from DynamoDB JSON straight to JSON text, numbers as their exact text.

A record that cannot be decoded (no key, a malformed value, an unknown event) becomes a
`QuarantinedRow` with the reason, and the rest of the batch goes on.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import json.encoder
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.dynamodb.layout import N_TEXT, NS_TEXT, TYPE_CODES, LayoutColumn, TableLayout, number_shape
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
# What a malformed value raises in the converters below (and in pyarrow given the wrong kind).
_VALUE_ERRORS = (pa.ArrowException, TypeError, ValueError, KeyError, AttributeError, RecursionError)


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
    arrays = _Columns(layout, n, bad).build(images)
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
    arrays = _Columns(layout, n, bad).build(items)
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


class _Columns:
    """Routes a batch's attribute values into one list per column, then converts each list."""

    def __init__(self, layout: TableLayout, n: int, bad: dict[int, str]) -> None:
        self.layout, self.n, self.bad = layout, n, bad
        self.keys = {a.name: a.type for a in layout.key}
        self.values: dict[tuple[str, str], list[Any]] = {}  # (attribute, code) -> values
        self.routes: dict[str, tuple[str, list[Any]]] = {}  # attribute -> its own column's code, values
        self.pending: list[tuple[str, str]] = []  # new columns, in first-seen order
        self.drifted: dict[tuple[str, str], int] = {}
        for column in layout.columns:
            if column.code is not None:
                values = self.values[(column.attribute, column.code)] = [None] * n
                if column.primary:
                    self.routes[column.attribute] = (column.code, values)

    def build(self, images: Sequence[Any]) -> list[pa.Array]:
        """The layout's columns for `images` (learning new ones); marks undecodable rows bad."""
        self._route(images)
        for name, key_type in self.keys.items():
            values = self.values[(name, key_type)]
            if None in values:
                for i, value in enumerate(values):
                    if value is None:
                        self.bad.setdefault(i, f"key attribute {name!r} is missing")
        layout = self.layout
        for name, code in self.pending:
            layout.add_column(name, code, self.values[(name, code)])
        for (name, code), count in self.drifted.items():
            primary = layout.primary(name)
            holds = primary.code if primary and primary.code else "text"
            layout.note_drift(
                name,
                _must(layout.column(name, code)).name,
                f"{code} value; the attribute's column holds {holds}",
                count,
            )
        arrays: dict[str, pa.Array] = {}
        # Numbers first: their overflow fills text columns that may come earlier in the layout.
        for column in list(layout.columns):
            if column.code in ("N", "NS"):
                arrays[column.name] = self._convert(column)
        for column in layout.columns:
            if column.name not in arrays:
                arrays[column.name] = self._convert(column)
        return [arrays[c.name] for c in layout.columns]

    def _route(self, images: Sequence[Any]) -> None:
        routes = self.routes.get
        miss = self._miss
        for i, image in enumerate(images):
            if image is None:
                continue
            try:
                for name, typed in image.items():
                    route = routes(name)
                    if route is not None:
                        # get() plus a length check is measurably cheaper than unpacking items()
                        value = typed.get(route[0])
                        if value is not None and len(typed) == 1:
                            route[1][i] = value
                            continue
                    miss(i, name, typed)
            except (AttributeError, TypeError, ValueError):
                self.bad.setdefault(i, _image_problem(image))

    def _miss(self, i: int, name: str, typed: Mapping[str, Any]) -> None:
        """A value with no column yet, or not of its attribute's type: learn or divert it."""
        ((code, value),) = typed.items()  # raises on a malformed typed value (caught by _route)
        if code not in TYPE_CODES or value is None:
            self.bad.setdefault(i, f"attribute {name!r}: {typed!r} is not a DynamoDB typed value")
            return
        if name in self.keys:
            self.bad.setdefault(i, f"key attribute {name!r} is {code}, not {self.keys[name]}")
            return
        if code == "NULL":  # a null cell; an attribute only ever NULL stays without a column
            return
        slot = (name, code)
        values = self.values.get(slot)
        if values is None:
            values = self.values[slot] = [None] * self.n
            primary = self.layout.primary(name)
            if primary is None and name not in self.routes:  # a new attribute: its first value decides
                self.routes[name] = (code, values)
                self.pending.append(slot)
                values[i] = value
                return
            if primary is not None and primary.code is None and code in primary.candidates:
                self.layout.decide(primary, code)
                self.routes[name] = (code, values)
                values[i] = value
                return
            self.pending.append(slot)
        values[i] = value
        self.drifted[slot] = self.drifted.get(slot, 0) + 1

    def _convert(self, column: LayoutColumn) -> pa.Array:
        values = self.values.get((column.attribute, column.code)) if column.code else None
        if values is None:
            return pa.nulls(self.n, column.type)
        if column.code == "N":
            return self._numbers(column, values)
        if column.code == "NS":
            return self._number_sets(column, values)
        convert = _CONVERTERS.get(column.code)
        try:
            if convert is None:
                return pa.array(values, column.type)
            return pa.array([None if v is None else convert(v) for v in values], column.type)
        except _VALUE_ERRORS:
            pass
        checked: list[Any] = []
        for i, value in enumerate(values):
            if value is not None:
                try:
                    value = convert(value) if convert else value
                    pa.array([value], column.type)
                except _VALUE_ERRORS as e:
                    self._reject(i, column, value, e)
                    value = None
            checked.append(value)
        return pa.array(checked, column.type)

    def _numbers(self, column: LayoutColumn, values: list[Any]) -> pa.Array:
        decimal = column.type
        try:
            texts = pa.array(values, pa.string())
            if _fit_surely(texts, decimal):
                return texts.cast(decimal)
        except (pa.ArrowException, TypeError):
            pass  # too wide or malformed somewhere: sort it out value by value
        exact: list[Decimal | None] = []
        for i, value in enumerate(values):
            shape = None if value is None else number_shape(value)
            if shape is not None and _fits(shape, decimal):
                exact.append(Decimal(value))
                continue
            exact.append(None)
            if shape is not None and column.attribute in self.keys:  # a key is kept exactly or not at all
                self._reject(i, column, value, ValueError(f"too wide for {decimal}"))
            elif shape is not None:
                self._overflow(column, N_TEXT, i, value)
            elif value is not None:
                self._reject(i, column, value, ValueError("not a number"))
        return pa.array(exact, decimal)

    def _number_sets(self, column: LayoutColumn, values: list[Any]) -> pa.Array:
        try:
            texts = pa.array(values, pa.list_(pa.string()))
            if _fit_surely(texts.flatten(), column.type.value_type):
                return texts.cast(column.type)
        except (pa.ArrowException, TypeError):
            pass  # too wide or malformed somewhere: sort it out set by set
        exact: list[list[Decimal] | None] = []
        for i, value in enumerate(values):
            shapes = [number_shape(m) for m in value] if type(value) is list else [None]
            if value is not None and None not in shapes:
                if all(_fits(s, column.type.value_type) for s in shapes if s is not None):
                    exact.append([Decimal(m) for m in value])
                    continue
                self._overflow(column, NS_TEXT, i, value)
            elif value is not None:
                self._reject(i, column, value, ValueError("not a set of numbers"))
            exact.append(None)
        return pa.array(exact, column.type)

    def _overflow(self, column: LayoutColumn, kind: str, i: int, value: Any) -> None:
        """Keep a number too wide for its decimal column, exactly, in the attribute's text sibling."""
        slot = (column.attribute, kind)
        values = self.values.get(slot)
        if values is None:
            values = self.values[slot] = [None] * self.n
            if self.layout.column(*slot) is None:
                self.layout.add_column(column.attribute, kind, ())
        values[i] = value
        target = _must(self.layout.column(*slot)).name
        self.layout.note_drift(column.attribute, target, f"number does not fit {column.type}", 1)

    def _reject(self, i: int, column: LayoutColumn, value: Any, error: Exception) -> None:
        self.bad.setdefault(
            i, f"attribute {column.attribute!r}: malformed {column.code} value {value!r} ({error})"
        )


def _fit_surely(texts: pa.Array, decimal: pa.Decimal128Type) -> bool:
    """Whether Arrow's cast is safe: no value has more integer or fraction digits than `decimal`.

    The test is conservative (it counts characters), so a False only sends the batch to the exact
    path. It is needed because Arrow's string->decimal cast wraps around silently on a plain
    integer of more than 38 digits instead of failing; lost fraction digits do make it fail.
    """
    room = decimal.precision - decimal.scale
    length = pc.binary_length(texts)
    longest = pc.max(length).as_py()
    if longest is None or longest <= room:
        return True
    dot = pc.find_substring(texts, ".")
    no_dot = pc.less(dot, 0)
    sign = pc.starts_with(texts, "-").cast(pa.int32())
    integer = pc.max(pc.subtract(pc.if_else(no_dot, length, dot), sign)).as_py()
    fraction = pc.max(pc.if_else(no_dot, 0, pc.subtract(pc.subtract(length, dot), 1))).as_py()
    return bool(integer <= room and fraction <= decimal.scale)


def _fits(shape: tuple[int, int], decimal: pa.Decimal128Type) -> bool:
    return shape[0] <= decimal.precision - decimal.scale and shape[1] <= decimal.scale


def _image_problem(image: Any) -> str:
    if not isinstance(image, Mapping):
        return f"image is not a map: {image!r}"
    for name, typed in image.items():
        if not isinstance(typed, Mapping) or len(typed) != 1:
            return f"attribute {name!r}: {typed!r} is not a DynamoDB typed value"
    return "malformed image"


def _must(column: LayoutColumn | None) -> LayoutColumn:
    assert column is not None
    return column


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


def _stamp_time(stamp: Any) -> dt.datetime:
    try:
        return _EPOCH + _micros(stamp) * _ONE_MICRO
    except (TypeError, ValueError, OverflowError, ArithmeticError):
        return _EPOCH


def _payload(raw: Any) -> str:
    return json.dumps(raw, default=str, ensure_ascii=False)


# -- values -> Arrow-ready Python values ---------------------------------------------------------
_quote: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]  # C, ensure_ascii=False
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?").fullmatch


def _binary(value: Any) -> bytes:
    """B from the wire (base64 text) or from boto3 (bytes)."""
    if type(value) is bytes:
        return value
    return binascii.a2b_base64(value, strict_mode=True)


def _number_json(text: str) -> str:
    if _JSON_NUMBER(text):
        return text
    shape = number_shape(text)  # an exact number in another spelling (".5", "1."): normalise it
    if shape is None:
        raise ValueError(f"{text!r} is not a number")
    return str(Decimal(text))


def _binary_json(value: Any) -> str:
    if type(value) is bytes:
        return '"' + base64.b64encode(value).decode("ascii") + '"'
    if type(value) is not str:
        raise TypeError(f"{value!r} is not base64 text")
    return _quote(value)


def _bool_json(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    raise TypeError(f"{value!r} is not a boolean")


def _json(typed: Mapping[str, Any]) -> str:
    ((code, value),) = typed.items()
    if code == "S":
        return _quote(value)
    if code == "N":
        return value if _JSON_NUMBER(value) else _number_json(value)
    if code == "M":
        return _map_json(value)
    return _JSON[code](value)


def _map_json(value: Mapping[str, Any]) -> str:
    # The common entry kinds are rendered inline: a call per entry is most of the cost here.
    parts = []
    for key, typed in value.items():
        ((code, item),) = typed.items()
        if code == "S":
            parts.append(f"{_quote(key)}:{_quote(item)}")
        elif code == "N" and _JSON_NUMBER(item):
            parts.append(f"{_quote(key)}:{item}")
        else:
            parts.append(f"{_quote(key)}:{_json(typed)}")
    return "{" + ",".join(parts) + "}"


def _list_json(value: Sequence[Any]) -> str:
    if type(value) is not list:
        raise TypeError(f"{value!r} is not a list")
    if not value:
        return "[]"
    return "[" + ",".join([_json(v) for v in value]) + "]"


def _set_json(render: Callable[[Any], str]) -> Callable[[Any], str]:
    def render_set(value: Any) -> str:
        if type(value) is not list:
            raise TypeError(f"{value!r} is not a list")
        return "[" + ",".join(map(render, value)) + "]"

    return render_set


_JSON: dict[str, Callable[[Any], str]] = {
    "S": _quote,
    "N": _number_json,
    "B": _binary_json,
    "BOOL": _bool_json,
    "NULL": lambda value: "null",
    "M": _map_json,
    "L": _list_json,
    "SS": _set_json(_quote),
    "NS": _set_json(_number_json),
    "BS": _set_json(_binary_json),
}
# Per-value conversions before pa.array (None: pa.array takes the wire value as it is).
_CONVERTERS: dict[str | None, Callable[[Any], Any]] = {
    "B": _binary,
    "BS": lambda value: [_binary(b) for b in value],
    "M": _map_json,
    "L": _list_json,
}
