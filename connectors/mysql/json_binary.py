"""MySQL's binary JSON (a JSON column's bytes in a MySQL 8 binlog) -> the server's own JSON text.

MySQL 5.7+ stores JSON in a binary format (sql-common/json_binary.cc) and writes those bytes to
the binlog; a snapshot reads the column with SELECT, which prints it with
``Json_wrapper::to_string`` (sql-common/json_dom.cc). `json_text` gives exactly that text, so a
streamed value equals the snapshot's:

* objects ``{"k": v, "k2": v2}`` and arrays ``[v, v2]`` (", " and ": " separators), object keys
  in the stored order (MySQL sorts them by length, then bytes, when it stores a document);
* strings with MySQL's escaping (``double_quote``): ``\\" \\\\ \\b \\f \\n \\r \\t``, other bytes
  below 0x20 as ``\\u00xx``, everything else (non-ASCII included) as UTF-8, unescaped;
* integers exact (int16 .. int64, uint16 .. uint64); doubles as ``my_gcvt(d, MY_GCVT_ARG_DOUBLE,
  MY_GCVT_MAX_FIELD_WIDTH)`` prints them, plus ".0" when that has neither "." nor "e";
* opaque values: DECIMAL as ``decimal2string`` (its scale's digits, unquoted); DATE, TIME,
  DATETIME and TIMESTAMP quoted as ``my_TIME_to_str(t, 6)``; a VAR_STRING as a string; any other
  type as ``"base64:type<N>:<base64>"`` (MySQL's base64 breaks lines after 76 characters);
* an empty value as ``null`` (``json_binary::parse_binary`` reads zero bytes as the null literal).

Bytes that are not a well-formed document (truncated, an unknown type, invalid UTF-8) raise
`JsonBinaryError` rather than giving a text the server would not print.
"""

from __future__ import annotations

import base64
import operator
import struct
from collections.abc import Callable
from json.encoder import encode_basestring  # the C encoder when available; MySQL's escapes (above)

__all__ = ["BinaryJson", "JsonBinaryError", "json_text"]


class JsonBinaryError(ValueError):
    """Bytes that are not a MySQL binary JSON document this decoder can print exactly."""


class BinaryJson(bytes):
    """A binary JSON value as the binlog holds it, not decoded yet (mysql-replication's path)."""

    __slots__ = ()


# Type bytes (json_binary.h).
_SMALL_OBJECT, _LARGE_OBJECT, _SMALL_ARRAY, _LARGE_ARRAY = 0x00, 0x01, 0x02, 0x03
_LITERAL, _INT16, _UINT16, _INT32, _UINT32, _INT64, _UINT64 = 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A
_DOUBLE, _STRING, _OPAQUE = 0x0B, 0x0C, 0x0F
_LITERALS = {0x00: "null", 0x01: "true", 0x02: "false"}
# MySQL field types that an opaque value may carry (binary_log_types.h).
_MYSQL_TYPE_TIMESTAMP, _MYSQL_TYPE_DATE, _MYSQL_TYPE_TIME, _MYSQL_TYPE_DATETIME = 7, 10, 11, 12
_MYSQL_TYPE_NEWDECIMAL, _MYSQL_TYPE_VAR_STRING = 246, 253

_I16 = struct.Struct("<h").unpack_from
_U16 = struct.Struct("<H").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I64 = struct.Struct("<q").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_F64 = struct.Struct("<d").unpack_from
_SMALL_HEADER = struct.Struct("<HH").unpack_from
_LARGE_HEADER = struct.Struct("<II").unpack_from
_DIGITS_TO_BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_DECIMAL_LAYOUTS: dict[
    bytes, tuple[int, int, tuple[tuple[int, int, int], ...], int]
] = {}  # by (precision, scale)
# Caches, each cleared when it reaches _MAX_CACHED entries: the entry structs by element count
# and container type; the quoted keys of objects (documents of one table repeat their keys); the
# texts of small containers, by type and bytes (documents repeat small sub-documents).
_ENTRIES: dict[int, Callable[[bytes, int], tuple[int, ...]]] = {}
_KEYS: dict[tuple[tuple[int, ...], bytes], tuple[str, ...]] = {}
_CONTAINERS: tuple[dict[bytes, str], ...] = ({}, {}, {}, {})
_MAX_CACHED = 1024  # entries per cache: a few MB at most with the size limits below
_SMALL_CONTAINER = 256  # bytes: larger containers are not cached
_CACHED_KEYS = 1024  # bytes of keys: objects with more are not cached (e.g. maps keyed by ids)
_CACHED_COUNT = 256  # elements: the entry structs of larger containers are not kept
# Bytes a value of a fixed-size type takes (not inlined).
_SIZES = {_INT16: 2, _UINT16: 2, _INT32: 4, _UINT32: 4, _INT64: 8, _UINT64: 8, _DOUBLE: 8}


def json_text(data: bytes) -> str:
    """The JSON text MySQL prints for a binary JSON value (the bytes after the column's length)."""
    if not data:
        return "null"
    try:
        return _value(data, data[0], 1, len(data))
    except (struct.error, IndexError, UnicodeDecodeError, RecursionError, KeyError) as exc:
        raise JsonBinaryError(f"malformed binary JSON ({type(exc).__name__}: {exc})") from None


def _value(data: bytes, t: int, p: int, end: int) -> str:
    """The value of type `t` whose bytes start at `p` (not inlined), within data[:end]."""
    if t == _STRING:
        return _string(data, p, end)
    if t <= _LARGE_ARRAY:
        return _container(data, t, p, end)
    if p + _SIZES.get(t, 1) > end:
        raise JsonBinaryError("value runs past its enclosing value")
    if t == _INT64:
        return str(_I64(data, p)[0])
    if t == _DOUBLE:
        return double_text(_F64(data, p)[0])
    if t == _INT16:
        return str(_I16(data, p)[0])
    if t == _INT32:
        return str(_I32(data, p)[0])
    if t == _UINT16:
        return str(_U16(data, p)[0])
    if t == _UINT32:
        return str(_U32(data, p)[0])
    if t == _UINT64:
        return str(_U64(data, p)[0])
    if t == _LITERAL:
        return _LITERALS[data[p]]
    if t == _OPAQUE:
        return _opaque(data, p, end)
    raise JsonBinaryError(f"unknown binary JSON type 0x{t:02x}")


def _entries(count: int, t: int) -> Callable[[bytes, int], tuple[int, ...]]:
    """``unpack_from`` of a container's key entries (objects) and value entries, cached by shape."""
    key, value = ("IH", "BI") if t & 1 else ("HH", "BH")
    unpack = struct.Struct("<" + (key * count if t < _SMALL_ARRAY else "") + value * count).unpack_from
    if count <= _CACHED_COUNT:  # a struct's size grows with its count
        if len(_ENTRIES) >= _MAX_CACHED:
            _ENTRIES.clear()
        _ENTRIES[count << 2 | t] = unpack
    return unpack


def _container(data: bytes, t: int, base: int, end: int) -> str:
    """An object or array (type `t`) at `base`: element count, byte size, entries, keys, values.

    Offsets in the entries are relative to `base`. A value entry holds the type and either the
    value's offset or, for literals, 16-bit integers and (large format only) 32-bit integers,
    the value itself. The common value types are printed in the loop (no call per value).
    """
    large = t & 1
    if base + (8 if large else 4) > end:
        raise JsonBinaryError("container header runs past its enclosing value")
    count, size = (_LARGE_HEADER if large else _SMALL_HEADER)(data, base)
    stop = base + size
    if stop > end:
        raise JsonBinaryError("container is larger than its enclosing value")
    if not count:
        return "{}" if t < _SMALL_ARRAY else "[]"
    if size > _SMALL_CONTAINER:
        return _members(data, t, base, stop, count)
    # Every read is bounded by `stop`, so a container's text depends on its bytes only: small
    # ones repeating across documents (flags, settings, nested defaults) are printed once.
    raw = data[base:stop]
    seen = _CONTAINERS[t]
    text = seen.get(raw)
    if text is None:
        text = _members(data, t, base, stop, count)
        if len(seen) >= _MAX_CACHED:
            seen.clear()
        seen[raw] = text
    return text


def _members(data: bytes, t: int, base: int, stop: int, count: int) -> str:
    """The text of a container's members (see `_container`)."""
    large = t & 1
    n = 2 * count if t < _SMALL_ARRAY else 0
    # Header (count, size), key entries of objects (offset, 2-byte length), value entries (type, slot).
    header, key_entry, value_entry = (8, 6, 5) if large else (4, 4, 3)
    if base + header + (key_entry * count if n else 0) + value_entry * count > stop:
        raise JsonBinaryError("container entries run past the container")
    fields = (_ENTRIES.get(count << 2 | t) or _entries(count, t))(data, base + header)
    texts: list[str] = []
    append = texts.append
    for kind, slot in zip(fields[n::2], fields[n + 1 :: 2], strict=True):
        if kind == _STRING:
            p = base + slot
            length = data[p]
            if length < 0x80 and p + 1 + length <= stop:
                append(encode_basestring(data[p + 1 : p + 1 + length].decode()))
            else:
                append(_string(data, p, stop))
        elif kind == _INT16:
            append(str((slot & 0xFFFF) - 0x10000 if slot & 0x8000 else slot & 0xFFFF))
        elif kind == _LITERAL:
            append(_LITERALS[slot & 0xFF])
        elif kind == _DOUBLE:
            p = base + slot
            if p + 8 > stop:
                raise JsonBinaryError("double runs past its container")
            append(double_text(_F64(data, p)[0]))
        elif kind <= _LARGE_ARRAY:
            append(_container(data, kind, base + slot, stop))
        elif kind == _UINT16:
            append(str(slot & 0xFFFF))
        elif large and kind == _INT32:
            append(str(slot - 0x100000000 if slot & 0x80000000 else slot))
        elif large and kind == _UINT32:
            append(str(slot))
        else:
            append(_value(data, kind, base + slot, stop))
    if not n:
        return "[" + ", ".join(texts) + "]"
    # Keys: one cache look-up per object, by its key entries and the bytes they cover.
    key_fields = fields[:n]
    keys_end = base + key_fields[-2] + key_fields[-1]
    if keys_end > stop:
        raise JsonBinaryError("object key runs past its object")
    cache_key = (key_fields, data[base + key_fields[0] : keys_end])
    keys = _KEYS.get(cache_key) or _object_keys(data, base, stop, cache_key)
    return "{" + ", ".join(map(operator.add, keys, texts)) + "}"


def _object_keys(
    data: bytes, base: int, stop: int, cache_key: tuple[tuple[int, ...], bytes]
) -> tuple[str, ...]:
    """An object's keys, quoted and escaped, each followed by ": ".

    Cached when the keys lie back to back in entry order, as MySQL writes them: then the key
    entries and the bytes from the first key to the end of the last decide every key.
    """
    key_fields = cache_key[0]
    keys = []
    contiguous = True
    expected = key_fields[0]
    for offset, length in zip(key_fields[0::2], key_fields[1::2], strict=True):
        start = base + offset
        if start + length > stop:
            raise JsonBinaryError("object key runs past its object")
        contiguous = contiguous and offset == expected
        expected = offset + length
        keys.append(encode_basestring(data[start : start + length].decode()) + ": ")
    quoted = tuple(keys)
    if contiguous and len(cache_key[1]) <= _CACHED_KEYS:
        if len(_KEYS) >= _MAX_CACHED:
            _KEYS.clear()
        _KEYS[cache_key] = quoted
    return quoted


def _length(data: bytes, p: int) -> tuple[int, int]:
    """A variable-length size (7 bits a byte, low bits first, at most 5 bytes) -> (size, next position)."""
    byte = data[p]
    if byte < 0x80:
        return byte, p + 1
    size, shift = 0, 0
    for q in range(p, p + 5):
        byte = data[q]
        size |= (byte & 0x7F) << shift
        if byte < 0x80:
            return size, q + 1
        shift += 7
    raise JsonBinaryError("variable-length size longer than 5 bytes")


def _string(data: bytes, p: int, end: int) -> str:
    size, p = _length(data, p)
    if p + size > end:
        raise JsonBinaryError("string runs past its enclosing value")
    return encode_basestring(data[p : p + size].decode("utf-8"))


def _opaque(data: bytes, p: int, end: int) -> str:
    """A MySQL value kept in JSON as its field type and bytes (Json_wrapper's J_OPAQUE and friends)."""
    field_type = data[p]
    size, p = _length(data, p + 1)
    if p + size > end:
        raise JsonBinaryError("opaque value runs past its enclosing value")
    raw = data[p : p + size]
    if field_type == _MYSQL_TYPE_NEWDECIMAL:
        return decimal_text(raw)
    if field_type in (_MYSQL_TYPE_DATETIME, _MYSQL_TYPE_TIMESTAMP, _MYSQL_TYPE_DATE, _MYSQL_TYPE_TIME):
        if size != 8:
            raise JsonBinaryError(f"packed temporal value of {size} bytes")
        return '"' + _temporal_text(_I64(raw, 0)[0], field_type) + '"'
    if field_type == _MYSQL_TYPE_VAR_STRING:  # wrapper_to_string prints it as a string
        return encode_basestring(raw.decode("utf-8"))
    encoded = base64.b64encode(raw).decode("ascii")
    if len(encoded) > 76:  # MySQL's base64_encode starts a new line every 76 characters
        encoded = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    return encode_basestring(f"base64:type{field_type}:{encoded}")


def decimal_text(raw: bytes) -> str:
    """An opaque DECIMAL (precision, scale, then MySQL's binary DECIMAL) as ``decimal2string`` prints it.

    The binary DECIMAL: 9 digits per 4 big-endian bytes, a leftover of n digits in
    ``_DIGITS_TO_BYTES[n]`` bytes (integer part first, its leftover leading; the fraction's
    leftover trailing); the first bit set means non-negative, and a negative number has every
    byte inverted (strings/decimal.c ``decimal2bin``). Printed with exactly `scale` decimals.
    """
    layout = _DECIMAL_LAYOUTS.get(raw[:2]) or _decimal_layout(raw[:2])
    size, top, groups, scale = layout
    if len(raw) != 2 + size:
        raise JsonBinaryError(f"DECIMAL({raw[0]},{scale}) of {len(raw) - 2} bytes, not {size}")
    x = int.from_bytes(raw[2:], "big")
    negative = not x & top
    x = (x ^ ((top << 1) - 1) if negative else x) ^ top
    unscaled = 0
    for shift, mask, limit in groups:
        group = (x >> shift) & mask
        if group >= limit:
            raise JsonBinaryError("DECIMAL digit group out of range")
        unscaled = unscaled * limit + group
    whole, fraction = divmod(unscaled, 10**scale)
    text = f"{whole}.{fraction:0{scale}d}" if scale else str(whole)
    return "-" + text if negative else text


def _decimal_layout(key: bytes) -> tuple[int, int, tuple[tuple[int, int, int], ...], int]:
    """(bytes, sign bit, groups as (shift, mask, 10**digits), scale) of a DECIMAL(precision, scale)."""
    if len(key) != 2:
        raise JsonBinaryError("DECIMAL without its precision and scale")
    precision, scale = key
    if not 0 < precision <= 65 or scale > precision or scale > 30:
        raise JsonBinaryError(f"DECIMAL({precision},{scale}) in JSON")
    full_int, lead = divmod(precision - scale, 9)
    full_frac, tail = divmod(scale, 9)
    sizes = ([(_DIGITS_TO_BYTES[lead], lead)] if lead else []) + [(4, 9)] * (full_int + full_frac)
    if tail:
        sizes.append((_DIGITS_TO_BYTES[tail], tail))
    size = sum(nbytes for nbytes, _ in sizes)
    groups = []
    shift = 8 * size
    for nbytes, ndigits in sizes:
        shift -= 8 * nbytes
        groups.append((shift, (1 << (8 * nbytes)) - 1, 10**ndigits))
    layout = _DECIMAL_LAYOUTS[key] = (size, 1 << (8 * size - 1), tuple(groups), scale)
    return layout


def _temporal_text(packed: int, field_type: int) -> str:
    """A packed temporal (``TIME_to_longlong_packed``) as ``my_TIME_to_str(t, 6)`` prints it."""
    negative = packed < 0
    packed = -packed if negative else packed
    micros = packed & 0xFFFFFF
    whole = packed >> 24
    if field_type == _MYSQL_TYPE_TIME:
        hour, minute, second = (whole >> 12) % 1024, (whole >> 6) & 63, whole & 63
        return f"{'-' if negative else ''}{hour:02d}:{minute:02d}:{second:02d}.{micros:06d}"
    ymd, hms = whole >> 17, whole & 0x1FFFF
    year, month = divmod(ymd >> 5, 13)
    date = f"{year:04d}-{month:02d}-{ymd & 31:02d}"
    if field_type == _MYSQL_TYPE_DATE:
        return date
    return f"{date} {hms >> 12:02d}:{(hms >> 6) & 63:02d}:{hms & 63:02d}.{micros:06d}"


def double_text(d: float) -> str:
    """A double as MySQL's JSON output prints it (``my_gcvt`` with a 34-character field, then ".0").

    ``my_gcvt`` takes the shortest digits that round-trip (``dtoa`` mode 4 with more digits
    than a double has, the digits Python's repr uses) and prints them in 'f' format when the
    decimal point position ``decpt`` is in -14..0, or positive and either at most 15
    (``MAX_DECPT_FOR_F_FORMAT``) or inside the digits; else in 'e' format ("1e15", "1.5e-16").
    """
    r = repr(d)
    if -1e15 < d < 1e15 and "e" not in r:
        return r  # repr's fixed notation (1e-4 <= |d| < 1e16, ".0" when integral) is my_gcvt's 'f' here
    if r[0] in "in":  # inf, nan: MySQL cannot store them in JSON
        raise JsonBinaryError(f"double {r} in JSON")
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    mantissa, _, exponent = r.partition("e")
    whole, _, fraction = mantissa.partition(".")
    if exponent:
        digits = (whole + fraction).rstrip("0") or "0"
        decpt = int(exponent) + 1
    elif whole != "0":
        digits = (whole + fraction).rstrip("0")
        decpt = len(whole)
    else:
        digits = fraction.lstrip("0")
        decpt = len(digits) - len(fraction)
        if not digits:  # zero
            return sign + "0.0"
    n = len(digits)
    if -14 <= decpt <= 0:
        return f"{sign}0.{'0' * -decpt}{digits}"
    if 0 < decpt < n:
        return f"{sign}{digits[:decpt]}.{digits[decpt:]}"
    if 0 < decpt <= 15:
        return f"{sign}{digits}{'0' * (decpt - n)}.0"
    tail = f".{digits[1:]}" if n > 1 else ""
    return f"{sign}{digits[0]}{tail}e{decpt - 1}"
