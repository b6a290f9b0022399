"""The column layout of one DynamoDB table, learned from its items.

DynamoDB declares only the key attributes; every other attribute may hold any type in any item.
`TableLayout` turns that into stable, typed lake columns: an attribute gets a column the first
time it carries a value, typed by that first value's DynamoDB type (numbers as decimals wide
enough for what the batch showed, maps and lists as JSON text), and a value of another type later
goes to a sibling column (``<attr>__<code>``) instead of being dropped or coerced. Because a lake
column's type must never change, a restarted pipeline adopts the schema it last committed
(`known`) and so decodes exactly as before.

Column names are made unambiguous so that a known schema can be read back: an attribute whose
name is reserved by the lake or ends like a generated name (``__s``, ``__n_text``, ``__attr`` ...)
is stored as ``<name>__attr``; every other name is kept as-is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from connectors.events import META_FIELDS, RESERVED_COLUMNS, Column, TableId, TableSchema

KeyType = Literal["S", "N", "B"]

# DynamoDB attribute type codes (AttributeValue members), and the two overflow kinds: a number (or
# number set) that does not fit its decimal column, kept as exact text.
TYPE_CODES = frozenset({"S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "M", "L"})
N_TEXT = "N_TEXT"
NS_TEXT = "NS_TEXT"
_TEXT_KINDS = frozenset({"S", "M", "L"})  # the codes a plain string column can hold
_SIBLING_CODES = frozenset({*(c.lower() for c in TYPE_CODES - {"NULL"}), "n_text", "ns_text"})
_ESCAPE = "__attr"
_GENERATED_SUFFIXES = tuple(f"__{c}" for c in (*_SIBLING_CODES, "attr"))

DECIMAL_PRECISION = 38  # DynamoDB numbers have at most 38 significant digits
MIN_SCALE = 6
# Decimal() also takes whitespace, underscores, NaN and Infinity; a DynamoDB number is none of those.
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_PLAIN_NUMBER_RE2 = r"^-?[0-9]+(\.[0-9]+)?$"

# Each data column notes the DynamoDB type it holds in its field metadata: the change-log files
# keep it, so a restart can tell apart the S, M and L columns that are all strings.
TYPE_METADATA_KEY = b"dynamodb.type"
# What `_code_of_type` says for a column holding each kind ("" is any string column).
_TYPE_FAMILY = {"S": "", "M": "", "L": "", N_TEXT: "", NS_TEXT: "SS"}

_FIXED_TYPES: dict[str, pa.DataType] = {
    "S": pa.string(),
    "B": pa.binary(),
    "BOOL": pa.bool_(),
    "SS": pa.list_(pa.string()),
    "BS": pa.list_(pa.binary()),
    "M": pa.string(),
    "L": pa.string(),
    N_TEXT: pa.string(),
    NS_TEXT: pa.list_(pa.string()),
}


class LayoutError(ValueError):
    """A known schema that this layout cannot adopt (it was not produced by a DynamoDB layout)."""


@dataclass(frozen=True, slots=True)
class KeyAttribute:
    """One attribute of the table's primary key (partition key, then sort key)."""

    name: str
    type: KeyType


@dataclass(frozen=True, slots=True)
class Drift:
    """Values of an attribute that went to a sibling column instead of the attribute's own."""

    attribute: str
    column: str
    reason: str
    count: int


@dataclass(slots=True)
class LayoutColumn:
    """One lake column: the attribute it holds, and which DynamoDB type (`code`) of value.

    `code` is None only for a string column adopted from a known schema whose kind (S, M or L) the
    schema cannot tell; the first such value seen decides it (`candidates` lists what is left).
    """

    name: str
    attribute: str
    code: str | None
    type: pa.DataType
    primary: bool
    candidates: frozenset[str] = frozenset()


def column_name(attribute: str) -> str:
    """The lake column for an attribute's own values (see the module docstring)."""
    lowered = attribute.lower()
    if lowered in RESERVED_COLUMNS or lowered.endswith(_GENERATED_SUFFIXES):
        return attribute + _ESCAPE
    return attribute


def number_shape(text: object) -> tuple[int, int] | None:
    """(integer digits, scale) of a DynamoDB number's text, or None if it is not a number.

    Trailing fractional zeros do not count (no value is lost dropping them); this is exact where
    the vectorised checks are only conservative.
    """
    if not isinstance(text, str) or _NUMBER.fullmatch(text) is None:
        return None
    _, digits, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)  # the pattern admits no NaN or Infinity
    n = len(digits)
    while exponent < 0 and n > 1 and digits[n - 1] == 0:
        n -= 1
        exponent += 1
    return max(0, n + exponent), max(0, -exponent)


def number_type(shapes: Iterable[tuple[int, int]]) -> pa.Decimal128Type:
    """decimal128(38, s) for a new numeric attribute, from the (integer digits, scale) it showed.

    s = max(6, largest scale), then lowered (never below the largest scale) so that the largest
    integer part fits in 38 - s; values that still do not fit overflow to the text sibling.
    """
    max_int, max_scale = 0, 0
    for int_digits, scale in shapes:
        max_int = max(max_int, int_digits)
        max_scale = max(max_scale, scale)
    scale = max(MIN_SCALE, max_scale)
    if max_int > DECIMAL_PRECISION - scale:
        scale = max(max_scale, DECIMAL_PRECISION - max_int)
    return pa.decimal128(DECIMAL_PRECISION, min(scale, DECIMAL_PRECISION))


def number_shapes(texts: pa.Array) -> list[tuple[int, int]]:
    """Shapes of many numbers (an Arrow string array): vectorised for plain notation.

    The vectorised count is exact for DynamoDB's own spelling (leading and trailing zeros
    trimmed); anything else is measured value by value.
    """
    texts = texts.drop_null()
    if not len(texts):
        return []
    if pc.all(pc.match_substring_regex(texts, _PLAIN_NUMBER_RE2)).as_py():
        length = pc.binary_length(texts)
        dot = pc.find_substring(texts, ".")
        no_dot = pc.less(dot, 0)
        sign = pc.starts_with(texts, "-").cast(pa.int32())
        int_digits = pc.subtract(pc.if_else(no_dot, length, dot), sign)
        scale = pc.if_else(no_dot, 0, pc.subtract(pc.subtract(length, dot), 1))
        # Only the maxima matter: one (max int digits, max scale) pair stands for the lot.
        return [(pc.max(int_digits).as_py(), pc.max(scale).as_py())]
    return [s for s in map(number_shape, texts.to_pylist()) if s is not None]


def new_column_type(code: str, values: Sequence[object]) -> pa.DataType:
    """The Arrow type of a new column for `code` values (numbers sized by `values`)."""
    if code == "N":
        try:
            texts = pa.array(values, pa.string())
        except (pa.ArrowException, TypeError):  # malformed values: the decoder quarantines them
            texts = pa.array([v for v in values if isinstance(v, str)], pa.string())
        return number_type(number_shapes(texts))
    if code == "NS":
        try:
            texts = pa.array(values, pa.list_(pa.string())).flatten()
        except (pa.ArrowException, TypeError):
            members = [m for v in values if isinstance(v, list) for m in v if isinstance(m, str)]
            texts = pa.array(members, pa.string())
        return pa.list_(number_type(number_shapes(texts)))
    return _FIXED_TYPES[code]


def _code_of_type(t: pa.DataType) -> str | None:
    """The DynamoDB type a primary column of Arrow type `t` holds ('' for an S/M/L string)."""
    if pa.types.is_string(t):
        return ""
    if pa.types.is_decimal(t):
        return "N"
    if pa.types.is_list(t):
        value = t.value_type
        if pa.types.is_string(value):
            return "SS"
        if pa.types.is_decimal(value):
            return "NS"
        if pa.types.is_binary(value):
            return "BS"
        return None
    return {pa.binary(): "B", pa.bool_(): "BOOL"}.get(t)


class TableLayout:
    """The lake columns of one DynamoDB table; grows as new attributes and drift appear."""

    def __init__(self, table: TableId, key: Sequence[KeyAttribute], known: pa.Schema | None = None) -> None:
        if not key:
            raise LayoutError(f"{table}: a DynamoDB table has at least a partition key")
        self.table = table
        self.key = tuple(key)
        self.columns: list[LayoutColumn] = []
        self._by_name: dict[str, LayoutColumn] = {}
        self._slots: dict[tuple[str, str], LayoutColumn] = {}  # (attribute, code) -> column
        self._primary: dict[str, LayoutColumn] = {}
        self._drift: dict[tuple[str, str, str], int] = {}
        fields = {f.name: f for f in known or () if f.name.lower() not in RESERVED_COLUMNS}
        for attr in self.key:
            name = column_name(attr.name)
            default = (
                pa.decimal128(DECIMAL_PRECISION, MIN_SCALE) if attr.type == "N" else _FIXED_TYPES[attr.type]
            )
            field = fields.pop(name, None)
            arrow_type = default if field is None else field.type
            if _code_of_type(arrow_type) != ("" if attr.type == "S" else attr.type):
                raise LayoutError(f"{table}: known column {name!r} is {arrow_type}, key type is {attr.type}")
            self._add(LayoutColumn(name, attr.name, attr.type, arrow_type, primary=True))
        for field in fields.values():
            self._adopt(field)
        for column in self.columns:  # siblings tell which kinds an adopted string column is not
            if column.code is None:
                taken = {c for c in column.candidates if (column.attribute, c) in self._slots}
                column.candidates -= taken
                if len(column.candidates) == 1:
                    self.decide(column, next(iter(column.candidates)))

    @property
    def key_names(self) -> tuple[str, ...]:
        """The key attributes' names (partition key, then sort key), as DynamoDB spells them."""
        return tuple(a.name for a in self.key)

    def schema(self) -> TableSchema:
        """The change-log schema: key columns first, then the other columns in first-seen order."""
        keys = {column_name(a.name) for a in self.key}
        return TableSchema(
            self.table,
            tuple(
                Column(c.name, c.type, nullable=c.name not in keys, source_type=_source_type(c))
                for c in self.columns
            ),
            tuple(column_name(a.name) for a in self.key),
        )

    def arrow_schema(self) -> pa.Schema:
        """`schema().arrow_schema()` with each column's DynamoDB type noted in its field metadata."""
        return pa.schema(
            [
                *META_FIELDS,
                *(
                    pa.field(c.name, c.type, metadata={TYPE_METADATA_KEY: c.code} if c.code else None)
                    for c in self.columns
                ),
            ]
        )

    # -- lookups and growth (used by the decoder) -----------------------------------------------
    def primary(self, attribute: str) -> LayoutColumn | None:
        return self._primary.get(attribute)

    def column(self, attribute: str, code: str) -> LayoutColumn | None:
        return self._slots.get((attribute, code))

    def add_column(self, attribute: str, code: str, values: Sequence[object]) -> LayoutColumn:
        """Add the column for `attribute`'s `code` values, typed from `values` (its first batch)."""
        primary = self._primary.get(attribute)
        name = column_name(attribute) if primary is None else f"{primary.name}__{code.lower()}"
        column = LayoutColumn(name, attribute, code, new_column_type(code, values), primary=primary is None)
        self._add(column)
        return column

    def decide(self, column: LayoutColumn, code: str) -> None:
        """Fix the kind (S, M or L) of an adopted string column from the first value it gets."""
        column.code = code
        column.candidates = frozenset()
        self._slots[(column.attribute, code)] = column

    def note_drift(self, attribute: str, column: str, reason: str, count: int) -> None:
        key = (attribute, column, reason)
        self._drift[key] = self._drift.get(key, 0) + count

    def take_drift(self) -> list[Drift]:
        """The drift counted since the last call (and forget it)."""
        drift = [Drift(a, c, r, n) for (a, c, r), n in self._drift.items()]
        self._drift = {}
        return drift

    # -- internals ---------------------------------------------------------------------------
    def _add(self, column: LayoutColumn) -> None:
        if column.name in self._by_name:  # cannot happen with column_name(); guard the invariant
            raise LayoutError(f"{self.table}: column {column.name!r} would be defined twice")
        self.columns.append(column)
        self._by_name[column.name] = column
        if column.code is not None:
            self._slots[(column.attribute, column.code)] = column
        if column.primary:
            self._primary[column.attribute] = column

    def _adopt(self, field: pa.Field) -> None:
        name, arrow_type = field.name, field.type
        if pa.types.is_list(arrow_type):  # Parquet names the list's child "element", Arrow "item"
            arrow_type = pa.list_(arrow_type.value_type)
        noted = (field.metadata or {}).get(TYPE_METADATA_KEY)
        head, sep, tail = name.rpartition("__")
        if sep and tail in _SIBLING_CODES:
            owner = self._by_name.get(head)
            if owner is None or not owner.primary:
                raise LayoutError(f"{self.table}: known column {name!r} has no attribute column {head!r}")
            attribute, code, primary = owner.attribute, tail.upper(), False
        else:
            attribute = name[: -len(_ESCAPE)] if name.endswith(_ESCAPE) else name
            if column_name(attribute) != name:
                raise LayoutError(f"{self.table}: known column {name!r} is not a DynamoDB attribute column")
            found, primary = _code_of_type(arrow_type), True
            code = "?" if found is None else found
            if code == "" and noted is not None:  # the column's own note tells S, M and L apart
                kind = noted.decode(errors="replace")
                code = kind if kind in _TEXT_KINDS else "?"
        if _code_of_type(arrow_type) != _TYPE_FAMILY.get(code, code) or noted not in (None, code.encode()):
            raise LayoutError(
                f"{self.table}: known column {name!r} ({arrow_type}, noted {noted!r}) is not a DynamoDB column"
            )
        if code == "":
            self._add(LayoutColumn(name, attribute, None, arrow_type, primary=True, candidates=_TEXT_KINDS))
        else:
            self._add(LayoutColumn(name, attribute, code, arrow_type, primary=primary))


def _source_type(column: LayoutColumn) -> str:
    if column.code is None:
        return "DynamoDB " + " or ".join(sorted(column.candidates))
    return {
        "M": "DynamoDB M (JSON text)",
        "L": "DynamoDB L (JSON text)",
        N_TEXT: "DynamoDB N (exact text; too wide for the decimal column)",
        NS_TEXT: "DynamoDB NS (exact text; too wide for the decimal column)",
    }.get(column.code, f"DynamoDB {column.code}")
