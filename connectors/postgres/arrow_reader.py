"""Snapshot chunks read straight into Arrow with the ADBC PostgreSQL driver, identical to the text path.

The text path (`connectors.postgres.snapshot._read_chunks`) has psycopg2 build one Python str per
value and Arrow parse them again. The ADBC driver (libpq, C++) runs the query as ``COPY (...) TO
STDOUT (FORMAT binary)`` and decodes the binary values into Arrow arrays itself. Its own renderings
are not all PostgreSQL's (numeric NaN prints 'nan', "char" bytes are not UTF-8, interval becomes
month_day_nano, arrays lose their bounds and dimensions, unknown types arrive as send-format bytes;
infinite dates and timestamps wrap silently), so only the columns whose binary values it hands
over unchanged are read natively, and each is then converted by the binary codec of
`connectors.postgres.binary` (proven equal to the text path by tests/connectors/test_postgres_binary.py)
from the raw value the codec expects:

=================================================  ==========================================
column type                                        read as / converted by
=================================================  ==========================================
int2 / int4 / int8 / float4 / float8 / bool         native, as they are
oid                                                 int32 -> its uint32 bits -> int64
bytea                                               native binary
text / varchar / bpchar / name / json / enums       native string (checked as UTF-8)
jsonb                                               native (the text after the version byte)
uuid                                                16 bytes -> the uuid codec's text
date / time / timestamp / timestamptz               native, back to PostgreSQL's epoch -> the
                                                    type's binary codec (range checks included)
numeric(p,s)                                        ADBC's digits text -> the text converter
everything else (numeric without typmod, interval,  ``concat(col)``: the output function's text
timetz, "char", arrays, money, inet, ranges, ...)   -> the text converter, exactly as now
=================================================  ==========================================

A chunk in which any column fails its conversion (infinity, BC, year > 9999, numeric NaN, a
multi-dimensional array, ...) is read again through the text path, which quarantines the rows
exactly as it always has (the re-read is a new autocommit statement after the same key: as valid a
chunk as the first, docs/decisions.md §5). The ADBC connection must be in autocommit (`connect_arrow`),
or a transaction would stay open between chunks and hold back the xmin horizon.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from connectors.db_auth import connection_secret, scrub
from connectors.db_tls import is_libpq_tls_error, libpq_options, tls_failure
from connectors.events import UTC_MICROS, QuarantinedRow, TableChanges
from connectors.postgres import binary
from connectors.postgres.catalog import Catalog, TableLayout, qualified
from connectors.postgres.columns import ChangeBuffer
from connectors.postgres.config import PostgresSourceConfig
from connectors.postgres.connection import SESSION_OPTIONS
from connectors.postgres.types import CONVERSION_ERRORS, ColumnType
from connectors.snapshot_chunks import PerThread, chunks_after, planned_chunks
from connectors.source import SourceError

log = logging.getLogger(__name__)

RawConverter = Callable[[pa.Array], pa.Array]

_PG_EPOCH_MICROS = pa.scalar(binary.PG_EPOCH_MICROS, pa.int64())
_PG_EPOCH_DAYS = pa.scalar(binary.PG_EPOCH_DAYS, pa.int32())


_KEY_TEXT_CODECS = tuple(binary.SCALARS[n] for n in ("int2", "int4", "int8", "uuid")) + (binary.TEXT,)


class FastConversionRefused(ValueError):
    """ADBC's column is not of the expected type; the chunk goes to the text path."""


@dataclass(frozen=True, slots=True)
class ArrowChunk:
    """One chunk, as `connectors.postgres.snapshot._Chunk`: its rows as changes, the quarantined
    rows, the key of its last row as the server's text (None without rows), how many rows the
    statement returned, and whether it was not full. `fast`: ADBC read it."""

    changes: TableChanges
    quarantined: tuple[QuarantinedRow, ...]
    key: tuple[str, ...] | None
    rows: int
    last: bool
    fast: bool


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """How one table layout is read through ADBC: the SELECT list and a converter per column."""

    layout: TableLayout
    select: sql.Composed  # the columns, then the text of the key columns not in `key_from_column`
    converters: tuple[RawConverter, ...]
    native: tuple[bool, ...]  # per column: read natively (else as its output text)
    # per key column: the converted column whose value's str() is the output text (None: selected)
    key_from_column: tuple[int | None, ...]


def plan_chunk_reads(layout: TableLayout) -> ChunkPlan:
    """The ADBC plan for `layout` (every column type has one: the text form is the fallback)."""
    expressions: list[sql.Composable] = []
    converters: list[RawConverter] = []
    native: list[bool] = []
    for column, column_type in zip(layout.schema.columns, layout.types, strict=True):
        ident = sql.Identifier(column.name)
        converter = _native_converter(column_type)
        if converter is None:
            expressions.append(_output_text(ident))
            converters.append(_text_converter(column_type))
            native.append(False)
        else:
            expressions.append(ident)
            converters.append(converter)
            native.append(True)
    key_from_column: list[int | None] = []
    for key, index in zip(layout.schema.key, layout.key_indexes, strict=True):
        # Integers print as str(int); text-like keys (and uuid, converted) are their text already.
        if layout.types[index].binary in _KEY_TEXT_CODECS:
            key_from_column.append(index)
        else:
            key_from_column.append(None)
            expressions.append(_output_text(sql.Identifier(key)))
    select = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(expressions), qualified(layout.table))
    return ChunkPlan(layout, select, tuple(converters), tuple(native), tuple(key_from_column))


def _output_text(ident: sql.Identifier) -> sql.Composed:
    # concat() renders its argument with the type's output function (bool 't', char(n) padded,
    # inet without /32 - unlike ::text); NULL must stay NULL, not ''.
    return sql.SQL("CASE WHEN {0} IS NULL THEN NULL ELSE concat({0}) END").format(ident)


def _text_converter(column_type: ColumnType) -> RawConverter:
    def convert(values: pa.Array) -> pa.Array:
        return column_type.convert(_as_string(values))

    return convert


def _as_string(values: pa.Array) -> pa.Array:
    if pa.types.is_string(values.type):
        values.validate(full=True)  # UTF-8; a server in UTF8 sends nothing else
        return values
    if isinstance(values, pa.ExtensionArray):
        return _as_string(values.storage)
    if pa.types.is_large_string(values.type):
        return _as_string(values.cast(pa.string()))
    raise FastConversionRefused(f"expected text from ADBC, got {values.type}")


def _expect(kind: Callable[[pa.DataType], bool], values: pa.Array) -> pa.Array:
    if isinstance(values, pa.ExtensionArray):
        values = values.storage
    if not kind(values.type):
        raise FastConversionRefused(f"unexpected ADBC column type {values.type}")
    return values


def _native_converter(column_type: ColumnType) -> RawConverter | None:
    """The converter of ADBC's native array for this column, or None to read its output text."""
    codec = column_type.binary
    scalars = binary.SCALARS
    target = column_type.arrow_type
    if codec is None or pa.types.is_list(target):
        return None
    for name, arrow_kind in (
        ("int2", pa.types.is_int16),
        ("int4", pa.types.is_int32),
        ("int8", pa.types.is_int64),
        ("float4", pa.types.is_float32),
        ("float8", pa.types.is_float64),
        ("bool", pa.types.is_boolean),
        ("bytea", pa.types.is_binary),
    ):
        if codec is scalars[name]:
            return _checked(arrow_kind)
    if codec is scalars["oid"]:
        return lambda v: _expect(pa.types.is_int32, v).view(pa.uint32()).cast(pa.int64())
    if codec is binary.TEXT or codec is scalars["jsonb"]:  # text-like types, json, enums; jsonb's text
        return _as_string
    if codec is scalars["uuid"]:
        return lambda v: codec.convert(_expect(pa.types.is_fixed_size_binary, v).cast(pa.binary(16)))
    if codec is scalars["date"]:
        return lambda v: codec.convert(
            pc.subtract(_expect(pa.types.is_date32, v).view(pa.int32()), _PG_EPOCH_DAYS)
        )
    if codec is scalars["time"]:
        return lambda v: codec.convert(_expect(_is_time_us, v).view(pa.int64()))
    if target == UTC_MICROS and codec.code == "q":  # timestamptz, and timestamp (read in the zone)
        return lambda v: codec.convert(
            pc.subtract(_expect(_is_timestamp_us, v).view(pa.int64()), _PG_EPOCH_MICROS)
        )
    if pa.types.is_decimal(target):  # numeric(p,s): ADBC prints the digits; the text path casts
        return lambda v: column_type.convert(_as_string(v))
    return None


def _checked(kind: Callable[[pa.DataType], bool]) -> RawConverter:
    def convert(values: pa.Array) -> pa.Array:
        return _expect(kind, values)

    return convert


def _is_time_us(t: pa.DataType) -> bool:
    return pa.types.is_time64(t) and t.unit == "us"


def _is_timestamp_us(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) and t.unit == "us"


# --- reading ---------------------------------------------------------------------------------


def connect_arrow(config: PostgresSourceConfig) -> Any:
    """An ADBC connection in autocommit with the session settings, TLS and secret of `connection.connect`
    (libpq underneath: ``sslmode`` and ``sslrootcert`` mean the same; a fresh IAM token per connection)."""
    import adbc_driver_postgresql.dbapi  # an optional dependency, loaded when used

    what = f"source {config.name}: the snapshot reader's connection"
    query = urllib.parse.urlencode(
        {
            "options": SESSION_OPTIONS,
            "application_name": f"lakehouse-cdc:{config.name}",
            "connect_timeout": "10",
            **libpq_options(config, what),
        },
        quote_via=urllib.parse.quote,
    )
    secret = connection_secret(config)
    user = urllib.parse.quote(config.user, safe="")
    password = urllib.parse.quote(secret, safe="")
    database = urllib.parse.quote(config.database, safe="")
    uri = f"postgresql://{user}:{password}@{config.host}:{config.port}/{database}?{query}"
    try:
        return adbc_driver_postgresql.dbapi.connect(uri, autocommit=True)
    except Exception as exc:  # the driver's message may quote the URI: never let the password out
        message = scrub(str(exc).replace(uri, "postgresql://***"), [secret])
        if is_libpq_tls_error(message):
            raise tls_failure(config, what, message) from None
        raise SourceError(
            f"source {config.name}: cannot open the snapshot reader's connection: {message}"
        ) from None


def read_chunk(
    arrow_conn: Any,
    conn: Any,
    catalog: Catalog,
    plan: ChunkPlan,
    after: Sequence[Any] | None,
    limit: int | None,
    position: str,
    snapshot_micros: int,
    upto: Sequence[Any] | None = None,
) -> ArrowChunk:
    """One chunk ``... WHERE (key) > (after) ORDER BY key LIMIT limit`` read through ADBC; with
    `upto` (and no limit), the rows up to that key: ``... AND (key) <= (upto)``.

    `after` and `upto` are keys as the server printed them (`after` None: from the first row).
    `conn` (psycopg2, as `_read_chunks` has it) renders the statement and reads the chunk again
    through the text path when a value does not convert; `catalog` is that path's type catalog.
    """
    layout = plan.layout
    query = _chunk_sql(plan.select, layout, after, limit, upto)
    params = _chunk_params(after, upto)
    statement = query.as_string(conn) if not params else conn.cursor().mogrify(query, params).decode()
    try:
        with arrow_conn.cursor() as cur:
            cur.execute(statement)
            data = cur.fetch_arrow_table()
    except Exception as exc:  # noqa: BLE001 - a value ADBC does not decode; the text path reads (or raises) it
        log.info("chunk of %s: ADBC read failed (%s); reading it through the text path", layout.table, exc)
        data = None
    if data is not None:
        width = len(plan.converters)
        if data.num_columns != width + plan.key_from_column.count(None):
            raise SourceError(f"table {layout.table} changed while it was read; run the snapshot again")
        try:
            return _fast_chunk(plan, data, limit, position, snapshot_micros)
        except (FastConversionRefused, *CONVERSION_ERRORS, pa.ArrowTypeError) as exc:
            log.info("chunk of %s: %s; reading it through the text path", layout.table, exc)
    return read_chunk_reference(conn, catalog, layout, after, limit, position, snapshot_micros, upto)


def _chunk_sql(
    select: sql.Composed,
    layout: TableLayout,
    after: Sequence[Any] | None,
    limit: int | None,
    upto: Sequence[Any] | None = None,
) -> sql.Composed:
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in layout.schema.key)
    placeholders = sql.SQL(", ").join(sql.Placeholder() * len(layout.schema.key))
    # As the text path: the key values as untyped literals, read by the key columns' input functions.
    conditions = []
    if after is not None:
        conditions.append(sql.SQL("({}) > ({})").format(keys, placeholders))
    if upto is not None:
        conditions.append(sql.SQL("({}) <= ({})").format(keys, placeholders))
    query = select
    if conditions:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    query += sql.SQL(" ORDER BY {}").format(keys)
    if limit is not None:
        query += sql.SQL(" LIMIT {}").format(sql.Literal(limit))
    return query


def _chunk_params(after: Sequence[Any] | None, upto: Sequence[Any] | None) -> tuple[Any, ...] | None:
    params = (*(after or ()), *(upto or ()))
    return params or None


def chunk_end_after(
    conn: Any, layout: TableLayout, after: Sequence[Any] | None, rows: int
) -> tuple[str, ...] | None:
    """The key (as the server prints it) of the `rows`-th row after `after`, None if fewer are
    left: where a chunk of `rows` rows ends, found without reading the rows (`planned_chunks`)."""
    keys = [sql.Identifier(k) for k in layout.schema.key]
    select = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(_output_text(k) for k in keys), qualified(layout.table)
    )
    query = _chunk_sql(select, layout, after, None) + sql.SQL(" OFFSET {} LIMIT 1").format(
        sql.Literal(rows - 1)
    )
    with conn.cursor() as cur:
        cur.execute(query, _chunk_params(after, None))
        row = cur.fetchone()
    return None if row is None else tuple(row)


def _fast_chunk(
    plan: ChunkPlan, data: pa.Table, limit: int | None, position: str, snapshot_micros: int
) -> ArrowChunk:
    layout = plan.layout
    n = data.num_rows
    arrays = []
    for number, convert in enumerate(plan.converters):
        column = data.column(number)
        raw = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        arrays.append(convert(raw))
    key = None
    if n:
        selected = iter(range(len(plan.converters), data.num_columns))
        key = tuple(
            str((arrays[index] if index is not None else data.column(next(selected)))[n - 1].as_py())
            for index in plan.key_from_column
        )
    meta = [
        pa.repeat(pa.scalar("I", pa.string()), n),
        pa.repeat(pa.scalar(snapshot_micros, pa.int64()), n).cast(UTC_MICROS),
        pa.repeat(pa.scalar(position, pa.string()), n),
        pa.nulls(n, pa.string()),
    ]
    table = pa.Table.from_arrays([*meta, *arrays], schema=layout.schema.arrow_schema())
    return ArrowChunk(TableChanges(layout.schema, table), (), key, n, limit is None or n < limit, True)


def read_chunk_reference(
    conn: Any,
    catalog: Catalog,
    layout: TableLayout,
    after: Sequence[Any] | None,
    limit: int | None,
    position: str,
    snapshot_micros: int,
    upto: Sequence[Any] | None = None,
) -> ArrowChunk:
    """The chunk as the text path reads it (the body of `snapshot._read_chunks`)."""
    names = layout.schema.column_names
    select = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(n) for n in names), qualified(layout.table)
    )
    query = _chunk_sql(select, layout, after, limit, upto)
    raw_text = psycopg2.extensions.new_type(catalog.loaded_type_oids(), "LAKEHOUSE_RAW_TEXT", _raw_text)
    with conn.cursor() as cur:
        psycopg2.extensions.register_type(raw_text, cur)
        cur.execute(query, _chunk_params(after, upto))
        rows = cur.fetchall()
        if rows and len(cur.description) != len(names):
            raise SourceError(f"table {layout.table} changed while it was read; run the snapshot again")
    buffer = ChangeBuffer(layout)
    key = None
    if rows:
        key = tuple(rows[-1][i] for i in layout.key_indexes)
        for target, values in zip(buffer.columns, zip(*rows, strict=True), strict=True):
            target.extend(values)
        buffer.ops.extend(["I"] * len(rows))
        buffer.close_segment(position, snapshot_micros, None)
    changes, quarantined = buffer.build()
    return ArrowChunk(changes, tuple(quarantined), key, len(rows), limit is None or len(rows) < limit, False)


def _raw_text(value: str | None, _cursor: Any) -> str | None:
    return value


def read_table_chunks(
    arrow_conn: Any,
    conn: Any,
    catalog: Catalog,
    plan: ChunkPlan,
    chunk_rows: int,
    position: str,
    snapshot_micros: int,
    after: Sequence[Any] | None = None,
    readers: int = 1,
    open_readers: Callable[[], tuple[Any, Any]] | None = None,
) -> Iterator[ArrowChunk]:
    """The table's chunks after `after`, as `snapshot._read_chunks` yields them: a full chunk is
    followed by another read, which may find no rows (that chunk carries the key it started after).

    With `readers` > 1 the chunks are planned ahead on `conn` and read by that many threads
    (`planned_chunks`), each on its own ``open_readers()`` pair of (ADBC, psycopg2) connections."""

    def read(last: tuple[Any, ...] | None) -> ArrowChunk:
        return read_chunk(arrow_conn, conn, catalog, plan, last, chunk_rows, position, snapshot_micros)

    start = None if after is None else tuple(after)
    if readers <= 1 or open_readers is None:
        return chunks_after(read, start)

    def bound(last: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        return chunk_end_after(conn, plan.layout, last, chunk_rows)

    pairs = PerThread(open_readers, _close_pair)

    def read_between(last: tuple[Any, ...] | None, end: tuple[Any, ...]) -> ArrowChunk:
        arrow, text = pairs.get()
        return read_chunk(arrow, text, catalog, plan, last, None, position, snapshot_micros, upto=end)

    def planned() -> Iterator[ArrowChunk]:
        try:
            name = f"snapshot-{plan.layout.table.name}"
            yield from planned_chunks(read, bound, read_between, start, readers, name)
        finally:
            pairs.close()

    return planned()


def _close_pair(pair: tuple[Any, Any]) -> None:
    for conn in pair:
        with contextlib.suppress(Exception):
            conn.close()
