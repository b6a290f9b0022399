"""PostgreSQL binary (send/recv) value formats -> Arrow, for pgoutput's ``binary`` option (14+).

With ``binary 'true'`` pgoutput sends each value as its type's send function writes it ('b' in the
tuple data), and in text form only for a type without one ('t'). Fixed-width values are read with
precompiled struct codes (`BinaryCodec.code`, see `connectors.postgres.pgoutput`), so a column of
them arrives as Python ints, floats or bools that Arrow takes in one call; variable-length values
arrive as bytes. `BinaryCodec.convert` then turns the column into exactly what the text path
(`connectors.postgres.types`) produces from the same values' text - same Arrow type, same value,
same values quarantined - and `render` prints one raw value the way PostgreSQL's output function
would, for quarantine messages (and for the text-typed columns: numeric without a typmod,
interval, timetz, uuid, "char").

Formats (src/backend/utils/adt/*.c, ``*_send``): integers, floats and bool big-endian; date int32
days and time/timestamp/timestamptz int64 microseconds, both from 2000-01-01 (infinity = the type's
max, -infinity its min); interval int64 microseconds, int32 days, int32 months; timetz int64
microseconds and int32 zone in seconds west of UTC; uuid 16 bytes; numeric int16 ndigits, weight,
sign, dscale and ndigits base-10000 int16 digits; jsonb a version byte (1) and the text; text-like
types, json and enums their text; arrays int32 ndim, flags, element OID, (size, lower bound) per
dimension and each element as int32 length (-1: NULL) and bytes.
"""

from __future__ import annotations

import array
import datetime as dt
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.events import UTC_MICROS

Converter = Callable[[pa.Array], pa.Array]
Renderer = Callable[[Any], str]

PG_EPOCH_MICROS = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
PG_EPOCH_DAYS = 10_957  # 2000-01-01 in Unix days
MICROS_PER_DAY = 86_400_000_000
_DAYS_FROM_YEAR_1 = dt.date(2000, 1, 1).toordinal() - dt.date(1, 1, 1).toordinal()
_DAYS_TO_YEAR_10000 = (dt.date(9999, 12, 31) - dt.date(2000, 1, 1)).days + 1
# The text path parses years 0001-9999 only: BC dates, year 10000+ and +-infinity are quarantined.
MIN_DAY, END_DAY = -_DAYS_FROM_YEAR_1, _DAYS_TO_YEAR_10000
MIN_MICROS, END_MICROS = MIN_DAY * MICROS_PER_DAY, END_DAY * MICROS_PER_DAY
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)
INT32_MAX, INT32_MIN = 2**31 - 1, -(2**31)

_NUMERIC_HEADER = struct.Struct(">hhHH")
_NUMERIC_NEG, _NUMERIC_NAN, _NUMERIC_PINF, _NUMERIC_NINF = 0x4000, 0xC000, 0xD000, 0xF000
_INTERVAL = struct.Struct(">qii")
_TIMETZ = struct.Struct(">qi")
_ARRAY_HEADER = struct.Struct(">iiI")
_INT32 = struct.Struct(">i")
_digit_structs: dict[int, struct.Struct] = {}
_numeric_unpackers: dict[int, Callable[[bytes], tuple[int, ...]]] = {}
_POW10_SIZE = 100
_POW10 = [10**e for e in range(_POW10_SIZE)]


@dataclass(frozen=True, slots=True)
class BinaryCodec:
    """How one column's binary values are read (`code`), converted and printed."""

    code: str | None  # struct code of a fixed-width value ('q', '16s', ...); None: variable length
    raw_type: pa.DataType  # Arrow type of the values as read (Python ints/floats/bools, or bytes)
    convert: Converter  # raw Arrow array -> the lake's Arrow type; raises ValueError/ArrowInvalid
    render: Renderer  # one raw value as PostgreSQL's output function prints it

    @property
    def width(self) -> int:
        return struct.calcsize(">" + self.code) if self.code else 0

    def unpack(self, value: bytes) -> Any:
        """A raw value from its bytes (fixed-width codes unpack; others are the bytes)."""
        if self.code is None or self.code.endswith("s"):
            return value
        return struct.unpack(">" + self.code, value)[0]


def unchanged(values: pa.Array) -> pa.Array:
    """The values as they are (raw values already of the column's type)."""
    return values


def cast_to(target: pa.DataType) -> Converter:
    """A converter casting raw values to `target`."""

    def convert(values: pa.Array) -> pa.Array:
        return values.cast(target)

    return convert


def utf8_text(raw: pa.Array) -> pa.Array:
    """Binary values as strings (server-encoded UTF-8); invalid bytes shown escaped, not dropped."""
    try:
        return raw.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array(
            [None if v is None else v.decode("utf-8", "backslashreplace") for v in raw.to_pylist()],
            pa.string(),
        )


def _render_text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


def _in_range(values: pa.Array, low: int, end: int, what: str) -> None:
    bounds = pc.min_max(values).as_py()
    if bounds["min"] is not None and (bounds["min"] < low or bounds["max"] >= end):
        raise ValueError(f"{what} outside the years 1-9999 (or infinity)")


# --- scalars -------------------------------------------------------------------------------------


def _int_codec(code: str, raw: pa.DataType, target: pa.DataType) -> BinaryCodec:
    return BinaryCodec(code, raw, unchanged if raw == target else cast_to(target), str)


def _float_render(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number from 2000-01-01, proleptic Gregorian, any year
    (year 0 is 1 BC): H. Hinnant's civil_from_days."""
    z = days + PG_EPOCH_DAYS + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _date_text(days: int) -> tuple[str, bool]:
    year, month, day = _civil(days)
    if year <= 0:
        return f"{1 - year:04d}-{month:02d}-{day:02d}", True
    return f"{year:04d}-{month:02d}-{day:02d}", False


def _date_render(days: int) -> str:
    if days == INT32_MAX:
        return "infinity"
    if days == INT32_MIN:
        return "-infinity"
    text, bc = _date_text(days)
    return text + " BC" if bc else text


def _to_date(raw: pa.Array) -> pa.Array:
    _in_range(raw, MIN_DAY, END_DAY, "date")
    return pc.add(raw, pa.scalar(PG_EPOCH_DAYS, pa.int32())).cast(pa.date32())


def _timestamp_render(zone: str) -> Renderer:
    def render(micros: int) -> str:
        if micros == INT64_MAX:
            return "infinity"
        if micros == INT64_MIN:
            return "-infinity"
        days, rest = divmod(micros, MICROS_PER_DAY)
        date, bc = _date_text(days)
        return f"{date} {_time_text(rest)}{zone}{' BC' if bc else ''}"

    return render


def _naive_timestamps(raw: pa.Array) -> pa.Array:
    _in_range(raw, MIN_MICROS, END_MICROS, "timestamp")
    return pc.add(raw, PG_EPOCH_MICROS).cast(pa.timestamp("us"))


def timestamptz_codec() -> BinaryCodec:
    def convert(raw: pa.Array) -> pa.Array:
        return _naive_timestamps(raw).cast(pa.int64()).cast(UTC_MICROS)

    return BinaryCodec("q", pa.int64(), convert, _timestamp_render("+00"))


def timestamp_codec(naive_to_utc: Converter) -> BinaryCodec:
    """timestamp (wall time); `naive_to_utc` reads wall times the way the text path does."""

    def convert(raw: pa.Array) -> pa.Array:
        return naive_to_utc(_naive_timestamps(raw))

    return BinaryCodec("q", pa.int64(), convert, _timestamp_render(""))


def _time_text(micros: int) -> str:
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return text + f".{fraction:06d}".rstrip("0") if fraction else text


def _to_time(raw: pa.Array) -> pa.Array:
    bounds = pc.min_max(raw).as_py()
    if bounds["min"] is not None and (bounds["min"] < 0 or bounds["max"] >= MICROS_PER_DAY):
        raise ValueError("time of day 24:00:00 has no time64 representation")
    return raw.cast(pa.time64("us"))


def _timetz_text(value: bytes) -> str:
    micros, zone = _TIMETZ.unpack(value)
    seconds = abs(zone)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    # The zone is stored in seconds *west* of UTC: its sign is the opposite of the printed one.
    offset = ("+" if zone <= 0 else "-") + f"{hours:02d}"
    if seconds:
        offset += f":{minutes:02d}:{seconds:02d}"
    elif minutes:
        offset += f":{minutes:02d}"
    return _time_text(micros) + offset


def _interval_text(value: bytes) -> str:
    """IntervalStyle iso_8601, as EncodeInterval prints it (C division truncates toward zero)."""
    micros, days, months = _INTERVAL.unpack(value)
    if micros == INT64_MAX and days == INT32_MAX and months == INT32_MAX:
        return "infinity"  # PostgreSQL 17+
    if micros == INT64_MIN and days == INT32_MIN and months == INT32_MIN:
        return "-infinity"
    years, months = _ctrunc_divmod(months, 12)
    hours, micros = _ctrunc_divmod(micros, 3_600_000_000)
    minutes, micros = _ctrunc_divmod(micros, 60_000_000)
    seconds, fraction = _ctrunc_divmod(micros, 1_000_000)
    if not (years or months or days or hours or minutes or seconds or fraction):
        return "PT0S"
    parts = ["P"]
    for amount, unit in ((years, "Y"), (months, "M"), (days, "D")):
        if amount:
            parts.append(f"{amount}{unit}")
    if hours or minutes or seconds or fraction:
        parts.append("T")
    for amount, unit in ((hours, "H"), (minutes, "M")):
        if amount:
            parts.append(f"{amount}{unit}")
    if seconds or fraction:
        sign = "-" if seconds < 0 or fraction < 0 else ""
        text = f"{sign}{abs(seconds)}"
        if fraction:
            text += f".{abs(fraction):06d}".rstrip("0")
        parts.append(text + "S")
    return "".join(parts)


def _ctrunc_divmod(value: int, divisor: int) -> tuple[int, int]:
    quotient = abs(value) // divisor * (1 if value >= 0 else -1)
    return quotient, value - quotient * divisor


def _uuid_text(value: bytes) -> str:
    h = value.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Where hex digit j of a uuid goes in its 36-character text (dashes after digits 8, 12, 16, 20).
_UUID_PLACES = [j + (j >= 8) + (j >= 12) + (j >= 16) + (j >= 20) for j in range(32)]


def _to_uuid_text(raw: pa.Array) -> pa.Array:
    """16-byte values -> canonical text, for the whole column at once: the data buffer is hexed in
    one call and spread into 36-character values with strided copies (one per text position)."""
    n = len(raw)
    if raw.offset or n == 0:
        return pa.array([None if v is None else _uuid_text(v) for v in raw.to_pylist()], pa.string())
    validity, data = raw.buffers()
    hexed = data.to_pybytes()[: 16 * n].hex().encode("ascii")
    text = bytearray(36 * n)
    for j, place in enumerate(_UUID_PLACES):
        text[place::36] = hexed[j::32]
    dashes = b"-" * n
    for place in (8, 13, 18, 23):
        text[place::36] = dashes
    offsets = pa.py_buffer(array.array("i", range(0, 36 * n + 1, 36)).tobytes())
    return pa.Array.from_buffers(pa.string(), n, [validity, offsets, pa.py_buffer(text)])


def _char_text(value: bytes) -> str:
    """ "char": charout prints a high-bit byte as a backslash and three octal digits (15+)."""
    if not value or value == b"\x00":
        return ""
    byte = value[0]
    return f"\\{byte:03o}" if byte >= 0x80 else chr(byte)


def _per_value(render: Renderer) -> Converter:
    def convert(raw: pa.Array) -> pa.Array:
        return pa.array([None if v is None else render(v) for v in raw.to_pylist()], pa.string())

    return convert


def _jsonb_text(raw: pa.Array) -> pa.Array:
    # (pc.binary_slice miscomputes lengths when empty values are present; utf8_slice does not.)
    text = utf8_text(raw)
    if len(text) and not pc.all(pc.starts_with(text, "\x01"), min_count=0).as_py():
        raise ValueError("jsonb binary format version other than 1")
    return pc.utf8_slice_codeunits(text, 1)


def _render_jsonb(value: bytes) -> str:
    return _render_text(value[1:] if value[:1] == b"\x01" else value)


# --- numeric ---------------------------------------------------------------------------------------


def _numeric_unpacker(length: int) -> Callable[[bytes], tuple[int, ...]]:
    """Unpacks a whole numeric value of `length` bytes: ndigits, weight, sign, dscale, digits..."""
    unpack = _numeric_unpackers[length] = struct.Struct(f">hhHH{(length - 8) // 2}h").unpack
    return unpack


def _digit_struct(ndigits: int) -> struct.Struct:
    unpack = _digit_structs[ndigits] = struct.Struct(f">{ndigits}h")
    return unpack


def _numeric_parts(value: bytes) -> tuple[int, int, int, int]:
    """(sign flag, digits as one integer D, exponent e, dscale): the value is D * 10**e."""
    ndigits, weight, sign, dscale = _NUMERIC_HEADER.unpack_from(value)
    if sign in (_NUMERIC_NAN, _NUMERIC_PINF, _NUMERIC_NINF):
        return sign, 0, 0, 0
    unpack = _digit_structs.get(ndigits) or _digit_struct(ndigits)
    number = 0
    for digit in unpack.unpack_from(value, 8):
        number = number * 10_000 + digit
    return sign, number, 4 * (weight - ndigits + 1), dscale


def numeric_text(value: bytes) -> str:
    """numeric_out: every digit up to the display scale (dscale), digits beyond it cut off."""
    sign, number, exponent, dscale = _numeric_parts(value)
    if sign == _NUMERIC_NAN:
        return "NaN"
    if sign in (_NUMERIC_PINF, _NUMERIC_NINF):
        return "Infinity" if sign == _NUMERIC_PINF else "-Infinity"
    shift = exponent + dscale
    scaled = number * 10**shift if shift >= 0 else number // 10**-shift
    digits = str(scaled).rjust(dscale + 1, "0")
    text = f"{digits[:-dscale]}.{digits[-dscale:]}" if dscale else digits
    return "-" + text if sign == _NUMERIC_NEG else text


def decimal_codec(target: pa.DataType) -> BinaryCodec:
    """numeric(p,s) -> decimal128/256(p,s), built from the unscaled integers' bytes.

    This is the one type that needs Python per value (base-10000 digits), so the loop is kept to a
    struct call and a few integer operations.
    """
    width = 16 if pa.types.is_decimal128(target) else 32
    limit = 10**target.precision
    scale = target.scale

    def convert(raw: pa.Array) -> pa.Array:
        values = raw.to_pylist()
        zero = bytes(width)
        chunks: list[bytes] = []
        append = chunks.append
        unpackers = _numeric_unpackers
        for value in values:
            if value is None:
                append(zero)
                continue
            parts = (unpackers.get(len(value)) or _numeric_unpacker(len(value)))(value)
            ndigits = parts[0]
            if parts[2] > _NUMERIC_NEG:
                raise ValueError(f"numeric {numeric_text(value)} has no decimal representation")
            if ndigits == 1:
                number = parts[4]
            elif ndigits == 2:
                number = parts[4] * 10_000 + parts[5]
            elif ndigits == 3:
                number = (parts[4] * 10_000 + parts[5]) * 10_000 + parts[6]
            else:
                number = 0
                for digit in parts[4:]:
                    number = number * 10_000 + digit
            shift = 4 * (parts[1] - ndigits + 1) + scale
            if shift >= 0:
                number *= _POW10[shift] if shift < _POW10_SIZE else 10**shift
            else:
                number, rest = divmod(number, _POW10[-shift] if -shift < _POW10_SIZE else 10**-shift)
                if rest:
                    raise ValueError("numeric value has more fraction digits than the column's scale")
            if parts[2]:
                number = -number
            if not -limit < number < limit:
                raise ValueError(f"numeric {numeric_text(value)} does not fit precision {target.precision}")
            append(number.to_bytes(width, "little", signed=True))
        validity = None
        if raw.null_count:
            validity = pc.is_valid(raw).buffers()[1]
        return pa.Array.from_buffers(target, len(values), [validity, pa.py_buffer(b"".join(chunks))])

    return BinaryCodec(None, pa.binary(), convert, numeric_text)


# --- arrays ------------------------------------------------------------------------------------------


def _array_parts(value: bytes) -> tuple[list[tuple[int, int]], list[bytes | None]]:
    """An array's dimensions as (size, lower bound) and its elements' bytes (None: NULL) in order."""
    ndim, _flags, _element = _ARRAY_HEADER.unpack_from(value)
    dims = [struct.unpack_from(">ii", value, 12 + 8 * d) for d in range(ndim)]
    count = 1
    for size, _lower in dims:
        count *= size
    pos = 12 + 8 * ndim
    elements: list[bytes | None] = []
    unpack_length = _INT32.unpack_from
    for _ in range(count if dims else 0):
        (length,) = unpack_length(value, pos)
        pos += 4
        if length < 0:
            elements.append(None)
        else:
            elements.append(value[pos : pos + length])
            pos += length
    return dims, elements


def _array_elements(value: bytes) -> list[bytes | None]:
    """A one-dimensional array's element bytes (None: NULL); ValueError for other shapes."""
    dims, elements = _array_parts(value)
    if len(dims) > 1:
        raise ValueError("multi-dimensional array")
    if dims and dims[0][1] != 1:
        raise ValueError(f"array with explicit bounds (lower bound {dims[0][1]})")
    return elements


_ARRAY_SPECIAL = frozenset('{},"\\ \t\n\r\v\f')


def _array_item(text: str) -> str:
    """array_out's quoting of one element."""
    if text and text.upper() != "NULL" and not _ARRAY_SPECIAL.intersection(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _array_text(value: bytes, element: BinaryCodec) -> str:
    """array_out: nested braces per dimension, ``[lower:upper]=`` first when a bound is not 1."""
    dims, elements = _array_parts(value)
    items = iter(["NULL" if e is None else _array_item(element.render(element.unpack(e))) for e in elements])

    def nest(level: int) -> str:
        if level == len(dims) - 1:
            return "{" + ",".join(next(items) for _ in range(dims[level][0])) + "}"
        return "{" + ",".join(nest(level + 1) for _ in range(dims[level][0])) + "}"

    text = nest(0) if dims else "{}"
    if any(lower != 1 for _size, lower in dims):
        text = "".join(f"[{lower}:{lower + size - 1}]" for size, lower in dims) + "=" + text
    return text


def array_codec(element: BinaryCodec, element_type: pa.DataType) -> BinaryCodec:
    """T[] -> list<T's type>; multi-dimensional arrays and explicit bounds raise (quarantined)."""

    def convert(raw: pa.Array) -> pa.Array:
        flat: list[Any] = []
        offsets = [0]
        mask: list[bool] = []
        unpack = element.unpack
        for value in raw.to_pylist():
            if value is None:
                mask.append(True)
            else:
                mask.append(False)
                flat.extend(None if e is None else unpack(e) for e in _array_elements(value))
            offsets.append(len(flat))
        converted = element.convert(pa.array(flat, element.raw_type))
        return pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()),
            converted,
            type=pa.list_(element_type),
            mask=pa.array(mask, pa.bool_()),
        )

    def render(value: bytes) -> str:
        return _array_text(value, element)

    return BinaryCodec(None, pa.binary(), convert, render)


# --- the codecs by type name -------------------------------------------------------------------------

TEXT = BinaryCodec(None, pa.binary(), utf8_text, _render_text)
NUMERIC_TEXT = BinaryCodec(None, pa.binary(), _per_value(numeric_text), numeric_text)

SCALARS: dict[str, BinaryCodec] = {
    "int2": _int_codec("h", pa.int16(), pa.int16()),
    "int4": _int_codec("i", pa.int32(), pa.int32()),
    "int8": _int_codec("q", pa.int64(), pa.int64()),
    "oid": _int_codec("I", pa.int64(), pa.int64()),
    "float4": BinaryCodec("f", pa.float32(), unchanged, _float_render),
    "float8": BinaryCodec("d", pa.float64(), unchanged, _float_render),
    "bool": BinaryCodec("?", pa.bool_(), unchanged, lambda v: "t" if v else "f"),
    "bytea": BinaryCodec(None, pa.binary(), unchanged, lambda v: "\\x" + v.hex()),
    "date": BinaryCodec("i", pa.int32(), _to_date, _date_render),
    "time": BinaryCodec("q", pa.int64(), _to_time, _time_text),
    "timestamptz": timestamptz_codec(),
    "timetz": BinaryCodec("12s", pa.binary(), _per_value(_timetz_text), _timetz_text),
    "interval": BinaryCodec("16s", pa.binary(), _per_value(_interval_text), _interval_text),
    "uuid": BinaryCodec("16s", pa.binary(16), _to_uuid_text, _uuid_text),
    "jsonb": BinaryCodec(None, pa.binary(), _jsonb_text, _render_jsonb),
    "char": BinaryCodec(None, pa.binary(), _per_value(_char_text), _char_text),
}
# Types whose send function writes the same text as their output function.
for _name in ("text", "varchar", "bpchar", "name", "json"):
    SCALARS[_name] = TEXT


def raw_array(codec: BinaryCodec, values: Sequence[Any]) -> pa.Array:
    """Raw values as read (ints, floats, bools or bytes; None for NULL) as one Arrow array."""
    return pa.array(values, codec.raw_type)
