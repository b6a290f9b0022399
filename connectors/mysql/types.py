"""MySQL / MariaDB column types, their Arrow types, and how values are made exact.

A column's type is read either from ``information_schema.COLUMNS`` (snapshots, fallbacks) or from
a binlog ``TABLE_MAP`` event (streaming); both become the same `MySQLType`, so a table has the
same `TableSchema` whichever way it was read.

=========================================  ===============================  =========================================
MySQL / MariaDB type                       Arrow type                       note
=========================================  ===============================  =========================================
TINYINT / SMALLINT / MEDIUMINT / INT        int8 / int16 / int32 / int32
BIGINT                                      int64
TINYINT / SMALLINT UNSIGNED                 int16 / int32                    next wider signed integer
MEDIUMINT / INT UNSIGNED                    int32 / int64
BIGINT UNSIGNED                             decimal128(20, 0)                Athena/Spectrum have no unsigned 64-bit
DECIMAL(p, s)                               decimal128(p, s)                 decimal256(p, s) when p > 38
FLOAT / DOUBLE                              float32 / float64                snapshot reads FLOAT as DOUBLE: exact bits
CHAR / VARCHAR / *TEXT                      string
JSON                                        string                           MariaDB: the stored text (LONGTEXT);
                                                                             MySQL: the server's text (json_binary)
ENUM                                        string                           invalid value '' stays ''
SET                                         list<string>                     members in definition order; '' -> []
BINARY / VARBINARY / *BLOB / GEOMETRY       binary                           BINARY(n) right-padded with 0x00 to n
BIT(n)                                      int64                            BIT(64) above 2^63-1 wraps (two's complement)
DATE                                        date32
TIME(n)                                     string '[-]H:MM:SS[.f]'          exact MySQL text; negative fractions decoded correctly
YEAR                                        int16                            YEAR 0000 -> 0
DATETIME(n)                                 timestamp('us', tz='UTC')        wall time read in `config.timezone` (*)
TIMESTAMP(n)                                timestamp('us', tz='UTC')        the server stores UTC
=========================================  ===============================  =========================================

(*) In a DST overlap the earlier instant is taken; in a DST gap the offset in force before the
gap (Python's ``fold=0``). Not supported (a SourceError names the column type): MariaDB's UUID,
INET4 and INET6 types.

NULL is kept everywhere. A value that has no exact Arrow form (a zero date ``0000-00-00``, an
out-of-range DATETIME, a zero TIMESTAMP) raises `UnconvertibleValueError`; the caller quarantines
the row instead of dropping or mangling it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.events import UTC_MICROS
from connectors.mysql.json_binary import BinaryJson, JsonBinaryError, json_text
from connectors.source import SourceError

INTEGER_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}
_SIGNED_ARROW = {
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "mediumint": pa.int32(),
    "int": pa.int32(),
    "bigint": pa.int64(),
}
_UNSIGNED_ARROW = {
    "tinyint": pa.int16(),
    "smallint": pa.int32(),
    "mediumint": pa.int32(),
    "int": pa.int64(),
    "bigint": pa.decimal128(20, 0),
}
TEXT_TYPES = ("tinytext", "text", "mediumtext", "longtext")
BLOB_TYPES = ("tinyblob", "blob", "mediumblob", "longblob")
_STRING_TYPES = frozenset({"char", "varchar", *TEXT_TYPES, "json", "enum"})
_BINARY_TYPES = frozenset({"binary", "varbinary", *BLOB_TYPES, "geometry"})
_TEMPORAL_WITH_FSP = frozenset({"time", "datetime", "timestamp"})
SUPPORTED_TYPES = frozenset(
    {
        *INTEGER_BITS,
        "decimal",
        "float",
        "double",
        *_STRING_TYPES,
        *_BINARY_TYPES,
        "set",
        "bit",
        "date",
        "year",
    }
    | _TEMPORAL_WITH_FSP
)
# information_schema spellings that mean one of the canonical names above.
_ALIASES = {
    "integer": "int",
    "numeric": "decimal",
    "real": "double",
    "double precision": "double",
    "bool": "tinyint",
}
# Spatial types all travel as WKB bytes in the binlog and in a snapshot.
_SPATIAL = frozenset(
    {
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
    }
)


class UnconvertibleValueError(ValueError):
    """A value that has no exact Arrow representation; the row goes to quarantine."""


@dataclass(frozen=True, slots=True)
class InvalidTemporal:
    """A DATE/DATETIME the server stored but Python cannot represent (e.g. ``0000-00-00``).

    The binlog decoder fixes (connectors.mysql.patches) return this instead of None, so such a
    value is quarantined with its text rather than mistaken for NULL.
    """

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class MySQLType:
    """A column type in canonical form, whether read from information_schema or the binlog."""

    name: str  # canonical lower-case base name, e.g. "int", "varchar", "datetime"
    unsigned: bool = False
    precision: int = 0  # DECIMAL precision
    scale: int = 0  # DECIMAL scale
    length: int | None = None  # CHAR/VARCHAR characters, BINARY/VARBINARY bytes, BIT bits (None: unknown)
    fsp: int = 0  # fractional-second digits of TIME/DATETIME/TIMESTAMP
    members: tuple[str, ...] = ()  # ENUM/SET values in definition order

    def __post_init__(self) -> None:
        if self.name not in SUPPORTED_TYPES:
            raise SourceError(
                f"MySQL type {self.name!r} is not supported by the binlog source; "
                "leave the table out of `tables` or change the column type"
            )

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type the lake stores (see the module docstring)."""
        n = self.name
        if n in INTEGER_BITS:
            return (_UNSIGNED_ARROW if self.unsigned else _SIGNED_ARROW)[n]
        if n == "decimal":
            return (pa.decimal128 if self.precision <= 38 else pa.decimal256)(self.precision, self.scale)
        if n == "float":
            return pa.float32()
        if n == "double":
            return pa.float64()
        if n in _STRING_TYPES:
            return pa.string()
        if n in _BINARY_TYPES:
            return pa.binary()
        if n == "set":
            return pa.list_(pa.string())
        if n == "bit":
            return pa.int64()
        if n == "date":
            return pa.date32()
        if n == "time":
            return pa.string()  # see _time_text
        if n == "year":
            return pa.int16()
        return UTC_MICROS  # datetime, timestamp

    @property
    def source_type(self) -> str:
        """Canonical type text, identical whichever way the column was read (docs, errors)."""
        n = self.name
        if n in INTEGER_BITS:
            return f"{n} unsigned" if self.unsigned else n
        if n == "decimal":
            return f"decimal({self.precision},{self.scale})"
        if n in ("char", "varchar", "binary", "varbinary", "bit"):
            return n if self.length is None else f"{n}({self.length})"
        if n in ("enum", "set"):
            return f"{n}({','.join(_quote(m) for m in self.members)})"
        if n in _TEMPORAL_WITH_FSP and self.fsp:
            return f"{n}({self.fsp})"
        return n


def _quote(member: str) -> str:
    return "'" + member.replace("'", "''") + "'"


_MEMBER = re.compile(r"'((?:[^']|'')*)'")


def parse_members(column_type: str) -> tuple[str, ...]:
    """ENUM/SET members from an information_schema COLUMN_TYPE such as ``enum('a','it''s')``."""
    body = column_type[column_type.index("(") + 1 : column_type.rindex(")")]
    return tuple(m.replace("''", "'") for m in _MEMBER.findall(body))


def type_from_information_schema(col: dict[str, Any]) -> MySQLType:
    """Build the type from one ``information_schema.COLUMNS`` row (upper-case keys)."""
    data_type = str(col["DATA_TYPE"]).lower()
    column_type = str(col["COLUMN_TYPE"]).lower()
    name = _ALIASES.get(data_type, data_type)
    if name in _SPATIAL:
        name = "geometry"
    unsigned = " unsigned" in column_type
    if name in INTEGER_BITS:
        return MySQLType(name, unsigned=unsigned)
    if name == "decimal":
        return MySQLType(
            name,
            unsigned=unsigned,
            precision=int(col["NUMERIC_PRECISION"]),
            scale=int(col["NUMERIC_SCALE"] or 0),
        )
    if name in ("float", "double"):
        return MySQLType(name, unsigned=unsigned)
    if name in ("char", "varchar", "binary", "varbinary"):
        return MySQLType(name, length=int(col["CHARACTER_MAXIMUM_LENGTH"]))
    if name in ("enum", "set"):
        return MySQLType(name, members=parse_members(str(col["COLUMN_TYPE"])))
    if name == "bit":
        return MySQLType(name, length=int(col["NUMERIC_PRECISION"]))
    if name in _TEMPORAL_WITH_FSP:
        return MySQLType(name, fsp=int(col["DATETIME_PRECISION"] or 0))
    return MySQLType(name)


# ---------------------------------------------------------------------------------------------
# Value fix-ups. Each returns a function applied to non-NULL values before Arrow conversion, or
# None when the decoded Python value is already exact. Per-value Python calls are the cost of
# CDC, so only the types that need one get one.

Fixup = Callable[[Any], Any]
_TWO_64 = 1 << 64


def _unsigned_wrap(bits: int) -> Fixup:
    # Without binlog signedness metadata the decoder reads unsigned values as signed; undo that.
    span = 1 << bits

    def fix(v: int) -> int:
        return v + span if v < 0 else v

    return fix


def _bigint_unsigned(v: int) -> decimal.Decimal:
    return decimal.Decimal(v + _TWO_64 if v < 0 else v)


def _bit_wrap(v: int) -> int:
    # BIT(64) does not fit int64: keep the bit pattern (two's complement), as documented.
    return v - _TWO_64 if v >= 1 << 63 else v


def _set_members(members: tuple[str, ...]) -> Fixup:
    def fix(v: Any) -> list[str]:
        if isinstance(v, str):  # snapshot: 'a,c'
            return v.split(",") if v else []
        return [m for m in members if m in v]  # binlog: a Python set

    return fix


def _year(v: int) -> int:
    # The binlog stores YEAR as (year - 1900) in one byte, with 0 meaning YEAR 0000; the decoder
    # adds 1900 blindly, and 1900 itself is not a valid YEAR, so 1900 can only be 0000.
    return 0 if v == 1900 else v


def _checked_temporal(kind: str) -> Fixup:
    def fix(v: Any) -> Any:
        if isinstance(v, InvalidTemporal | str):  # binlog fix-up or PyMySQL's text for zero dates
            raise UnconvertibleValueError(f"zero or out-of-range {kind.upper()} has no exact Arrow value")
        return v

    return fix


def _timestamp_binlog(v: Any) -> Any:
    if isinstance(v, InvalidTemporal | str):
        raise UnconvertibleValueError("zero or out-of-range TIMESTAMP has no exact Arrow value")
    # TIMESTAMP '0000-00-00 00:00:00' is stored as 0 seconds since the epoch; no real TIMESTAMP
    # has 0 whole seconds (the range starts at 1970-01-01 00:00:01 UTC).
    if v.year == 1970 and v.month == 1 and v.day == 1 and v.hour == 0 and v.minute == 0 and v.second == 0:
        raise UnconvertibleValueError("zero TIMESTAMP '0000-00-00 00:00:00' has no exact Arrow value")
    return v


def _time_text(fsp: int) -> Fixup:
    """TIME as MySQL prints it, ``[-]H:MM:SS[.ffffff]`` with the column's fractional digits.

    TIME is an interval of -838:59:59..838:59:59, not a time of day, so neither Parquet's TIME nor
    Iceberg's ``time`` can hold it, and Athena, Redshift Spectrum and Iceberg have no duration
    type; the exact text is the one lossless representation every reader understands.
    """

    def fix(v: Any) -> str:
        if not isinstance(v, dt.timedelta):
            raise UnconvertibleValueError("not a TIME value")
        micros = v // dt.timedelta(microseconds=1)
        sign = "-" if micros < 0 else ""
        seconds, frac = divmod(abs(micros), 1_000_000)
        hours, rest = divmod(seconds, 3600)
        text = f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
        return f"{text}.{frac:06d}"[: len(text) + 1 + fsp] if fsp else text

    return fix


def _pad_binary(length: int) -> Fixup:
    # The binlog strips BINARY(n)'s trailing 0x00 padding; the table (and a snapshot) has it.
    def fix(v: bytes | str) -> bytes:
        v = _as_bytes(v)
        return v.ljust(length, b"\x00") if len(v) < length else v

    return fix


def _as_bytes(v: bytes | str) -> bytes:
    # mysql-replication "decodes" binary strings with the codec name 'binary', which fails and
    # keeps the bytes, except for an empty value: b"".decode() never looks the codec up, so an
    # empty BINARY/VARBINARY/BLOB arrives as ''.
    return v if isinstance(v, bytes) else v.encode("utf-8")


def _json_binlog(v: Any) -> str:
    """A MySQL JSON value from the library path -> the text the server prints (as the fast path).

    rows.py has mysql-replication hand binary JSON over undecoded (`BinaryJson`): its own
    decoding (dicts with bytes keys) loses what MySQL prints, e.g. DATE vs DATETIME inside a
    document, a negative TIME's sign, opaque bytes, and a top-level JSON null or an empty value
    becomes None (SQL NULL). Any other value is refused (quarantined), not serialised by guess.
    """
    if isinstance(v, BinaryJson):
        try:
            return json_text(v)
        except JsonBinaryError as exc:
            raise UnconvertibleValueError(str(exc)) from None
    if isinstance(v, str):
        return v
    raise UnconvertibleValueError(
        f"JSON value decoded by mysql-replication ({type(v).__name__}) without its binary form; "
        "the server's text cannot be rebuilt exactly"
    )


def binlog_fixup(t: MySQLType) -> Fixup | None:
    """The fix-up for a value as decoded by mysql-replication from a binlog row image."""
    n = t.name
    if n in INTEGER_BITS and t.unsigned:
        return _bigint_unsigned if n == "bigint" else _unsigned_wrap(INTEGER_BITS[n])
    if n == "bit":
        return lambda v: _bit_wrap(int(v, 2))  # the decoder gives a string of 0s and 1s
    if n == "set":
        return _set_members(t.members)
    if n == "year":
        return _year
    if n == "date":
        return _checked_temporal("date")
    if n == "datetime":
        return _checked_temporal("datetime")
    if n == "timestamp":
        return _timestamp_binlog
    if n == "time":
        return _time_text(t.fsp)
    if n == "binary" and t.length:
        return _pad_binary(t.length)
    if n in _BINARY_TYPES:
        return _as_bytes
    if n == "json":
        return _json_binlog
    return None


def snapshot_fixup(t: MySQLType) -> Fixup | None:
    """The fix-up for a value as PyMySQL returns it from a snapshot SELECT (text protocol)."""
    n = t.name
    if n == "bigint" and t.unsigned:
        return _bigint_unsigned
    if n == "bit":
        return lambda v: _bit_wrap(int.from_bytes(v, "big"))
    if n == "set":
        return _set_members(t.members)
    if n in ("date", "datetime", "timestamp"):
        return _checked_temporal(n)
    if n == "time":
        return _time_text(t.fsp)
    return None


def snapshot_select_expression(column: str, t: MySQLType) -> str:
    """The SELECT expression that reads a column exactly over the text protocol."""
    quoted = quote_identifier(column)
    if t.name == "float":
        # FLOAT prints with 6 significant digits; as DOUBLE it prints the exact float32 value.
        return f"CAST({quoted} AS DOUBLE)"
    return quoted


def quote_identifier(name: str) -> str:
    """A MySQL identifier in backquotes."""
    return "`" + name.replace("`", "``") + "`"


def to_arrow(values: list[Any], t: MySQLType, zone: str) -> pa.Array:
    """Turn fixed-up Python values into the column's Arrow array.

    DATETIME values are wall times in the configured zone; TIMESTAMP values are already UTC.
    Raises pyarrow's ArrowInvalid/ArrowTypeError/OverflowError on a value that does not fit.
    """
    if t.name == "datetime":
        return _wall_times_to_utc(values, zone)
    if t.name == "timestamp":
        return pa.array(values, pa.timestamp("us")).cast(UTC_MICROS)
    return pa.array(values, t.arrow_type)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _wall_times_to_utc(values: list[Any], zone: str) -> pa.Array:
    """DATETIME wall times read in `zone` -> UTC instants, as Python's zoneinfo reads them.

    A wall time in a DST overlap takes the first (earlier) instant; one in a DST gap takes the
    offset in force before the gap (Python's ``fold=0``), which keeps its microseconds, unlike
    Arrow's 'earliest'/'latest' that clamp it to the gap's edge. Snapshot and stream use this
    same function, so both give the lake identical values.
    """
    naive = pa.array(values, pa.timestamp("us"))
    if zone == "UTC":
        return naive.cast(UTC_MICROS)
    try:
        local = pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="raise")
        return local.cast(UTC_MICROS)
    except pa.ArrowInvalid:
        pass  # some value lies in a DST gap (rare)
    # Only the gap values take the exact per-value path: Python datetimes cannot hold every
    # instant Arrow can (9999-12-31 late in the day west of UTC is past year 9999 in UTC).
    earliest = pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="earliest")
    latest = pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="latest")
    in_gap = pc.fill_null(pc.not_equal(earliest, latest), False).to_pylist()
    tz = zoneinfo.ZoneInfo(zone)
    micros = pc.cast(earliest.cast(UTC_MICROS), pa.int64()).to_pylist()
    for i, gap in enumerate(in_gap):
        if gap:
            exact = values[i].replace(tzinfo=tz).astimezone(dt.UTC)
            micros[i] = (exact - _EPOCH) // dt.timedelta(microseconds=1)
    return pa.array(micros, pa.int64()).cast(UTC_MICROS)
