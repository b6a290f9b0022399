"""Binlog row images -> Arrow columns: the one place that decodes row events.

mysql-replication decodes every value in pure Python (about 20k rows/s per core, PITFALLS.md)
while fetching the binlog costs under 2% of that, so events are decoded by the fast decoder in
connectors.mysql.fastrows by default. Whatever it does not handle (a type left to the library,
a value that must be quarantined, a non-FULL row image) is decoded by mysql-replication, event
by event; both paths give identical `ConvertedRows` (tests/connectors/test_mysql_fastrows.py).

The fast decoder reads an event's row images into tuples (`RowImages`) and leaves the Arrow
conversion for later: building Arrow arrays has a fixed cost per call that dominates for the
~50-row events the server writes, so `convert_run` converts the images of many events of one
table at once (batching.py decides when). A value the library path would quarantine is only
found then; the events concerned are decoded again by the library (`RowImages.event` is kept,
its packet unread), so quarantine reasons stay the library's own.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymysqlreplication.constants import NONE_SOURCE
from pymysqlreplication.row_event import DeleteRowsEvent, RowsEvent, UpdateRowsEvent, WriteRowsEvent

from connectors.events import Op
from connectors.mysql.columns import ConvertedRows, RowConverter
from connectors.mysql.fastrows import FastPathUnsupported, FastRowDecoder, RowImage, note_fallback
from connectors.mysql.json_binary import BinaryJson
from connectors.mysql.schema import TableDefinition

_NOT_A_VALUE_PROBLEM = frozenset({NONE_SOURCE.NULL, NONE_SOURCE.COLS_BITMAP})
_INSERT, _UPDATE, _DELETE = Op.INSERT.value, Op.UPDATE.value, Op.DELETE.value
_fast_decoding = True  # switched off only by `library_decoding` (tests, benchmarks, a suspected bug)


@contextlib.contextmanager
def library_decoding() -> Iterator[None]:
    """Decode every rows event with mysql-replication while the block runs (the reference path)."""
    global _fast_decoding
    previous, _fast_decoding = _fast_decoding, False
    try:
        yield
    finally:
        _fast_decoding = previous


@dataclass(frozen=True, slots=True)
class BinlogTable:
    """A captured table as one TABLE_MAP event describes it, with its converter."""

    definition: TableDefinition
    converter: RowConverter
    key_indexes: tuple[int, ...]
    fast: FastRowDecoder = field(compare=False)

    @classmethod
    def build(cls, definition: TableDefinition, zone: str) -> BinlogTable:
        names = definition.schema.column_names
        return cls(
            definition,
            RowConverter.for_binlog(definition, zone),
            tuple(names.index(k) for k in definition.schema.key),
            FastRowDecoder(definition, zone),
        )


@dataclass(slots=True)
class RowImages:
    """One rows event decoded by the fast decoder but not converted yet: ops and raw row images.

    `event` is kept (its packet unread) so that the library can decode it if one of its values
    turns out, at conversion, to be one the library path quarantines.
    """

    event: RowsEvent
    ops: list[str]
    images: list[RowImage]

    @property
    def num_rows(self) -> int:
        return len(self.ops)


def decode_rows_event(event: RowsEvent, table: BinlogTable) -> RowImages | ConvertedRows:
    """Decode every row of a write/update/delete rows event (fast: `RowImages`; library: converted).

    Inserts give 'I' with the after-image, deletes 'D' with the before-image, updates 'U' with
    the after-image. An update that changes the primary key gives 'D' (old key, before-image)
    then 'I' (new key, after-image), so the lake drops the old key. Rows with a value that
    cannot be converted are returned in `rejected` (by `convert_run` for `RowImages`), not
    dropped silently.
    """
    if _fast_decoding:
        try:
            return _decode_fast(event, table)
        except FastPathUnsupported as exc:
            note_fallback(str(exc))
    return _decode_with_library(event, table)


def convert_run(table: BinlogTable, pieces: Sequence[RowImages]) -> Iterator[tuple[int, int, ConvertedRows]]:
    """Convert the row images of consecutive events of one table: ``(first, end, converted)`` parts.

    Normally one part for all of `pieces` (one Arrow conversion for all their rows). If a value
    is one the library path quarantines, each event is converted on its own and those that still
    fail are decoded by the library, each as a part of its own with its rejected rows.
    """
    if not pieces:
        return
    ops = list(itertools.chain.from_iterable(p.ops for p in pieces)) if len(pieces) > 1 else pieces[0].ops
    try:
        arrays = table.fast.convert(list(itertools.chain.from_iterable(p.images for p in pieces)))
    except FastPathUnsupported:
        for i, piece in enumerate(pieces):  # rare: find the events with the rejected values
            yield i, i + 1, _convert_or_fall_back(table, piece)
        return
    yield 0, len(pieces), ConvertedRows(ops, arrays)


def _convert_or_fall_back(table: BinlogTable, piece: RowImages) -> ConvertedRows:
    """One event's images converted, or the event decoded by the library if a value is rejected."""
    try:
        return ConvertedRows(piece.ops, table.fast.convert(piece.images))
    except FastPathUnsupported as exc:
        note_fallback(str(exc))
    return _decode_with_library(piece.event, table)


def _decode_fast(event: RowsEvent, table: BinlogTable) -> RowImages:
    """`decode_rows_event` by connectors.mysql.fastrows; FastPathUnsupported if it cannot."""
    if isinstance(event, UpdateRowsEvent):
        afters, moved = table.fast.decode_updates(event, table.key_indexes)
        if moved:
            rows: list[RowImage] = []
            ops: list[str] = []
            for r, after in enumerate(afters):
                before = moved.get(r)
                if before is None:
                    rows.append(after)
                    ops.append(_UPDATE)
                else:
                    rows += (before, after)
                    ops += (_DELETE, _INSERT)
        else:
            rows, ops = afters, [_UPDATE] * len(afters)
    else:
        rows = table.fast.decode_images(event)
        ops = [_DELETE if isinstance(event, DeleteRowsEvent) else _INSERT] * len(rows)
    # The library looks the event's columns up in the reader's table map when it decodes, which
    # may be later (convert_run) and after a newer TABLE_MAP reused the id: keep this one.
    event.table_map = {event.table_id: event.table_map[event.table_id]}
    return RowImages(event, ops, rows)


def _decode_with_library(event: RowsEvent, table: BinlogTable) -> ConvertedRows:
    """`decode_rows_event` by mysql-replication's own decoding plus the types.py fix-ups."""
    _keep_binary_json(event)
    rows: list[list[Any]] = []
    ops: list[str] = []
    rejected: dict[int, str] = {}
    positions = {c.name: i for i, c in enumerate(event.columns)}
    if isinstance(event, UpdateRowsEvent):
        keys = table.key_indexes
        for raw in event.rows:
            before, before_problem = _image(raw["before_values"], raw["before_none_sources"], positions)
            after, after_problem = _image(raw["after_values"], raw["after_none_sources"], positions)
            op = _UPDATE
            if any(before[i] != after[i] for i in keys):
                if before_problem:
                    rejected[len(rows)] = before_problem
                rows.append(before)
                ops.append(_DELETE)
                op = _INSERT
            if after_problem:
                rejected[len(rows)] = after_problem
            rows.append(after)
            ops.append(op)
        return table.converter.convert(rows, ops, rejected)
    if not isinstance(event, WriteRowsEvent | DeleteRowsEvent):
        raise TypeError(f"not a rows event: {type(event).__name__}")
    op = _DELETE if isinstance(event, DeleteRowsEvent) else _INSERT
    for raw in event.rows:
        row, problem = _image(raw["values"], raw["none_sources"], positions)
        if problem:
            rejected[len(rows)] = problem
        rows.append(row)
        ops.append(op)
    return table.converter.convert(rows, ops, rejected)


def _keep_binary_json(event: RowsEvent) -> None:
    """Have mysql-replication hand this event's MySQL JSON values over undecoded (`BinaryJson`).

    Its ``read_binary_json`` decodes them into Python values that lose what the server prints
    (types._json_binlog says what); the bytes are printed exactly by connectors.mysql.json_binary,
    as on the fast path. Only this event's packet reader is changed. Partial JSON updates keep
    the library's reading (binlog.py refuses those events before they get here).
    """
    packet = event.packet
    if "read_binary_json" in vars(packet):
        return
    library_read = packet.read_binary_json

    def read_binary_json(size: int, is_partial: bool) -> Any:
        if is_partial:
            return library_read(size, is_partial)
        return BinaryJson(packet.read(packet.read_uint_by_size(size)))

    packet.read_binary_json = read_binary_json


def _image(
    values: dict[str, Any], none_sources: dict[str, str], positions: dict[str, int]
) -> tuple[list[Any], str | None]:
    """The row's values in column order, and why it cannot be used (None if it can)."""
    row = list(values.values())
    problem = None
    if none_sources:
        for name, source in none_sources.items():
            if source in _NOT_A_VALUE_PROBLEM:
                continue
            if source == NONE_SOURCE.EMPTY_SET:
                row[positions[name]] = set()  # the decoder returns None for an empty SET; it is not NULL
            elif problem is None:
                problem = f"column {name!r}: the binlog decoder could not read the value ({source})"
    return row, problem
