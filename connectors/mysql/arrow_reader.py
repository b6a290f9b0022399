"""Snapshot chunks read straight into Arrow with connectorx, identical to the PyMySQL path.

The PyMySQL path (`connectors.mysql.snapshot._TableReader`) spends about 85% of its time decoding
rows in pure Python. connectorx (Rust, binary protocol) reads a result set into Arrow arrays with
no Python object per value, 5-10x faster here (bench/bench_chunk_readers.py). Its own type mapping
is not exact for every MySQL type, so each column is selected in a form it reads exactly, and the
Arrow array is then converted to the lake's type with vectorised casts:

===========================================  ==========================  ==============================
column                                        selected as                 then
===========================================  ==========================  ==============================
integers (signed and unsigned), YEAR          the column (int / uint)     cast to the lake's type
FLOAT / DOUBLE                                the column (float32/64)     (the binary protocol is exact)
CHAR / VARCHAR / TEXT / ENUM                  the column (string)
SET                                           the column ('a,c')          split on ',' ('' -> [])
BINARY / VARBINARY / BLOB                     the column (large_binary)   cast to binary
BIT(n)                                        CAST(... AS UNSIGNED)       two's complement into int64
DECIMAL                                       the server's text           cast to decimal128/256: connectorx
                                                                          fails or rounds past 28 digits
JSON                                          the server's text           connectorx re-serialises MySQL's
                                                                          binary JSON (spaces differ)
DATE / DATETIME / TIMESTAMP                   the server's text (UTC      parsed by Arrow; connectorx
                                              session for TIMESTAMP)      panics on zero dates and
                                                                          accepts year 0000
TIME                                          the server's text           as it is (what the PyMySQL
                                                                          path prints, `types._time_text`)
===========================================  ==========================  ==============================

"The server's text" is ``CAST(col AS CHAR CHARACTER SET utf8mb4)``: what the text protocol sends
PyMySQL. GEOMETRY columns and keys of types other than integers, strings, binary strings, DECIMAL
and temporal types are not planned (`ArrowReadUnsupported`): such tables keep the PyMySQL path.

Exactness: whenever a converted column has a value the fast conversion refuses (a zero date, year
0000, anything Arrow cannot parse) the chunk is read again through the reference path (PyMySQL +
`RowConverter.for_snapshot`), which quarantines exactly as it always has. A re-read is a new
autocommit statement after the same key: as valid a chunk as the first read (docs/decisions.md
§11: the stream replays every change after the low watermark over it).
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import connectorx
import pyarrow as pa
import pyarrow.compute as pc
import pymysql
import pymysql.converters
import pymysql.cursors

from connectors.events import UTC_MICROS, Op, QuarantinedRow, TableChanges
from connectors.mysql.columns import ConvertedRows, RowConverter, changes_table
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.schema import TableDefinition
from connectors.mysql.types import (
    BLOB_TYPES,
    INTEGER_BITS,
    TEXT_TYPES,
    MySQLType,
    _wall_times_to_utc,
    quote_identifier,
    snapshot_select_expression,
)
from connectors.snapshot_chunks import PerThread, chunks_after, planned_chunks
from connectors.source import SourceError

logger = logging.getLogger(__name__)

KeyValues = tuple[Any, ...]
ColumnConverter = Callable[[pa.Array], pa.Array]
KeyDecoder = Callable[[Any], Any]

# Session settings of the connectorx connection: TIMESTAMP text in UTC, as `connection.connect`
# sets for PyMySQL.
_SESSION = ["SET SESSION time_zone = '+00:00'"]
NO_LIMIT = 2**63 - 1  # the LIMIT of a chunk read up to a planned end key
_FIRST_DAY = pa.scalar(dt.date(1, 1, 1), pa.date32())
_FIRST_INSTANT = pa.scalar(dt.datetime(1, 1, 1), pa.timestamp("us"))
_STRING_TYPES = frozenset({"char", "varchar", "enum", *TEXT_TYPES})
_BINARY_TYPES = frozenset({"binary", "varbinary", *BLOB_TYPES})
_EMPTY_SET = pa.scalar([], pa.list_(pa.string()))


class ArrowReadUnsupported(SourceError):
    """The table has a column (or key) type this reader does not read exactly; use PyMySQL."""


class FastConversionRefused(ValueError):
    """A value the vectorised conversion does not take; the chunk goes to the reference path."""


@dataclass(frozen=True, slots=True)
class ArrowChunk:
    """One chunk, as `connectors.mysql.snapshot._Chunk`: its rows as changes, the quarantined rows,
    the raw key of its last row (PyMySQL's Python values; None without rows), how many rows the
    statement returned, and whether it was not full (no rows after it). `fast`: connectorx read it."""

    changes: TableChanges
    quarantined: tuple[QuarantinedRow, ...]
    key: KeyValues | None
    rows: int
    last: bool
    fast: bool


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """How one table definition is read by connectorx: SELECT expressions and per-column converters."""

    definition: TableDefinition
    zone: str
    expressions: tuple[str, ...]  # the columns, then the raw key columns
    converters: tuple[ColumnConverter, ...]
    key_decoders: tuple[KeyDecoder, ...]
    reference_select: str  # `_TableReader.select` without FROM: the PyMySQL path's column list

    @property
    def width(self) -> int:
        return len(self.converters)

    @property
    def table_sql(self) -> str:
        """The quoted ``db.table``."""
        table = self.definition.table
        return f"{quote_identifier(table.schema)}.{quote_identifier(table.name)}"

    @property
    def key_sql(self) -> str:
        """The quoted key columns, comma-separated (the ORDER BY of every chunk)."""
        return ", ".join(quote_identifier(k) for k in self.definition.schema.key)


def plan_chunk_reads(definition: TableDefinition, zone: str) -> ChunkPlan:
    """The plan for `definition`, DATETIME read in `zone`; `ArrowReadUnsupported` for other tables."""
    schema = definition.schema
    expressions: list[str] = []
    converters: list[ColumnConverter] = []
    for number, (column, t) in enumerate(zip(schema.columns, definition.types, strict=True)):
        expression, converter = _column_plan(column.name, t, zone)
        expressions.append(f"{expression} AS {quote_identifier(f'c{number}')}")
        converters.append(converter)
    types = dict(zip(schema.column_names, definition.types, strict=True))
    key_decoders = []
    for number, key in enumerate(schema.key):
        expression, decode = _key_plan(key, types[key])
        expressions.append(f"{expression} AS {quote_identifier(f'k{number}')}")
        key_decoders.append(decode)
    reference = [
        snapshot_select_expression(c.name, t) for c, t in zip(schema.columns, definition.types, strict=True)
    ]
    reference += [quote_identifier(k) for k in schema.key]
    return ChunkPlan(
        definition, zone, tuple(expressions), tuple(converters), tuple(key_decoders), ", ".join(reference)
    )


def _text_of(column: str) -> str:
    return f"CAST({quote_identifier(column)} AS CHAR CHARACTER SET utf8mb4)"


def _column_plan(name: str, t: MySQLType, zone: str) -> tuple[str, ColumnConverter]:
    quoted = quote_identifier(name)
    n = t.name
    target = t.arrow_type
    if n in INTEGER_BITS or n in ("year", "float", "double"):
        return quoted, _cast(target)
    if n in _STRING_TYPES:
        return quoted, _cast(target)
    if n in _BINARY_TYPES:
        return quoted, _cast(target)
    if n == "set":
        return quoted, _set_members
    if n == "bit":
        return f"CAST({quoted} AS UNSIGNED)", _bit_pattern
    if n == "decimal":
        return _text_of(name), _decimal(target)
    if n == "json":
        return _text_of(name), _cast(target)
    if n == "date":
        return _text_of(name), _date
    if n == "datetime":
        return _text_of(name), _datetime(zone)
    if n == "timestamp":
        return _text_of(name), _timestamp
    if n == "time":
        return _text_of(name), _cast(target)
    raise ArrowReadUnsupported(f"column {name!r} of type {t.source_type} is read by the PyMySQL path only")


def _key_plan(name: str, t: MySQLType) -> tuple[str, KeyDecoder]:
    """The raw key column as PyMySQL returns it (what `key_parameters` continues after)."""
    n = t.name
    if n in INTEGER_BITS or n in _STRING_TYPES or n in _BINARY_TYPES:
        return quote_identifier(name), _same
    decoders: dict[str, KeyDecoder] = {
        "decimal": decimal.Decimal,
        "year": int,
        "float": float,
        "double": float,
        "date": pymysql.converters.convert_date,
        "datetime": pymysql.converters.convert_datetime,
        "timestamp": pymysql.converters.convert_datetime,
        "time": pymysql.converters.convert_timedelta,
    }
    if n not in decoders:
        raise ArrowReadUnsupported(
            f"key column {name!r} of type {t.source_type} is read by the PyMySQL path only"
        )
    return _text_of(name), decoders[n]


def _same(value: Any) -> Any:
    return value


# --- column converters: raise FastConversionRefused (or an Arrow error) to use the reference path


def _cast(target: pa.DataType) -> ColumnConverter:
    def convert(values: pa.Array) -> pa.Array:
        return values if values.type == target else values.cast(target)

    return convert


def _decimal(target: pa.DataType) -> ColumnConverter:
    def convert(values: pa.Array) -> pa.Array:
        # The server prints exactly `scale` fraction digits, so the cast never rounds (it would
        # raise rather than lose a digit).
        return values.cast(target)

    return convert


def _set_members(values: pa.Array) -> pa.Array:
    # SET text is 'a,c' in definition order, '' for the empty set (members cannot contain ',').
    text = values.cast(pa.string())
    split = pc.split_pattern(text, ",")
    empty = pc.fill_null(pc.equal(text, ""), False)
    return pc.if_else(empty, _EMPTY_SET, split)


def _bit_pattern(values: pa.Array) -> pa.Array:
    # BIT(64) above 2^63-1 keeps its bit pattern (two's complement), as `types._bit_wrap` does.
    return values.cast(pa.int64(), safe=False)


def _date(values: pa.Array) -> pa.Array:
    days = values.cast(pa.date32())  # '0000-00-00' and '2024-00-10' do not parse
    if pc.any(pc.less(days, _FIRST_DAY)).as_py():
        raise FastConversionRefused("DATE before 0001-01-01 (Python's date cannot hold it)")
    return days


def _naive(values: pa.Array) -> pa.Array:
    naive = values.cast(pa.timestamp("us"))
    if pc.any(pc.less(naive, _FIRST_INSTANT)).as_py():
        raise FastConversionRefused("DATETIME/TIMESTAMP before year 1 (Python's datetime cannot hold it)")
    return naive


def _datetime(zone: str) -> ColumnConverter:
    def convert(values: pa.Array) -> pa.Array:
        naive = _naive(values)
        if zone == "UTC":
            return naive.cast(UTC_MICROS)
        try:  # `types._wall_times_to_utc`'s first step, without Python values
            local = pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="raise")
            return local.cast(UTC_MICROS)
        except pa.ArrowInvalid:
            # A wall time in a DST gap (rare): the reference function itself, on Python values.
            return _wall_times_to_utc(naive.to_pylist(), zone)

    return convert


def _timestamp(values: pa.Array) -> pa.Array:
    # The session is in UTC; a zero TIMESTAMP does not parse.
    return _naive(values).cast(UTC_MICROS)


# --- reading ---------------------------------------------------------------------------------


def check_connection_supported(config: MySQLSourceConfig) -> None:
    """Raise `ArrowReadUnsupported` when connectorx cannot connect as the source's settings ask.

    connectorx's MySQL driver (the Rust ``mysql`` crate) takes neither a CA file to verify the
    server against nor a password that changes per connection (a connection string is built once
    per table, while an IAM token lives 15 minutes). Such sources read their snapshot chunks through
    PyMySQL, which honours both; 'prefer' and 'disable' keep connectorx (plain, as before).
    """
    if config.auth == "iam":
        raise ArrowReadUnsupported("auth = 'iam': connectorx cannot present a fresh IAM token per connection")
    if config.tls.mode not in ("prefer", "disable"):
        raise ArrowReadUnsupported(
            f"tls.mode = '{config.tls.mode}': connectorx cannot require or verify TLS with tls.ca_file"
        )


def connectorx_url(config: MySQLSourceConfig) -> str:
    """connectorx's connection string for the source (holds the password: never log it)."""
    user = urllib.parse.quote(config.user, safe="")
    password = urllib.parse.quote(config.password.get_secret_value(), safe="")
    database = urllib.parse.quote(config.database, safe="")
    return f"mysql://{user}:{password}@{config.host}:{config.port}/{database}"


def redacted(text: str, url: str) -> str:
    """`text` (an error message) without the connection string or its password."""
    password = urllib.parse.unquote(urllib.parse.urlsplit(url).password or "")
    text = text.replace(url, "mysql://***")
    for secret in {password, urllib.parse.quote(password, safe="")} - {""}:
        text = text.replace(secret, "***")
    return text


def sql_literal(value: Any) -> str:
    """A key value as a SQL literal independent of NO_BACKSLASH_ESCAPES (strings as hex)."""
    if isinstance(value, str):
        # The column's collation wins over the literal's (coercibility), as for PyMySQL's literal.
        return f"_utf8mb4 X'{value.encode().hex()}'" if value else "_utf8mb4''"
    if isinstance(value, bytes | bytearray):
        return f"X'{bytes(value).hex()}'" if value else "_binary''"
    if isinstance(value, bool) or value is None:
        raise TypeError(f"key value {value!r} has no literal form here")
    return str(pymysql.converters.escape_item(value, "utf8mb4"))


def read_chunk(
    url: str,
    plan: ChunkPlan,
    where: str,
    params: Sequence[Any],
    limit: int,
    *,
    position_text: str,
    snapshot_ts: dt.datetime,
    reference_conn: pymysql.connections.Connection,
) -> ArrowChunk:
    """Read one chunk ``SELECT ... FROM table [where] ORDER BY key LIMIT limit`` into Arrow.

    `where` and `params` are as `_TableReader._read_range` builds them (``%s`` placeholders,
    `key_where` builds both). The result equals
    `_TableReader.convert` of the PyMySQL rows; a chunk with a value the vectorised conversion
    refuses is read again with PyMySQL on `reference_conn` (a connection like `_TableReader`'s).
    """
    order = f" ORDER BY {plan.key_sql} LIMIT {int(limit)}"
    condition = where % tuple(sql_literal(v) for v in params) if params else where
    query = f"SELECT {', '.join(plan.expressions)} FROM {plan.table_sql}{condition}{order}"
    try:
        data = connectorx.read_sql(url, query, return_type="arrow", pre_execution_query=_SESSION)
    except BaseException as exc:  # a Rust panic is a BaseException (pyo3_runtime.PanicException)
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        # A value connectorx does not decode (or a lost connection, which PyMySQL then reports).
        logger.info(
            "chunk of %s: connectorx failed (%s); reading it with PyMySQL",
            plan.definition.table, redacted(str(exc), url),
        )  # fmt: skip
        data = None
    if data is not None:
        if data.num_columns != plan.width + len(plan.key_decoders):
            raise SourceError(f"table {plan.definition.table} changed while it was read; run it again")
        try:
            return _fast_chunk(plan, data, limit, position_text, snapshot_ts)
        except (FastConversionRefused, pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError) as exc:
            logger.info("chunk of %s: %s; reading it with PyMySQL", plan.definition.table, exc)
    return read_chunk_reference(
        reference_conn, plan, where, params, limit, position_text=position_text, snapshot_ts=snapshot_ts
    )


def _fast_chunk(
    plan: ChunkPlan, data: pa.Table, limit: int, position: str, snapshot_ts: dt.datetime
) -> ArrowChunk:
    n = data.num_rows
    arrays = []
    for number, convert in enumerate(plan.converters):
        column = data.column(number)
        arrays.append(convert(column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)))
    last = None
    if n:
        tail = [data.column(plan.width + i)[n - 1].as_py() for i in range(len(plan.key_decoders))]
        last = tuple(decode(v) for decode, v in zip(plan.key_decoders, tail, strict=True))
    converted = ConvertedRows([Op.INSERT.value] * n, arrays)
    table = changes_table(plan.definition, converted, snapshot_ts, position, None)
    return ArrowChunk(TableChanges(plan.definition.schema, table), (), last, n, n < limit, True)


def read_chunk_reference(
    conn: pymysql.connections.Connection,
    plan: ChunkPlan,
    where: str,
    params: Sequence[Any],
    limit: int,
    *,
    position_text: str,
    snapshot_ts: dt.datetime,
) -> ArrowChunk:
    """The chunk as the PyMySQL path reads and converts it (`_TableReader._read_range` + `convert`)."""
    definition = plan.definition
    sql = f"SELECT {plan.reference_select} FROM {plan.table_sql}{where} ORDER BY {plan.key_sql} LIMIT {int(limit)}"
    with conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute(sql, list(params))
        rows = list(cur.fetchall())
    width = plan.width
    if rows and len(rows[0]) != width + len(definition.schema.key):
        raise SourceError(f"table {definition.table} changed while it was read; run it again")
    converter = RowConverter.for_snapshot(definition, plan.zone)
    converted = converter.convert([r[:width] for r in rows], [Op.INSERT.value] * len(rows))
    data = changes_table(definition, converted, snapshot_ts, position_text, None)
    quarantined = tuple(
        QuarantinedRow(definition.table, position_text, snapshot_ts, r.reason, r.payload)
        for r in converted.rejected
    )
    last = tuple(rows[-1][width:]) if rows else None
    return ArrowChunk(
        TableChanges(definition.schema, data), quarantined, last, len(rows), len(rows) < limit, False
    )


def read_table_chunks(
    url: str,
    plan: ChunkPlan,
    chunk_rows: int,
    *,
    position_text: str,
    snapshot_ts: dt.datetime,
    reference_conn: pymysql.connections.Connection,
    after: KeyValues | None = None,
    readers: int = 1,
    open_reference: Callable[[], pymysql.connections.Connection] | None = None,
) -> Iterator[ArrowChunk]:
    """The table's chunks in key order after `after` (None: from the first), as `_TableReader._read_range`
    reads one unbounded key range: a full chunk is followed by another read, which may find no rows
    (that chunk, `last`, carries the key it started after).

    With `readers` > 1 the chunks are planned ahead and read by that many threads
    (`planned_chunks`); each thread's fallback reads use its own `open_reference()` connection,
    and `reference_conn` plans the chunk ends.
    """
    from connectors.mysql.snapshot import key_where  # the PyMySQL path's own SQL

    table = plan.definition.table
    keys = plan.definition.schema.key

    def read(last: KeyValues | None) -> ArrowChunk:
        where, params = key_where(keys, (">", last))
        return read_chunk(
            url, plan, where, params, chunk_rows, position_text=position_text, snapshot_ts=snapshot_ts,
            reference_conn=reference_conn,
        )  # fmt: skip

    if readers <= 1 or open_reference is None:
        return chunks_after(read, after)

    def bound(last: KeyValues | None) -> KeyValues | None:
        where, params = key_where(keys, (">", last))
        sql = (
            f"SELECT {plan.key_sql} FROM {plan.table_sql}{where} ORDER BY {plan.key_sql}"
            f" LIMIT 1 OFFSET {int(chunk_rows) - 1}"
        )
        with reference_conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        return tuple(rows[0]) if rows else None

    references = PerThread(open_reference, lambda conn: conn.close())

    def read_between(last: KeyValues | None, end: KeyValues) -> ArrowChunk:
        where, params = key_where(keys, (">", last), ("<=", end))
        return read_chunk(
            url, plan, where, params, NO_LIMIT, position_text=position_text, snapshot_ts=snapshot_ts,
            reference_conn=references.get(),
        )  # fmt: skip

    def planned() -> Iterator[ArrowChunk]:
        try:
            yield from planned_chunks(read, bound, read_between, after, readers, f"snapshot-{table.name}")
        finally:
            references.close()

    return planned()
