"""pgoutput TupleData -> raw column values: the per-row hot path of the whole source.

A TupleData is an int16 column count, then per column a kind byte: 'n' (NULL), 'u' (an unchanged
TOASTed value, not sent), 't' (int32 length + text) or 'b' (int32 length + the type's binary
send format; with the ``binary`` option, PostgreSQL 14+).

Text values are appended as raw bytes (`connectors.postgres.types` converts whole columns later).
Binary values are read through their column's `BinaryCodec.code`: for a relation whose columns all
have codecs, a row decoder is compiled once per relation version (as the MySQL fast decoder does)
that assumes every column is a binary value - the common case - and reads each run of fixed-width
values, up to the length of the next variable-length one, with one precompiled
``struct.unpack_from``. It checks every kind byte it read before appending anything: a column that
is NULL or unchanged shifts what follows, but the first such column's kind byte is always read at
its true position (everything before it was a well-formed binary value), so the check fails
exactly when the assumption does, and the row is then read value by value instead.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from connectors.postgres.pgoutput import PgoutputError

_TEXT = ord("t")
_BINARY = ord("b")
_NULL = ord("n")
_UNCHANGED = ord("u")
_NEW_TUPLE = ord("N")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")

Appends = tuple[Callable[[Any], None], ...]
# insert(data) -> position after the tuple; appends the row's values and its op.
Inserter = Callable[[bytes], int]


class TupleReader:
    """Reads the TupleData of one relation version: text values, or binary ones per `codes`.

    `codes` holds one entry per column: the struct code of a fixed-width binary value, or None for
    a variable-length one. Without `codes` (text mode) every value must be text ('t').
    """

    __slots__ = ("ncols", "binary", "_unpackers", "_widths", "_fast_read", "_insert_factory")

    def __init__(self, ncols: int, codes: Sequence[str | None] | None = None) -> None:
        if codes is not None and len(codes) != ncols:
            raise ValueError(f"{len(codes)} codes for {ncols} columns")
        self.ncols = ncols
        self.binary = codes is not None
        self._unpackers = [struct.Struct(">" + c).unpack_from if c else None for c in codes or ()]
        self._widths = [struct.calcsize(">" + c) if c else -1 for c in codes or ()]
        self._fast_read: Callable[[bytes, int], tuple[int, list[Any]] | None] | None = None
        self._insert_factory: Callable[..., Inserter] | None = None
        if codes is not None:
            self._fast_read, self._insert_factory = _compile(list(codes))

    def inserter(self, appends: Appends, append_op: Callable[[str], None]) -> Inserter:
        """A function that appends an Insert message's row to `appends` (and "I" to the ops);
        PgoutputError if the message is not one new tuple ('N' at byte 5, then the TupleData)."""
        if len(appends) != self.ncols:
            raise ValueError(f"{len(appends)} columns to append to, the relation has {self.ncols}")

        def slow(data: bytes) -> int:
            if data[5] != _NEW_TUPLE:
                raise PgoutputError(f"Insert without a new tuple (byte {data[5]!r})")
            pos, _unchanged = self.append(data, 6, appends)
            if pos != len(data):
                raise PgoutputError("Insert message does not end with its tuple")
            append_op("I")
            return pos

        if self._insert_factory is None:
            return slow
        return self._insert_factory(appends, append_op, slow)

    def append(self, data: bytes, pos: int, appends: Appends) -> tuple[int, list[int] | None]:
        """Append one TupleData's values (column by column); returns the position after it and
        the indexes of unchanged-TOAST columns (their slot gets None), or None when there are none."""
        (ncols,) = _INT16.unpack_from(data, pos)
        if ncols != self.ncols:
            raise PgoutputError(f"tuple has {ncols} columns but its relation has {self.ncols}")
        pos += 2
        unpack_length = _INT32.unpack_from
        unchanged: list[int] | None = None
        expected = _BINARY if self.binary else _TEXT
        unpackers = self._unpackers
        for i, append in enumerate(appends):
            kind = data[pos]
            if kind == expected:
                start = pos + 5
                pos = start + unpack_length(data, pos + 1)[0]
                if expected == _TEXT or unpackers[i] is None:
                    append(data[start:pos])
                else:
                    if pos - start != self._widths[i]:
                        raise PgoutputError(
                            f"binary value of {pos - start} bytes for a {self._widths[i]}-byte type"
                        )
                    append(unpackers[i](data, start)[0])  # type: ignore[misc]
            elif kind == _NULL:
                append(None)
                pos += 1
            elif kind == _UNCHANGED:
                append(None)
                pos += 1
                if unchanged is None:
                    unchanged = []
                unchanged.append(i)
            else:
                mode = "binary" if self.binary else "text"
                raise PgoutputError(f"tuple column kind {chr(kind)!r} in a {mode}-values stream")
        return pos, unchanged

    def read(self, data: bytes, pos: int) -> tuple[int, list[Any], list[int] | None]:
        """One TupleData as a list of values (old tuples and updates)."""
        if self._fast_read is not None:
            fast = self._fast_read(data, pos)
            if fast is not None:
                return fast[0], fast[1], None
        values: list[Any] = []
        appends = (values.append,) * self.ncols
        pos, unchanged = self.append(data, pos, appends)
        return pos, values, unchanged


def _compile(codes: list[str | None]) -> tuple[Callable[[bytes, int], Any], Callable[..., Inserter]]:
    """Compile the all-binary row decoder for these columns: a reader and an inserter factory."""
    namespace: dict[str, Any] = {"struct_error": struct.error}

    def body(first_fmt: str, first_fields: list[str]) -> list[str]:
        """Statements reading the tuple from ``p`` into v0..vN (and the kinds into k0..kN)."""
        lines: list[str] = []
        fmt = [first_fmt]
        fields = list(first_fields)
        width = struct.calcsize(">" + first_fmt)

        def flush() -> None:
            nonlocal width
            name = f"_s{len(namespace)}"
            namespace[name] = struct.Struct(">" + "".join(fmt)).unpack_from
            lines.append(f"{', '.join(fields)}, = {name}(data, p)")
            lines.append(f"p += {width}")
            fmt.clear()
            fields.clear()
            width = 0

        for i, code in enumerate(codes):
            if code:
                fmt.append("B4x" + code)
                fields.extend((f"k{i}", f"v{i}"))
                width += 5 + struct.calcsize(">" + code)
            else:
                fmt.append("Bi")
                fields.extend((f"k{i}", f"l{i}"))
                width += 5
                flush()
                lines.append(f"v{i} = data[p : p + l{i}]")
                lines.append(f"p += l{i}")
        if fields:
            flush()
        return lines

    def indent(lines: list[str], spaces: int) -> str:
        return "\n".join(" " * spaces + line for line in lines)

    ncols = len(codes)
    kinds = " == ".join([f"k{i}" for i in range(ncols)] + ["98"]) if ncols else "True"
    values = ", ".join(f"v{i}" for i in range(ncols))
    unpack_appends = f"{', '.join(f'a{i}' for i in range(ncols))}, = appends" if ncols else "pass"
    append_values = "; ".join(f"a{i}(v{i})" for i in range(ncols)) or "pass"
    # The inserter reads the Insert message from its tuple kind byte (5) on: 'N', then the tuple.
    source = f"""
def read(data, p):
    try:
{indent(body("h", ["n"]), 8)}
    except struct_error:
        return None
    if n != {ncols} or not ({kinds}):
        return None
    return p, [{values}]


def factory(appends, append_op, slow):
    {unpack_appends}

    def insert(data):
        p = 5
        try:
{indent(body("Bh", ["t", "n"]), 12)}
        except struct_error:
            return slow(data)
        if t != {_NEW_TUPLE} or n != {ncols} or not ({kinds}) or p != len(data):
            return slow(data)
        {append_values}
        append_op("I")
        return p

    return insert
"""
    exec(compile(source, f"<tuple decoder {''.join(c or '*' for c in codes)}>", "exec"), namespace)  # noqa: S102 - generated above
    return namespace["read"], namespace["factory"]
