"""Per-column decode plans for the fast row-image decoder (connectors.mysql.fastrows).

A `ColumnPlan` says where one column's value sits in a binlog row image (a fixed-width struct
code, or a length prefix followed by that many bytes) and which converter of
connectors.mysql.fastrows_values turns a column of those raw values into the Arrow array the
lake stores. Layouts follow mysql-replication 1.0.17's reader (``RowsEvent.__read_values_name``)
with the decoding fixes of connectors.mysql.patches, which the tests compare against.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.row_event import RowsEvent

from connectors.mysql import fastrows_values as values
from connectors.mysql.fastrows_values import Converter, FastPathRejected, FastPathUnsupported
from connectors.mysql.types import MySQLType

__all__ = ["ColumnPlan", "FastPathRejected", "FastPathUnsupported", "plan_column"]


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """Where a column's value is in a row image, and how raw values become its Arrow array.

    Either `code` is a little-endian struct code of `width` bytes, or `prefix` is the size
    (1-4 bytes) of the length prefix of a variable-length value.
    """

    name: str
    code: str | None
    width: int
    prefix: int
    convert: Converter


_INT_CODES = {
    FIELD_TYPE.TINY: ("b", "B", 1),
    FIELD_TYPE.SHORT: ("h", "H", 2),
    FIELD_TYPE.LONG: ("i", "I", 4),
    FIELD_TYPE.LONGLONG: ("q", "Q", 8),
}
_UINT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_STRING_CODES = (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING)


def plan_column(col: Any, t: MySQLType, zone: str) -> ColumnPlan:
    """The plan for one TABLE_MAP column (a mysql-replication ``Column``) of definition type `t`.

    Raises FastPathUnsupported for a type or metadata the fast decoder leaves to the library.
    """
    code = col.type
    name = col.name
    if code in _INT_CODES:
        signed, unsigned, width = _INT_CODES[code]
        if t.unsigned and code == FIELD_TYPE.LONGLONG:
            return ColumnPlan(name, unsigned, width, 0, values.unsigned_bigint)
        return ColumnPlan(name, unsigned if t.unsigned else signed, width, 0, values.numbers(t.arrow_type))
    if code == FIELD_TYPE.INT24:
        return ColumnPlan(name, "3s", 3, 0, values.int24(signed=not t.unsigned, arrow_type=t.arrow_type))
    if code == FIELD_TYPE.FLOAT:
        return ColumnPlan(name, "f", 4, 0, values.numbers(pa.float32()))
    if code == FIELD_TYPE.DOUBLE:
        return ColumnPlan(name, "d", 8, 0, values.numbers(pa.float64()))
    if code == FIELD_TYPE.YEAR:
        return ColumnPlan(name, "B", 1, 0, values.year)
    if code == FIELD_TYPE.NEWDECIMAL:
        size, convert = values.decimal(col.precision, col.decimals, t.arrow_type)
        return ColumnPlan(name, f"{size}s", size, 0, convert)
    if code == FIELD_TYPE.DATE:
        return ColumnPlan(name, "3s", 3, 0, values.date)
    fraction_bytes = (getattr(col, "fsp", 0) + 1) // 2
    if code == FIELD_TYPE.DATETIME2:
        width = 5 + fraction_bytes
        return ColumnPlan(name, f"{width}s", width, 0, values.datetime2(col.fsp, t, zone))
    if code == FIELD_TYPE.TIMESTAMP2:
        width = 4 + fraction_bytes
        return ColumnPlan(name, f"{width}s", width, 0, values.timestamp2(col.fsp))
    if code == FIELD_TYPE.TIME2:
        width = 3 + fraction_bytes
        return ColumnPlan(name, f"{width}s", width, 0, values.time2(col.fsp, t))
    if code == FIELD_TYPE.BIT:
        return ColumnPlan(name, f"{col.bytes}s", col.bytes, 0, values.bit(col.bits))
    if code == FIELD_TYPE.ENUM:
        if not col.enum_values or col.size not in (1, 2):
            raise FastPathUnsupported(f"column {name!r}: ENUM without member metadata")
        return ColumnPlan(name, _UINT_CODES[col.size], col.size, 0, values.enum(col.enum_values))
    if code == FIELD_TYPE.SET:
        if not col.set_values or not 1 <= col.size <= 8:
            raise FastPathUnsupported(f"column {name!r}: SET without member metadata")
        uint = _UINT_CODES.get(col.size)
        convert = values.set_members(tuple(col.set_values), raw_bytes=uint is None)
        return ColumnPlan(name, uint or f"{col.size}s", col.size, 0, convert)
    if code in _STRING_CODES:
        # The library's rule: more than 255 bytes declared -> a 2-byte length prefix.
        prefix = 2 if col.max_length > 255 else 1
        return ColumnPlan(name, None, 0, prefix, _text_or_bytes(col, t))
    if code in (FIELD_TYPE.BLOB, FIELD_TYPE.GEOMETRY):
        if not 1 <= col.length_size <= 4:
            raise FastPathUnsupported(f"column {name!r}: BLOB length size {col.length_size}")
        return ColumnPlan(name, None, 0, col.length_size, _text_or_bytes(col, t))
    if code == FIELD_TYPE.JSON:
        # MySQL's binary JSON (MariaDB's JSON is LONGTEXT, a BLOB code above): printed as the
        # server prints it (connectors.mysql.json_binary). The TABLE_MAP gives the length size.
        length_size = getattr(col, "length_size", 0)
        if not 1 <= length_size <= 4 or t.arrow_type != pa.string():
            raise FastPathUnsupported(
                f"column {name!r}: binlog type code {code} (JSON) without its length size"
            )
        return ColumnPlan(name, None, 0, length_size, values.json_document)
    # The pre-5.6 DATETIME/TIME/TIMESTAMP layouts, old DECIMAL: library path.
    raise FastPathUnsupported(f"column {name!r}: binlog type code {code} is left to the library decoder")


def _text_or_bytes(col: Any, t: MySQLType) -> Converter:
    """Strings are decoded with the column's character set, as the library does; bytes stay bytes."""
    if t.arrow_type == pa.binary():
        if t.name == "binary" and t.length:
            return values.padded_binary(t.length)
        return values.binary
    if t.arrow_type != pa.string():
        raise FastPathUnsupported(f"column {col.name!r}: {t.source_type} from a string column")
    if col.character_set_name is None:
        raise FastPathUnsupported(f"column {col.name!r}: no character set in the TABLE_MAP metadata")
    encoding = RowsEvent.charset_to_encoding(col.character_set_name)
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        # The library keeps the bytes of a character set Python has no codec for.
        raise FastPathUnsupported(f"column {col.name!r}: no Python codec for {encoding!r}") from None
    return values.utf8 if codec == "utf-8" else values.decoded(codec)
