"""Table definitions: column names, MySQL types, Arrow types and the primary key.

Two readers produce the same `TableDefinition`: `read_table_definition` from information_schema
(snapshots; the stream's fallback) and `definition_from_table_map` from a binlog TABLE_MAP event.
While streaming, the binlog's own metadata is the truth: information_schema shows the table as it
is *now*, which after an ALTER no longer matches older events still in the binlog (the wrong-names
bug mysql-replication users hit, upstream issues #232 and #600).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pymysql

from connectors.events import Column, TableId, TableSchema
from connectors.mysql.connection import fetch_all, fetch_dicts
from connectors.mysql.types import BLOB_TYPES, TEXT_TYPES, MySQLType, type_from_information_schema
from connectors.source import SourceError

_COLUMNS_SQL = """
SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, CHARACTER_MAXIMUM_LENGTH,
       NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s
ORDER BY ORDINAL_POSITION
"""
_PRIMARY_KEY_SQL = """
SELECT COLUMN_NAME FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY'
ORDER BY SEQ_IN_INDEX
"""


class NoPrimaryKeyError(SourceError):
    """A captured table has no primary key, so changes cannot be merged by key."""


@dataclass(frozen=True, slots=True)
class TableDefinition:
    """A table's `TableSchema` plus the MySQL type of each column (same order)."""

    schema: TableSchema
    types: tuple[MySQLType, ...]

    @property
    def table(self) -> TableId:
        return self.schema.table


def no_primary_key(table: TableId) -> NoPrimaryKeyError:
    """The error for a table without a primary key, saying what to do."""
    return NoPrimaryKeyError(
        f"table {table.schema}.{table.name} has no primary key; CDC merges changes by key. "
        f"Add one (ALTER TABLE {table.schema}.{table.name} ADD PRIMARY KEY (...)) or leave the table out of `tables`"
    )


def list_base_tables(conn: pymysql.connections.Connection, database: str) -> list[str]:
    """Base tables (not views) of a database, sorted."""
    rows = fetch_all(
        conn,
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'"
        " ORDER BY TABLE_NAME",
        (database,),
    )
    return [r[0] for r in rows]


def read_primary_key(conn: pymysql.connections.Connection, table: TableId) -> tuple[str, ...]:
    """The primary key columns in key order (empty if none)."""
    return tuple(r[0] for r in fetch_all(conn, _PRIMARY_KEY_SQL, (table.schema, table.name)))


def read_table_definition(conn: pymysql.connections.Connection, table: TableId) -> TableDefinition:
    """The table as information_schema shows it now; SourceError if missing or without a key."""
    rows = fetch_dicts(conn, _COLUMNS_SQL, (table.schema, table.name))
    if not rows:
        raise SourceError(f"table {table.schema}.{table.name} does not exist (or the CDC user cannot see it)")
    key = read_primary_key(conn, table)
    if not key:
        raise no_primary_key(table)
    types = tuple(type_from_information_schema(r) for r in rows)
    columns = tuple(
        Column(
            name=r["COLUMN_NAME"],
            type=t.arrow_type,
            nullable=r["IS_NULLABLE"] == "YES",
            source_type=t.source_type,
        )
        for r, t in zip(rows, types, strict=True)
    )
    return TableDefinition(TableSchema(table, columns, key), types)


# ---------------------------------------------------------------------------------------------
# From the binlog (mysql-replication's TableMapEvent, FIELD_TYPE codes)

_FT_TINY, _FT_SHORT, _FT_LONG, _FT_FLOAT, _FT_DOUBLE = 1, 2, 3, 4, 5
_FT_TIMESTAMP, _FT_LONGLONG, _FT_INT24, _FT_DATE, _FT_TIME, _FT_DATETIME, _FT_YEAR = 7, 8, 9, 10, 11, 12, 13
_FT_NEWDATE, _FT_VARCHAR, _FT_BIT, _FT_TIMESTAMP2, _FT_DATETIME2, _FT_TIME2 = 14, 15, 16, 17, 18, 19
_FT_JSON, _FT_NEWDECIMAL, _FT_ENUM, _FT_SET, _FT_BLOB, _FT_VAR_STRING, _FT_STRING, _FT_GEOMETRY = (
    245,
    246,
    247,
    248,
    252,
    253,
    254,
    255,
)
_INTEGER_CODES = {
    _FT_TINY: "tinyint",
    _FT_SHORT: "smallint",
    _FT_INT24: "mediumint",
    _FT_LONG: "int",
    _FT_LONGLONG: "bigint",
}
_TEMPORAL_CODES = {
    _FT_DATE: "date",
    _FT_NEWDATE: "date",
    _FT_TIME: "time",
    _FT_TIME2: "time",
    _FT_DATETIME: "datetime",
    _FT_DATETIME2: "datetime",
    _FT_TIMESTAMP: "timestamp",
    _FT_TIMESTAMP2: "timestamp",
    _FT_YEAR: "year",
}
# Bytes per character, to turn the binlog's byte lengths back into declared CHAR/VARCHAR lengths.
_MAX_BYTES_PER_CHAR = {
    "utf8mb4": 4, "utf8mb3": 3, "utf8": 3, "utf16": 4, "utf16le": 4, "utf32": 4, "ucs2": 2, "gb18030": 4,
    "big5": 2, "cp932": 2, "eucjpms": 3, "euckr": 2, "gb2312": 2, "gbk": 2, "sjis": 2, "ujis": 3,
}  # fmt: skip


def _charset_of(collation: str | None) -> str | None:
    return None if collation is None else collation.split("_", 1)[0]


def _is_binary(col: Any) -> bool:
    return getattr(col, "collation_name", None) == "binary"


def type_from_binlog_column(col: Any, *, unsigned: bool) -> MySQLType:
    """Build the type from one mysql-replication ``Column`` of a TABLE_MAP event."""
    code = col.type
    if code in _INTEGER_CODES:
        return MySQLType(_INTEGER_CODES[code], unsigned=unsigned)
    if code == _FT_NEWDECIMAL:
        return MySQLType("decimal", unsigned=unsigned, precision=col.precision, scale=col.decimals)
    if code == _FT_FLOAT:
        return MySQLType("float", unsigned=unsigned)
    if code == _FT_DOUBLE:
        return MySQLType("double", unsigned=unsigned)
    if code in (_FT_VARCHAR, _FT_VAR_STRING, _FT_STRING):
        fixed = code == _FT_STRING
        if _is_binary(col):
            return MySQLType("binary" if fixed else "varbinary", length=col.max_length)
        per_char = _MAX_BYTES_PER_CHAR.get(_charset_of(col.collation_name) or "", 1)
        return MySQLType("char" if fixed else "varchar", length=col.max_length // per_char)
    if code == _FT_BLOB:
        size = min(max(col.length_size, 1), 4) - 1
        return MySQLType(BLOB_TYPES[size] if _is_binary(col) else TEXT_TYPES[size])
    if code == _FT_JSON:
        return MySQLType("json")
    if code == _FT_ENUM:
        return MySQLType("enum", members=tuple(col.enum_values[1:]))  # [0] is the invalid value ''
    if code == _FT_SET:
        return MySQLType("set", members=tuple(col.set_values))
    if code == _FT_BIT:
        return MySQLType("bit", length=col.bits)
    if code in _TEMPORAL_CODES:
        return MySQLType(_TEMPORAL_CODES[code], fsp=getattr(col, "fsp", 0) or 0)
    if code == _FT_GEOMETRY:
        return MySQLType("geometry")
    raise SourceError(f"binlog column {col.name!r} has type code {code}, which the source does not support")


def table_map_is_complete(event: Any) -> bool:
    """Whether a TABLE_MAP event carries full metadata (binlog_row_metadata=FULL).

    Needed: a name for every column, ENUM/SET member lists, and signedness for numeric columns.
    """
    meta = event.optional_metadata
    if len(meta.column_name_list) != event.column_count:
        return False
    for col in event.columns:
        if col.type == _FT_ENUM and not col.enum_values:
            return False
        if col.type == _FT_SET and col.set_values is None:
            return False
    has_numeric = any(
        c.type in (*_INTEGER_CODES, _FT_NEWDECIMAL, _FT_FLOAT, _FT_DOUBLE, _FT_YEAR) for c in event.columns
    )
    return bool(meta.unsigned_column_list) or not has_numeric


def table_map_key(event: Any) -> tuple[str, ...]:
    """Primary key column names from the TABLE_MAP metadata, in key order (empty if absent)."""
    meta = event.optional_metadata
    indexes: Sequence[int] = list(meta.simple_primary_key_list) or list(meta.primary_keys_with_prefix)
    return tuple(event.columns[i].name for i in indexes)


def _nullable(null_bitmask: bytes, i: int) -> bool:
    return bool(null_bitmask[i // 8] & (1 << (i % 8)))


def definition_from_table_map(event: Any, table: TableId, key: tuple[str, ...]) -> TableDefinition:
    """The table as this TABLE_MAP event describes it (full metadata required), keyed by `key`."""
    types = tuple(type_from_binlog_column(col, unsigned=bool(col.unsigned)) for col in event.columns)
    columns = tuple(
        Column(
            name=col.name,
            type=t.arrow_type,
            nullable=_nullable(event.null_bitmask, i),
            source_type=t.source_type,
        )
        for i, (col, t) in enumerate(zip(event.columns, types, strict=True))
    )
    return TableDefinition(TableSchema(table, columns, key), types)


def table_map_fingerprint(event: Any) -> tuple[Any, ...]:
    """A hashable summary of a TABLE_MAP event's layout: equal fingerprints, equal definitions."""
    cols = tuple(
        (
            c.type,
            c.name,
            c.unsigned,
            c.collation_name,
            tuple(c.enum_values or ()),
            tuple(c.set_values or ()),
            getattr(c, "max_length", None),
            getattr(c, "precision", None),
            getattr(c, "decimals", None),
            getattr(c, "fsp", None),
            getattr(c, "length_size", None),
            getattr(c, "bits", None),
        )
        for c in event.columns
    )
    meta = event.optional_metadata
    return (
        event.schema,
        event.table,
        bytes(event.null_bitmask),
        tuple(meta.simple_primary_key_list),
        tuple(meta.primary_keys_with_prefix),
        cols,
    )
