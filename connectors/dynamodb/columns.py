"""The column router: one batch's attribute values, still in wire form, -> one Arrow array per column.

One pass routes every attribute value into one list per lake column (the `TableLayout` says which
column; new attributes and drift are learned on the way), and each list then becomes one Arrow
array. Numbers are cast from their text by Arrow after a vectorised digit-count check (measured
about 2x faster than a `Decimal` per value); a number too wide for its decimal column is kept
exactly in the attribute's text sibling column. A value that cannot be converted marks its row bad
(the caller quarantines it) instead of failing the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.dynamodb.layout import N_TEXT, NS_TEXT, TYPE_CODES, LayoutColumn, TableLayout, number_shape
from connectors.dynamodb.values import CONVERTERS

# What a malformed value raises in the value converters (and in pyarrow given the wrong kind).
_VALUE_ERRORS = (pa.ArrowException, TypeError, ValueError, KeyError, AttributeError, RecursionError)


class Columns:
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
        convert = CONVERTERS.get(column.code)
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
