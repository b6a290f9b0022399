"""PostgreSQL column types -> Arrow types, and text -> Arrow conversion one column at a time.

The snapshot (raw output text) and pgoutput without its ``binary`` option hand over values as text
rendered with the session settings pinned in `connectors.postgres.connection` (UTC, ISO dates, hex
bytea). A column is converted as a whole with Arrow casts wherever Arrow parses the PostgreSQL text
exactly; only bytea and arrays use a per-value Python step. A converter raises `ValueError` (or
`pyarrow.ArrowInvalid`) when any value cannot be converted; `connectors.postgres.columns` then finds
the offending rows and quarantines them. `ColumnType.binary` is the same column's decoder for
binary values (`connectors.postgres.binary`): it yields exactly what the text converter does, and
is None for the types whose binary form is not decoded (those read as text only).

==========================  =====================================  ===============================
PostgreSQL                  Arrow                                  notes
==========================  =====================================  ===============================
smallint / int / bigint     int16 / int32 / int64
oid                         int64
numeric(p,s)                decimal128(p,s); decimal256 if p > 38  exact; NaN/Infinity quarantined;
                                                                   p > 76 -> string
numeric (no typmod)         string                                 exact text: Athena/Spectrum have
                                                                   no unbounded decimal
real / double precision     float32 / float64                      NaN and +-Infinity kept
text / varchar / char(n)    string                                 char(n) keeps its padding
name / "char" / citext      string
bool                        bool
bytea                       binary                                 from the hex text form '\\x..'
json / jsonb                string                                 the server's text, unparsed
uuid                        string                                 canonical lower-case form
date                        date32                                 'infinity' and BC quarantined
time                        time64('us')                           wall-clock time of day;
                                                                   '24:00:00' quarantined
timetz                      string                                 e.g. '12:00:00+05:30'
timestamp                   timestamp('us', 'UTC')                 wall time read in
                                                                   config.timezone, as PostgreSQL
                                                                   does (ambiguous -> standard
                                                                   time, gap -> shifted forward)
timestamptz                 timestamp('us', 'UTC')                 'infinity', BC, year > 9999
                                                                   quarantined
interval                    string                                 ISO 8601 ('P1Y2M3DT4H5M6S')
T[] (one-dimensional)       list<T's Arrow type>                   multi-dimensional values and
                                                                   explicit bounds quarantined
enum                        string                                 the label
domain over T               as T
anything else               string                                 its text form (money, inet,
                                                                   ranges, composites, xml, ...)
==========================  =====================================  ===============================

time maps to time64 rather than duration: it is a time of day, and Parquet's TIME(MICROS) is what
Athena, Spark and DuckDB read as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from connectors.events import UTC_MICROS
from connectors.postgres import binary
from connectors.postgres.binary import BinaryCodec, Converter, cast_to, unchanged

# Errors a converter may raise for a value it cannot represent.
CONVERSION_ERRORS: tuple[type[Exception], ...] = (ValueError, pa.ArrowInvalid, OverflowError)

MICROS_PER_DAY = 86_400_000_000
DECIMAL128_MAX_PRECISION = 38
DECIMAL256_MAX_PRECISION = 76


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """What the catalog says about one type OID (pg_type)."""

    oid: int
    namespace: str
    name: str
    typtype: str  # b base, c composite, d domain, e enum, p pseudo, r range, m multirange
    category: str  # pg_type.typcategory; 'A' for arrays
    element: int  # typelem (arrays)
    base: int  # typbasetype (domains)
    base_typmod: int  # typtypmod (domains)


@dataclass(frozen=True, slots=True)
class ColumnType:
    """How one column is stored in the lake and how its text (and binary) values are converted."""

    arrow_type: pa.DataType
    convert: Converter
    binary: BinaryCodec | None = None  # None: no binary decoder here (the stream asks for text then)


class TypeResolutionError(LookupError):
    """A column's type OID is not in the catalog information handed to `column_type`."""


_BOOL_TEXT = pa.array(["t", "f"])


def _to_bool(values: pa.Array) -> pa.Array:
    known = pc.is_in(values, value_set=_BOOL_TEXT)
    if not pc.all(pc.or_kleene(known, pc.is_null(values)), min_count=0).as_py():
        raise ValueError("boolean text other than 't'/'f'")
    return pc.equal(values, "t")


def _to_binary(values: pa.Array) -> pa.Array:
    # bytea_output=hex renders '\x' followed by two hex digits per byte; bytes.fromhex is C code.
    out: list[bytes | None] = []
    append = out.append
    for text in values.to_pylist():
        if text is None:
            append(None)
        elif text.startswith("\\x"):
            append(bytes.fromhex(text[2:]))
        else:
            raise ValueError(f"bytea text {text[:20]!r} is not in hex format")
    return pa.array(out, pa.binary())


def _to_time(values: pa.Array) -> pa.Array:
    # 'HH:MM:SS' or 'HH:MM:SS.ffffff' (ISO, no zone). Arrow has no string->time cast, so compute the
    # microseconds from fixed-position fields; the casts reject anything that is not digits.
    lengths = pc.utf8_length(values)
    well_formed = pc.and_kleene(
        pc.or_kleene(pc.equal(lengths, 8), pc.and_kleene(pc.greater(lengths, 9), pc.less_equal(lengths, 15))),
        pc.and_kleene(
            pc.equal(pc.utf8_slice_codeunits(values, 2, 3), ":"),
            pc.equal(pc.utf8_slice_codeunits(values, 5, 6), ":"),
        ),
    )
    if pc.any(pc.invert(well_formed)).as_py():
        raise ValueError("time text is not HH:MM:SS[.ffffff]")

    def field(start: int, stop: int) -> pa.Array:
        return pc.utf8_slice_codeunits(values, start, stop).cast(pa.int64())

    fraction = pc.utf8_rpad(pc.utf8_slice_codeunits(values, 9, 15), width=6, padding="0").cast(pa.int64())
    seconds = pc.add(pc.multiply(pc.add(pc.multiply(field(0, 2), 60), field(3, 5)), 60), field(6, 8))
    micros = pc.add(pc.multiply(seconds, 1_000_000), fraction)
    if pc.any(pc.greater_equal(micros, MICROS_PER_DAY)).as_py():
        raise ValueError("time of day 24:00:00 has no time64 representation")
    return micros.cast(pa.time64("us"))


def _to_timestamptz(values: pa.Array) -> pa.Array:
    # TimeZone=UTC renders every value with '+00'; Arrow parses the offset exactly.
    return values.cast(UTC_MICROS)


def _to_timestamp_in(zone: str) -> Converter:
    """Read zone-less wall times in `zone`, the way PostgreSQL's timestamp -> timestamptz does."""
    naive_to_utc = _naive_to_utc(zone)

    def convert(values: pa.Array) -> pa.Array:
        return naive_to_utc(values.cast(pa.timestamp("us")))

    return convert


def _naive_to_utc(zone: str) -> Converter:
    """Naive wall-time timestamps read in `zone` -> UTC instants (text and binary paths alike)."""

    def convert(naive: pa.Array) -> pa.Array:
        if zone == "UTC":
            return naive.cast(UTC_MICROS)
        # PostgreSQL resolves an ambiguous wall time (clocks set back) to standard time, the later
        # instant: Arrow's 'latest'.
        try:
            aware = pc.assume_timezone(naive, timezone=zone, ambiguous="latest", nonexistent="raise")
        except pa.ArrowInvalid:
            aware = _assume_timezone_with_gaps(naive, zone)
        return aware.cast(UTC_MICROS)

    return convert


def _assume_timezone_with_gaps(naive: pa.Array, zone: str) -> pa.Array:
    """Like PostgreSQL, read a wall time inside a DST gap with the offset in force before the gap.

    Arrow's 'earliest' gives the last instant before the gap, whose local time tells that offset;
    PostgreSQL's answer is then ``wall time - offset`` (e.g. 02:30 in New York's spring gap is
    02:30 EST = 07:30 UTC).
    """
    latest = pc.assume_timezone(naive, timezone=zone, ambiguous="latest", nonexistent="latest")
    earliest = pc.assume_timezone(naive, timezone=zone, ambiguous="latest", nonexistent="earliest")
    in_gap = pc.not_equal(latest, earliest)
    before_gap_utc = earliest.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
    offset = pc.subtract(pc.local_timestamp(earliest), before_gap_utc)
    shifted = pc.subtract(naive, offset)
    as_zone = pa.timestamp("us", tz=zone)
    return pc.if_else(in_gap, shifted.cast(pa.int64()).cast(as_zone), latest)


def _numeric(typmod: int) -> ColumnType:
    if typmod < 4:  # no typmod: unconstrained numeric; its exact text is the only lossless form
        return _NUMERIC_TEXT
    precision = ((typmod - 4) >> 16) & 0xFFFF
    # PostgreSQL 15 stores the scale as an 11-bit signed number (negative scales are allowed).
    scale = (((typmod - 4) & 0x7FF) ^ 1024) - 1024
    if precision > DECIMAL256_MAX_PRECISION or scale > precision:
        return _NUMERIC_TEXT
    target = (
        pa.decimal128(precision, scale)
        if precision <= DECIMAL128_MAX_PRECISION
        else pa.decimal256(precision, scale)
    )
    return ColumnType(target, cast_to(target), binary.decimal_codec(target))


# pg_catalog base types by name (OIDs of built-in types are stable, names are self-explanatory).
_SCALARS: dict[str, ColumnType] = {
    name: ColumnType(arrow_type, cast_to(arrow_type), binary.SCALARS[name])
    for name, arrow_type in (
        ("int2", pa.int16()),
        ("int4", pa.int32()),
        ("int8", pa.int64()),
        ("oid", pa.int64()),
        ("float4", pa.float32()),
        ("float8", pa.float64()),
        ("date", pa.date32()),
    )
}
_SCALARS["bool"] = ColumnType(pa.bool_(), _to_bool, binary.SCALARS["bool"])
_SCALARS["bytea"] = ColumnType(pa.binary(), _to_binary, binary.SCALARS["bytea"])
_SCALARS["time"] = ColumnType(pa.time64("us"), _to_time, binary.SCALARS["time"])
_SCALARS["timestamptz"] = ColumnType(UTC_MICROS, _to_timestamptz, binary.SCALARS["timestamptz"])
# Kept as their text; the binary decoder renders the same text (see connectors.postgres.binary).
for _name in ("text", "varchar", "bpchar", "name", "json", "jsonb", "uuid", "interval", "timetz", "char"):
    _SCALARS[_name] = ColumnType(pa.string(), unchanged, binary.SCALARS[_name])

_TEXT = ColumnType(pa.string(), unchanged)  # no binary decoder: money, inet, ranges, composites, ...
_ENUM = ColumnType(pa.string(), unchanged, binary.TEXT)  # enum_send writes the label
_NUMERIC_TEXT = ColumnType(pa.string(), unchanged, binary.NUMERIC_TEXT)


def column_type(oid: int, typmod: int, types: Mapping[int, TypeInfo], timezone: str) -> ColumnType:
    """The lake type and converter for a column of type `oid` with modifier `typmod`.

    `types` must hold `oid` and, for arrays and domains, their element and base types
    (`connectors.postgres.catalog.load_types` fetches them).
    """
    try:
        info = types[oid]
    except KeyError:
        raise TypeResolutionError(f"type OID {oid} was not loaded from pg_type") from None
    if info.typtype == "d":
        return column_type(info.base, typmod if typmod >= 0 else info.base_typmod, types, timezone)
    if info.category == "A" and info.element:
        element = column_type(info.element, typmod, types, timezone)
        if pa.types.is_list(element.arrow_type):
            return _TEXT
        codec = None
        if element.binary is not None:
            codec = binary.array_codec(element.binary, element.arrow_type)
        return ColumnType(pa.list_(element.arrow_type), _to_list(element), codec)
    if info.typtype == "e":
        return _ENUM
    if info.typtype != "b" or info.namespace != "pg_catalog":
        return _TEXT  # composites, ranges, extension types: their text form
    if info.name == "numeric":
        return _numeric(typmod)
    if info.name == "timestamp":
        naive_to_utc = _naive_to_utc(timezone)
        return ColumnType(UTC_MICROS, _to_timestamp_in(timezone), binary.timestamp_codec(naive_to_utc))
    return _SCALARS.get(info.name, _TEXT)


# --- arrays -----------------------------------------------------------------------------------


def split_array(text: str) -> list[str | None]:
    """The elements of a one-dimensional PostgreSQL array literal such as ``{1,NULL,"a b"}``.

    Raises `ValueError` for multi-dimensional arrays and arrays with explicit bounds
    (``[0:1]={...}``), which have no list representation.
    """
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"array with explicit bounds or malformed: {text[:40]!r}")
    body = text[1:-1]
    if not body:
        return []
    if body[0] == "{":
        raise ValueError(f"multi-dimensional array: {text[:40]!r}")
    if '"' not in body and "\\" not in body:
        return [None if item == "NULL" else item for item in body.split(",")]
    return _split_quoted(body, text)


def _split_quoted(body: str, text: str) -> list[str | None]:
    items: list[str | None] = []
    i, n = 0, len(body)
    while i <= n:
        if i < n and body[i] == '"':
            chars: list[str] = []
            i += 1
            while i < n and body[i] != '"':
                if body[i] == "\\":
                    i += 1
                chars.append(body[i])
                i += 1
            if i >= n:
                raise ValueError(f"unterminated quote in array literal {text[:40]!r}")
            items.append("".join(chars))
            i += 1  # closing quote
        else:
            end = body.find(",", i)
            end = n if end < 0 else end
            item = body[i:end]
            if item.startswith("{"):
                raise ValueError(f"multi-dimensional array: {text[:40]!r}")
            items.append(None if item == "NULL" else item)
            i = end
        if i < n and body[i] != ",":
            raise ValueError(f"malformed array literal {text[:40]!r}")
        i += 1
    return items


def _to_list(element: ColumnType) -> Converter:
    def convert(values: pa.Array) -> pa.Array:
        flat: list[str | None] = []
        offsets = [0]
        mask: list[bool] = []
        for text in values.to_pylist():
            if text is None:
                mask.append(True)
            else:
                mask.append(False)
                flat.extend(split_array(text))
            offsets.append(len(flat))
        converted = element.convert(pa.array(flat, pa.string()))
        return pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()),
            converted,
            type=pa.list_(element.arrow_type),
            mask=pa.array(mask, pa.bool_()),
        )

    return convert
