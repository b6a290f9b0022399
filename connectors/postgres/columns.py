"""Raw values gathered column by column, turned into `TableChanges` in one go.

Decoding appends each value to its column's list: text (bytes from pgoutput, str from a snapshot
cursor) or, for a buffer of binary values, what `connectors.postgres.binary` reads (ints, floats,
bools, bytes); None for NULL. Metadata is kept once per transaction (a *segment*) instead of once
per row. `ChangeBuffer.build` then converts whole columns with Arrow. When a column fails to
convert, the rows at fault are found by bisection and quarantined with the column, value and
reason; the rest of the column still converts in one piece.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.events import (
    UTC_MICROS,
    QuarantinedRow,
    TableChanges,
)
from connectors.postgres.binary import raw_array, utf8_text
from connectors.postgres.catalog import TableLayout
from connectors.postgres.types import CONVERSION_ERRORS, Converter

RawValue = Any  # bytes or str (text), or what a binary codec reads; None for NULL

_UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Segment:
    """Metadata shared by consecutive rows of one transaction (or one snapshot chunk)."""

    rows: int
    position: str
    commit_micros: int  # microseconds since the Unix epoch, UTC
    txid: str | None


class ChangeBuffer:
    """Rows of one table layout as raw columns, with their ops and transaction segments.

    With `binary`, the values are binary-format values read through each column type's
    `BinaryCodec` (every column must have one); otherwise text.
    """

    __slots__ = ("layout", "binary", "columns", "appends", "ops", "unchanged", "segments", "_segmented")

    def __init__(self, layout: TableLayout, *, binary: bool = False) -> None:
        self.layout = layout
        self.binary = binary
        self.columns: list[list[RawValue]] = [[] for _ in layout.types]
        self.appends = tuple(column.append for column in self.columns)  # for the row decoders
        self.ops: list[str] = []
        # (row index, column indexes) of values the source did not send (unchanged TOAST).
        self.unchanged: list[tuple[int, tuple[int, ...]]] = []
        self.segments: list[Segment] = []
        self._segmented = 0  # rows already covered by a segment

    def __len__(self) -> int:
        return len(self.ops)

    def close_segment(self, position: str, commit_micros: int, txid: str | None) -> None:
        """Attribute the rows added since the last segment to one transaction."""
        count = len(self.ops) - self._segmented
        if count:
            self.segments.append(Segment(count, position, commit_micros, txid))
            self._segmented += count

    def absorb(self, other: ChangeBuffer) -> None:
        """Append `other`'s (fully segmented) rows; `other` must have the same layout."""
        base = len(self.ops)
        for mine, theirs in zip(self.columns, other.columns, strict=True):
            mine.extend(theirs)
        self.ops.extend(other.ops)
        self.unchanged.extend((row + base, cols) for row, cols in other.unchanged)
        self.segments.extend(other.segments)
        self._segmented += other._segmented

    def drop_rows(self) -> None:
        """Forget every row (a TRUNCATE in the same transaction deleted them)."""
        for column in self.columns:
            column.clear()
        self.ops.clear()
        self.unchanged.clear()
        self.segments.clear()
        self._segmented = 0

    def _text(self, column: int, value: Any) -> str | None:
        """A raw value as PostgreSQL prints it (for quarantine messages)."""
        if value is None or not self.binary:
            return value  # type: ignore[no-any-return]
        codec = self.layout.types[column].binary
        assert codec is not None
        return codec.render(value)

    def build(self) -> tuple[TableChanges, list[QuarantinedRow]]:
        """Convert to `TableChanges`; rows with unconvertible values go to the quarantine list."""
        layout = self.layout
        schema = layout.schema
        n = len(self.ops)
        if self._segmented != n:
            raise RuntimeError(f"{schema.table}: {n - self._segmented} rows have no transaction segment")
        if self.binary:
            codecs = [t.binary for t in layout.types]
            if None in codecs:
                raise RuntimeError(
                    f"{schema.table}: binary values for a column type without a binary decoder"
                )
            raw = [raw_array(codec, values) for codec, values in zip(codecs, self.columns, strict=True)]  # type: ignore[arg-type]
            converters = [codec.convert for codec in codecs]  # type: ignore[union-attr]
        else:
            raw = [_raw_array(values) for values in self.columns]
            converters = [t.convert for t in layout.types]
        converted: list[pa.Array] = []
        bad: dict[int, list[str]] = {}
        for number, (column, convert, values) in enumerate(zip(schema.columns, converters, raw, strict=True)):
            array, failures = convert_column(convert, values)
            converted.append(array)
            for row in failures:
                text = self._text(number, values[row].as_py())
                shown = text if text is None or len(text) <= 200 else text[:200] + "..."
                bad.setdefault(row, []).append(
                    f"column {column.name!r} ({column.source_type}) value {shown!r} cannot be stored as {column.type}"
                )
        index: list[int] = []
        for segment_number, segment in enumerate(self.segments):
            index.extend([segment_number] * segment.rows)
        take = pa.array(index, pa.int32())
        meta = [
            pa.array(self.ops, pa.string()),
            pa.array([s.commit_micros for s in self.segments], pa.int64()).cast(UTC_MICROS).take(take),
            pa.array([s.position for s in self.segments], pa.string()).take(take),
            pa.array([s.txid for s in self.segments], pa.string()).take(take),
        ]
        table = pa.Table.from_arrays([*meta, *converted], schema=schema.arrow_schema())
        names = schema.column_names
        unchanged = [(row, tuple(names[i] for i in cols)) for row, cols in self.unchanged]
        quarantined: list[QuarantinedRow] = []
        if bad:
            for row in sorted(bad):
                segment = self.segments[index[row]]
                payload = {
                    name: self._text(number, values[row].as_py())
                    for number, (name, values) in enumerate(zip(names, raw, strict=True))
                }
                quarantined.append(
                    QuarantinedRow(
                        table=schema.table,
                        position=segment.position,
                        commit_ts=_UNIX_EPOCH + dt.timedelta(microseconds=segment.commit_micros),
                        reason=f"{self.ops[row]} row: " + "; ".join(bad[row]),
                        payload=repr(payload),
                    )
                )
            keep = pa.array([row not in bad for row in range(n)])
            table = table.filter(keep)
            new_index = _renumber(n, bad.keys())
            unchanged = [(new_index[row], cols) for row, cols in unchanged if row not in bad]
        return TableChanges(schema, table, tuple(unchanged)), quarantined


def _raw_array(values: list[RawValue]) -> pa.Array:
    """Raw text values as an Arrow string array (pgoutput bytes are checked for UTF-8 by the cast)."""
    for value in values:
        if value is not None:
            if isinstance(value, bytes):
                # client_encoding=UTF8 makes the server convert; invalid bytes are shown escaped.
                return utf8_text(pa.array(values, pa.binary()))
            break
    return pa.array(values, pa.string())


def convert_column(convert: Converter, values: pa.Array) -> tuple[pa.Array, list[int]]:
    """Convert a whole column; on failure, find the failing rows by bisection and null them.

    Returns the converted column (failing rows null) and the failing row indexes, so one bad value
    costs O(log n) extra conversions instead of a per-value pass over the column.
    """
    try:
        return convert(values), []
    except CONVERSION_ERRORS:
        pass
    failures: list[int] = []
    _bisect(convert, values, 0, len(values), failures)
    mask = pa.array([False] * len(values))
    if failures:
        flags = [False] * len(values)
        for row in failures:
            flags[row] = True
        mask = pa.array(flags)
    cleaned = pc.if_else(mask, pa.scalar(None, values.type), values)
    return convert(cleaned), failures


def _bisect(convert: Converter, values: pa.Array, start: int, stop: int, failures: list[int]) -> None:
    if start >= stop:
        return
    try:
        convert(values.slice(start, stop - start))
        return
    except CONVERSION_ERRORS:
        if stop - start == 1:
            failures.append(start)
            return
    middle = (start + stop) // 2
    _bisect(convert, values, start, middle, failures)
    _bisect(convert, values, middle, stop, failures)


def _renumber(n: int, removed: Iterable[int]) -> list[int]:
    """New row numbers after `removed` rows are filtered out (for the `unchanged` entries)."""
    gone = set(removed)
    mapping: list[int] = []
    kept = 0
    for row in range(n):
        mapping.append(kept)
        if row not in gone:
            kept += 1
    return mapping
