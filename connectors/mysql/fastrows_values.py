"""Columns of raw binlog values -> Arrow arrays, for the fast row-image decoder.

Each converter takes one column of raw values as the row decoder read them (ints and floats from
``struct``, bytes for everything else, None for NULL) and returns the Arrow array that
mysql-replication's decoding plus the fix-ups in connectors.mysql.types give for the same values.
A value that path quarantines (a zero date, an invalid time) or fails on raises
`FastPathRejected`, and the caller decodes the event with the library so the quarantine reasons
are the library path's own.

The per-value loops are generated list comprehensions (no call per value); Arrow arrays of fixed
width are assembled from buffers where that saves pyarrow's per-call conversion cost, which
dominates for the ~50-row events the server writes. Layouts: MySQL's "Date and Time Data Type
Representation" internals page and the DECIMAL binary format (strings/decimal.c ``decimal2bin``).
"""

from __future__ import annotations

import datetime as dt
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.events import UTC_MICROS
from connectors.mysql.json_binary import JsonBinaryError, json_text
from connectors.mysql.types import MySQLType, binlog_fixup, to_arrow

Converter = Callable[[Sequence[Any]], pa.Array]


class FastPathUnsupported(Exception):
    """A table or event the fast decoder does not handle; the library path decodes it instead."""


class FastPathRejected(FastPathUnsupported):
    """A value the library path quarantines (or fails on); it decodes the event so texts match."""


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_DAY_MICROS = 86_400_000_000
_SECOND_MICROS = 1_000_000
_DIGITS_TO_BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_WIDE_BIGINT = pa.decimal128(20, 0)
# array.array type codes with the width of each Arrow type ('q' is 8 bytes everywhere).
_ARRAY_CODES = {
    pa.int8(): "b",
    pa.int16(): "h",
    pa.int32(): "i" if array("i").itemsize == 4 else "l",
    pa.int64(): "q",
    pa.float32(): "f",
    pa.float64(): "d",
}


def _generated(name: str, source: str, namespace: dict[str, Any]) -> Any:
    """Compile a generated converter function (the per-value loop, specialised per column)."""
    exec(compile(source, f"<fastrows {name}>", "exec"), namespace)  # noqa: S102 - source built in this module
    return namespace[name]


def _reject(reason: str) -> Any:
    raise FastPathRejected(reason)


def _from_ints(arrow_type: pa.DataType, ints: list[Any]) -> pa.Array:
    """An Arrow array of a 64-bit type (int64, timestamp) from Python ints and Nones."""
    if None in ints:
        return pa.array(ints, arrow_type)
    return pa.Array.from_buffers(arrow_type, len(ints), [None, pa.py_buffer(array("q", ints))], 0)


def _fixed_width(arrow_type: pa.DataType, data: bytes, values: Sequence[Any]) -> pa.Array:
    """An Arrow array of a fixed-width type from its data buffer (null slots zeroed) and nulls."""
    n = len(values)
    if None not in values:
        return pa.Array.from_buffers(arrow_type, n, [None, pa.py_buffer(data)], 0)
    validity = pa.array([v is not None for v in values], pa.bool_()).buffers()[1]
    return pa.Array.from_buffers(arrow_type, n, [validity, pa.py_buffer(data)], values.count(None))


# -- numbers ------------------------------------------------------------------------------------


def numbers(arrow_type: pa.DataType) -> Converter:
    """Integers and floats that are already exact (the Arrow type is at least as wide)."""
    code = _ARRAY_CODES[arrow_type]

    def convert(values: Sequence[Any]) -> pa.Array:
        if None in values:
            return pa.array(values, arrow_type)
        return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(array(code, values))], 0)

    return convert


def unsigned_bigint(values: Sequence[Any]) -> pa.Array:
    """BIGINT UNSIGNED is stored as decimal(20,0) (types.py); uint64 -> decimal is an exact cast."""
    return pa.array(values, pa.uint64()).cast(_WIDE_BIGINT)


def int24(*, signed: bool, arrow_type: pa.DataType) -> Converter:
    """MEDIUMINT: 3 little-endian bytes."""

    def convert(values: Sequence[Any]) -> pa.Array:
        fb = int.from_bytes
        return pa.array([None if v is None else fb(v, "little", signed=signed) for v in values], arrow_type)

    return convert


def year(values: Sequence[Any]) -> pa.Array:
    """YEAR: one byte, year - 1900, with 0 meaning YEAR 0000 (types._year)."""
    return pa.array([None if v is None else (v + 1900 if v else 0) for v in values], pa.int16())


def bit(bits: int) -> Converter:
    """BIT(n): big-endian bytes; BIT(64) above 2**63-1 keeps its bit pattern (types._bit_wrap)."""
    mask = (1 << bits) - 1
    source = (
        "def convert(values):\n"
        "    return [None if v is None else (n - 18446744073709551616 if (n := fb(v, 'big') & MASK)"
        " >= 9223372036854775808 else n) for v in values]\n"
    )
    as_ints = _generated("convert", source, {"fb": int.from_bytes, "MASK": mask})
    return lambda values: pa.array(as_ints(values), pa.int64())


def decimal_layout(precision: int, scale: int) -> list[tuple[int, int]]:
    """The DECIMAL(precision, scale) binary groups as (bytes, digits), most significant first.

    MySQL packs 9 decimal digits into 4 bytes and a leftover of n digits into
    ``_DIGITS_TO_BYTES[n]`` bytes: integer part first (its leftover leading), then the fraction
    (its leftover trailing).
    """
    full_int, lead = divmod(precision - scale, 9)
    full_frac, tail = divmod(scale, 9)
    groups = [(_DIGITS_TO_BYTES[lead], lead)] if lead else []
    groups += [(4, 9)] * (full_int + full_frac)
    if tail:
        groups.append((_DIGITS_TO_BYTES[tail], tail))
    return groups


def decimal(precision: int, scale: int, arrow_type: pa.DataType) -> tuple[int, Converter]:
    """Binary DECIMAL -> (its size in bytes, the converter to the column's Arrow decimal).

    The first byte's top bit is the sign (set: non-negative) and a negative number has every
    byte inverted. The digits are the concatenation of the groups' digits, so the unscaled
    integer is sum(group * 10**digits_after): the arithmetic form of the library's string
    building in ``RowsEvent.__read_new_decimal``. Arrow's decimal buffer is that unscaled
    integer in two's complement, little-endian, 16 (decimal128) or 32 (decimal256) bytes.
    """
    groups = decimal_layout(precision, scale)
    size = sum(b for b, _ in groups)
    top = 1 << (8 * size - 1)
    terms: list[str] = []
    shift = 8 * size
    digits_after = precision
    for nbytes, digits in groups:
        shift -= 8 * nbytes
        digits_after -= digits
        # The first term reads y first, so it binds it (evaluation is left to right).
        y = "y" if terms else "(y := x ^ SIGN)"
        term = (
            f"(({y} >> {shift}) & {(1 << (8 * nbytes)) - 1})"
            if shift
            else f"({y} & {(1 << (8 * nbytes)) - 1})"
        )
        terms.append(f"{term} * {10**digits_after}" if digits_after else term)
    magnitude = " + ".join(terms)
    width = 16 if precision <= 38 else 32
    source = (
        "def convert(values):\n"
        f"    return [ZERO if v is None else (({magnitude.replace('SIGN', 'TOP')})"
        f" if (x := fb(v, 'big')) & TOP else -({magnitude.replace('SIGN', 'NEG')}))"
        f".to_bytes({width}, 'little', signed=True) for v in values]\n"
    )
    namespace = {"fb": int.from_bytes, "TOP": top, "NEG": ((1 << (8 * size)) - 1) ^ top, "ZERO": bytes(width)}
    to_buffers = _generated("convert", source, namespace)

    def convert(values: Sequence[Any]) -> pa.Array:
        return _fixed_width(arrow_type, b"".join(to_buffers(values)), values)

    return size, convert


# -- date and time ------------------------------------------------------------------------------


class _DayStarts(dict[int, int]):
    """(year*13+month) << 5 | day -> microseconds from 1970-01-01 to that day; invalid: rejected."""

    def __missing__(self, key: int) -> int:
        year, month = divmod(key >> 5, 13)
        day = key & 31
        try:
            days = dt.date(year, month, day).toordinal() - _EPOCH_ORDINAL
        except ValueError:
            raise FastPathRejected(f"invalid date {year:04d}-{month:02d}-{day:02d}") from None
        self[key] = micros = days * _DAY_MICROS
        return micros


class _TimesOfDay(dict[int, int]):
    """hour << 12 | minute << 6 | second -> microseconds since midnight; invalid: rejected."""

    def __missing__(self, key: int) -> int:
        hour, minute, second = key >> 12, (key >> 6) & 63, key & 63
        if hour > 23 or minute > 59 or second > 59:
            raise FastPathRejected(f"invalid time of day {hour}:{minute}:{second}")
        self[key] = micros = ((hour * 60 + minute) * 60 + second) * _SECOND_MICROS
        return micros


class _DateDays(dict[bytes, int]):
    """3-byte DATE (little-endian: 15 bits year, 4 month, 5 day) -> days since 1970-01-01."""

    def __missing__(self, key: bytes) -> int:
        raw = int.from_bytes(key, "little")
        year, month, day = (raw >> 9) & 0x7FFF, (raw >> 5) & 15, raw & 31
        try:
            days = dt.date(year, month, day).toordinal() - _EPOCH_ORDINAL
        except ValueError:
            raise FastPathRejected(f"invalid date {year:04d}-{month:02d}-{day:02d}") from None
        self[key] = days
        return days


_date_days = _DateDays()


def date(values: Sequence[Any]) -> pa.Array:
    """DATE -> date32 (days since the epoch); a zero or invalid date is rejected."""
    days = _date_days
    return pa.array([None if v is None else days[v] for v in values], pa.date32())


def _fraction_expression(fsp: int, value: str) -> str:
    """Microseconds from the raw big-endian fraction in `value`, with the library's rounding.

    mysql-replication's ``__read_fsp`` drops the extra digit of odd precisions. A raw value
    above the precision's maximum makes the library fail or quarantine: rejected.
    """
    if fsp == 0:
        return "0"
    limit = 10 ** (2 * ((fsp + 1) // 2)) - 1
    factor = 10 ** (6 - fsp)
    scaled = f"(f // 10 * {factor})" if fsp % 2 else (f"(f * {factor})" if factor > 1 else "f")
    return f"({scaled} if (f := {value}) <= {limit} else reject('fraction out of range'))"


def datetime2(fsp: int, t: MySQLType, zone: str) -> Converter:
    """DATETIME2 -> UTC instants, reading wall times in `zone` as types._wall_times_to_utc does.

    5 big-endian bytes (1 sign bit, 17 bits year*13+month, 5 day, 5 hour, 6 minute, 6 second),
    then (fsp + 1) // 2 bytes of fraction. The sign bit is ignored, as in
    connectors.mysql.patches.temporal. A wall time in a DST gap takes the exact per-value path.
    """
    frac_bits = 8 * ((fsp + 1) // 2)
    fraction = _fraction_expression(fsp, f"x & {(1 << frac_bits) - 1}")
    source = (
        "def convert(values):\n"
        f"    return [None if v is None else DAYS[((x := fb(v, 'big')) >> {frac_bits + 17}) & 0x3FFFFF]"
        f" + TIMES[(x >> {frac_bits}) & 0x1FFFF] + {fraction} for v in values]\n"
    )
    namespace = {"fb": int.from_bytes, "DAYS": _DayStarts(), "TIMES": _TimesOfDay(), "reject": _reject}
    wall_micros = _generated("convert", source, namespace)
    naive_type = pa.timestamp("us")

    def convert(values: Sequence[Any]) -> pa.Array:
        naive = _from_ints(naive_type, wall_micros(values))
        if zone == "UTC":
            return _relabel(naive, UTC_MICROS)
        try:
            local = pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="raise")
        except pa.ArrowInvalid:
            return _with_gap_times(naive, t, zone)
        return _relabel(local, UTC_MICROS)

    return convert


def _with_gap_times(naive: pa.Array, t: MySQLType, zone: str) -> pa.Array:
    """Wall times of which some fall in a DST gap: only those take types.py's exact per-value path.

    Not the whole column: the exact path goes through Python datetimes, which cannot shift a
    wall time near 9999-12-31 to UTC in a zone west of it (and it is slow).
    """
    earliest = pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="earliest")
    latest = pc.assume_timezone(naive, timezone=zone, ambiguous="earliest", nonexistent="latest")
    in_gap = pc.fill_null(pc.not_equal(earliest, latest), False)
    gap_times = naive.filter(in_gap).to_pylist()
    exact = to_arrow(gap_times, t, zone).cast(earliest.type)
    return _relabel(pc.replace_with_mask(earliest, in_gap, exact), UTC_MICROS)


def _relabel(instants: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    # A timestamp's zone is metadata only (values are UTC instants): same buffers, new type.
    return pa.Array.from_buffers(
        arrow_type, len(instants), instants.buffers(), instants.null_count, instants.offset
    )


def timestamp2(fsp: int) -> Converter:
    """TIMESTAMP2: 4 big-endian bytes of seconds since the epoch (UTC), then the fraction.

    Seconds = 0 is the zero TIMESTAMP '0000-00-00 00:00:00' (types._timestamp_binlog quarantines it).
    """
    frac_bits = 8 * ((fsp + 1) // 2)
    fraction = _fraction_expression(fsp, f"x & {(1 << frac_bits) - 1}")
    seconds = (
        f"(x := fb(v, 'big', signed=True)) >> {frac_bits}"
        if frac_bits
        else "(x := fb(v, 'big', signed=True))"
    )
    source = (
        "def convert(values):\n"
        f"    return [None if v is None else (s if (s := {seconds}) else reject('zero TIMESTAMP')) * 1000000"
        f" + {fraction} for v in values]\n"
    )
    instants = _generated("convert", source, {"fb": int.from_bytes, "reject": _reject})
    return lambda values: _from_ints(UTC_MICROS, instants(values))


_TIMEF_INT_OFS = 0x800000
_TIMEF_OFS = 0x800000 << 24


def time2(fsp: int, t: MySQLType) -> Converter:
    """TIME2 -> the exact MySQL text (types._time_text)."""
    text = binlog_fixup(t)
    assert text is not None  # TIME always has its text fix-up

    def convert(values: Sequence[Any]) -> pa.Array:
        return pa.array([None if v is None else text(_time2_value(v, fsp)) for v in values], pa.string())

    return convert


def _time2_value(v: bytes, fsp: int) -> dt.timedelta:
    """TIME2 bytes -> timedelta, exactly as connectors.mysql.patches.temporal._read_time2.

    Negative values store their fraction as the complement towards the next integer second
    (MySQL's ``my_time_packed_from_binary``).
    """
    first = int.from_bytes(v[:3], "big")
    intpart = first - _TIMEF_INT_OFS
    if fsp in (1, 2):
        frac = v[3]
        if intpart < 0 and frac:
            intpart += 1
            frac -= 0x100
        packed = (intpart << 24) + frac * 10_000
    elif fsp in (3, 4):
        frac = int.from_bytes(v[3:5], "big")
        if intpart < 0 and frac:
            intpart += 1
            frac -= 0x10000
        packed = (intpart << 24) + frac * 100
    elif fsp in (5, 6):
        packed = ((first << 24) | int.from_bytes(v[3:6], "big")) - _TIMEF_OFS
    else:
        packed = intpart << 24
    negative = packed < 0
    packed = -packed if negative else packed
    hms = packed >> 24
    value = dt.timedelta(
        hours=(hms >> 12) % (1 << 10),
        minutes=(hms >> 6) % (1 << 6),
        seconds=hms % (1 << 6),
        microseconds=packed % (1 << 24),
    )
    return -value if negative else value


# -- strings, bytes, JSON, ENUM, SET ------------------------------------------------------------


def utf8(values: Sequence[Any]) -> pa.Array:
    """UTF-8 text: pyarrow validates the bytes as it builds the string array."""
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # invalid UTF-8: the library raises; let it
        raise FastPathRejected("invalid UTF-8") from exc


def decoded(codec: str) -> Converter:
    """Text in another character set, decoded per value as the library does (strict)."""

    def convert(values: Sequence[Any]) -> pa.Array:
        try:
            return pa.array([None if v is None else v.decode(codec) for v in values], pa.string())
        except UnicodeDecodeError as exc:
            raise FastPathRejected(f"not valid {codec}") from exc

    return convert


def binary(values: Sequence[Any]) -> pa.Array:
    """BINARY-collated bytes (VARBINARY, BLOB, GEOMETRY as WKB), kept as they are."""
    return pa.array(values, pa.binary())


def padded_binary(length: int) -> Converter:
    """BINARY(n): the binlog strips the trailing 0x00 padding; the table has it (types._pad_binary)."""

    def convert(values: Sequence[Any]) -> pa.Array:
        return pa.array(
            [v.ljust(length, b"\x00") if v is not None and len(v) < length else v for v in values],
            pa.binary(),
        )

    return convert


def json_document(values: Sequence[Any]) -> pa.Array:
    """MySQL binary JSON -> the JSON text the server prints for it (connectors.mysql.json_binary).

    Bytes that are not a document the decoder prints exactly are rejected: the library path
    then quarantines the row with the reason (types._json_binlog), never a guessed text.
    """
    text = json_text
    try:
        return pa.array([None if v is None else text(v) for v in values], pa.string())
    except JsonBinaryError as exc:
        raise FastPathRejected(str(exc)) from exc


def enum(enum_values: Sequence[str]) -> Converter:
    """ENUM: a 1- or 2-byte index into the members, 0 being the invalid value ''."""
    members = list(enum_values)  # mysql-replication's list: [''] + the members

    def convert(values: Sequence[Any]) -> pa.Array:
        try:
            return pa.array([None if v is None else members[v] for v in values], pa.string())
        except IndexError as exc:  # the library fails on it too; let it
            raise FastPathRejected("ENUM index out of range") from exc

    return convert


def set_members(members: tuple[str, ...], *, raw_bytes: bool) -> Converter:
    """SET: a little-endian bit mask -> the members, in definition order ('' -> [])."""
    cache: dict[int, list[str]] = {}

    def chosen(mask: int) -> list[str]:
        picked = cache.get(mask)
        if picked is None:
            picked = cache[mask] = [m for i, m in enumerate(members) if mask >> i & 1]
        return picked

    def convert(values: Sequence[Any]) -> pa.Array:
        fb = int.from_bytes
        masks = [None if v is None else fb(v, "little") for v in values] if raw_bytes else values
        return pa.array([None if m is None else chosen(m) for m in masks], pa.list_(pa.string()))

    return convert
