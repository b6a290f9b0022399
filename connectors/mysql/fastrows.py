"""A fast decoder for binlog WRITE/UPDATE/DELETE rows events (v1 and v2) into Arrow columns.

mysql-replication decodes every value with several Python calls (about 20-30k rows/s per core,
PITFALLS.md). This decoder reads the event's row bytes once and, for each null pattern of a table,
compiles a row decoder: with the null bitmap fixed, the sequence of present columns is fixed, so
each run of fixed-width columns (up to and including the next length prefix) is one precompiled
``struct.unpack_from`` and each variable-length value one slice. Rows are collected as tuples,
transposed once (``zip``) and converted per column (connectors.mysql.fastrows_values). Update
before-images are read only for their key unless the key changed.

The library path stays the reference: a table or event this decoder does not handle (a type left
to the library, MINIMAL row images, MySQL 8 partial JSON updates, a value the library would
quarantine) raises `FastPathUnsupported`, and the caller (rows.py) decodes that event with the
library instead. The event's packet is not consumed here, so that stays possible. Reading the
row bytes relies on mysql-replication 1.0.17's packet wrapper (see `_row_bytes`).
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import pyarrow as pa
from pymysqlreplication.constants import BINLOG
from pymysqlreplication.row_event import DeleteRowsEvent, RowsEvent, UpdateRowsEvent, WriteRowsEvent

from connectors.mysql.fastrows_plan import ColumnPlan, FastPathRejected, FastPathUnsupported, plan_column
from connectors.mysql.schema import TableDefinition

logger = logging.getLogger(__name__)

__all__ = ["FastPathRejected", "FastPathUnsupported", "FastRowDecoder", "fallback_counts"]

_PACKET_HEADER = 20  # the OK byte and the 19-byte event header, before the event's own bytes
_SUPPORTED_EVENTS = frozenset(
    {
        BINLOG.WRITE_ROWS_EVENT_V1,
        BINLOG.UPDATE_ROWS_EVENT_V1,
        BINLOG.DELETE_ROWS_EVENT_V1,
        BINLOG.WRITE_ROWS_EVENT_V2,
        BINLOG.UPDATE_ROWS_EVENT_V2,
        BINLOG.DELETE_ROWS_EVENT_V2,
    }
)
# struct codes for the length prefix of a variable-length value (3 bytes: low 16 bits, high 8)
_PREFIX_CODES = {1: "B", 2: "H", 3: "HB", 4: "I"}

# Compiled row decoders kept per table (one per NULL pattern seen; each is a few KB).
_MAX_NULL_PATTERNS = 4096
# Why events went to the library path, since the process started (tests and debugging).
_fallbacks: Counter[str] = Counter()

RowImage = tuple[Any, ...]
ImageDecoder = Callable[[bytes, int, Callable[[RowImage], None]], int]


def fallback_counts() -> dict[str, int]:
    """How many events went to the library decoder, by reason, in this process."""
    return dict(_fallbacks)


def note_fallback(reason: str) -> None:
    """Count an event decoded by the library path, with a debug log line."""
    _fallbacks[reason] += 1
    logger.debug("rows event decoded by mysql-replication (%s); %d so far", reason, _fallbacks.total())


class FastRowDecoder:
    """Decodes the rows events of one table layout (one `BinlogTable`) into raw column values.

    The plan is built from the first rows event's columns (the TABLE_MAP the event refers to);
    every event of the same `BinlogTable` has the same layout (schema.table_map_fingerprint).
    """

    def __init__(self, definition: TableDefinition, zone: str) -> None:
        self._definition = definition
        self._zone = zone
        self._plans: tuple[ColumnPlan, ...] | None = None
        self._unsupported: str | None = None
        self._images: dict[bytes, ImageDecoder] = {}
        self._key_images: dict[bytes, ImageDecoder] = {}
        self._bitmap_bytes = (len(definition.types) + 7) // 8

    # -- plan -------------------------------------------------------------------------------

    def _plan(self, event: RowsEvent) -> tuple[ColumnPlan, ...]:
        if self._plans is not None:
            return self._plans
        if self._unsupported is not None:
            raise FastPathUnsupported(self._unsupported)
        columns = event.columns
        types = self._definition.types
        try:
            if len(columns) != len(types):
                raise FastPathUnsupported(
                    f"TABLE_MAP has {len(columns)} columns, the definition {len(types)}"
                )
            self._plans = tuple(plan_column(c, t, self._zone) for c, t in zip(columns, types, strict=True))
        except FastPathUnsupported as exc:
            self._unsupported = f"{self._definition.table}: {exc}"
            logger.debug("fast rows decoder not used for %s", self._unsupported)
            raise FastPathUnsupported(self._unsupported) from None
        return self._plans

    def _image_decoder(self, null_bitmap: bytes) -> ImageDecoder:
        decoder = self._images.get(null_bitmap)
        if decoder is None:
            assert self._plans is not None
            if len(self._images) >= _MAX_NULL_PATTERNS:
                self._images.clear()  # bounded memory for tables with very many NULL patterns
            decoder = self._images[null_bitmap] = compile_image_decoder(self._plans, null_bitmap)
        return decoder

    def _key_decoder(self, null_bitmap: bytes, keys: tuple[int, ...]) -> ImageDecoder:
        decoder = self._key_images.get(null_bitmap)
        if decoder is None:
            assert self._plans is not None
            if len(self._key_images) >= _MAX_NULL_PATTERNS:
                self._key_images.clear()
            decoder = compile_image_decoder(self._plans, null_bitmap, keys=keys)
            self._key_images[null_bitmap] = decoder
        return decoder

    # -- events -----------------------------------------------------------------------------

    def decode_images(self, event: RowsEvent) -> list[RowImage]:
        """Every row image of the event, in order (an update gives before, after, before, ...).

        Each image is a tuple of raw values in column order, None for NULL; `convert` turns
        columns of them into Arrow arrays. Raises FastPathUnsupported if the event is not one
        this decoder handles; nothing of the event's packet is consumed.
        """
        self._plan(event)
        body = _row_bytes(event, len(self._definition.types))
        nb = self._bitmap_bytes
        images: list[RowImage] = []
        append = images.append
        get = self._images.get
        position, end = 0, len(body)
        try:
            while position < end:
                null_bitmap = body[position : position + nb]
                decoder = get(null_bitmap) or self._image_decoder(null_bitmap)
                position = decoder(body, position + nb, append)
        except struct.error as exc:
            raise FastPathUnsupported(f"row image does not match the table map: {exc}") from None
        if position != end:
            raise FastPathUnsupported("row images do not end at the event's end")
        return images

    def decode_updates(
        self, event: UpdateRowsEvent, keys: tuple[int, ...]
    ) -> tuple[list[RowImage], dict[int, RowImage]]:
        """An update event's after images, and the full before image of each row whose key changed.

        Before images are only read for their key (the lake needs the rest only when the key
        changed, to delete the old key), then decoded in full for those rows.
        """
        self._plan(event)
        body = _row_bytes(event, len(self._definition.types))
        nb = self._bitmap_bytes
        befores: list[tuple[Any, int]] = []
        afters: list[RowImage] = []
        before, after = befores.append, afters.append
        get_key, get = self._key_images.get, self._images.get
        position, end = 0, len(body)
        try:
            while position < end:
                null_bitmap = body[position : position + nb]
                key_decoder = get_key(null_bitmap) or self._key_decoder(null_bitmap, keys)
                position = key_decoder(body, position + nb, before)
                null_bitmap = body[position : position + nb]
                decoder = get(null_bitmap) or self._image_decoder(null_bitmap)
                position = decoder(body, position + nb, after)
            if position != end:
                raise FastPathUnsupported("row images do not end at the event's end")
            key_of = itemgetter(*keys)
            moved: dict[int, RowImage] = {}
            for r, ((old_key, start), image) in enumerate(zip(befores, afters, strict=True)):
                if old_key != key_of(image):
                    full: list[RowImage] = []
                    self._image_decoder(body[start - nb : start])(body, start, full.append)
                    moved[r] = full[0]
        except struct.error as exc:
            raise FastPathUnsupported(f"row images do not match the table map: {exc}") from None
        return afters, moved

    def convert(self, images: Sequence[RowImage]) -> list[pa.Array]:
        """Row images (as `decode_images` gives them, of any number of events) -> one Arrow array per column.

        Raises FastPathRejected if a value is one the library path quarantines or fails on.
        """
        assert self._plans is not None
        columns = list(zip(*images, strict=True)) if images else [()] * len(self._plans)
        return [plan.convert(values) for plan, values in zip(self._plans, columns, strict=True)]


def _row_bytes(event: RowsEvent, column_count: int) -> bytes:
    """The bytes of the event's row images, read without consuming the packet.

    mysql-replication has read the post-header, the column count and the columns-present
    bitmap(s) when it hands out a rows event; the rows follow up to the event's end (the
    checksum, if any, is excluded from `event_size`). Only FULL images are handled: every column
    present, so the null bitmap covers every column.
    """
    if event.event_type not in _SUPPORTED_EVENTS:
        raise FastPathUnsupported(f"event type {event.event_type}")
    if event.number_of_columns != column_count:
        raise FastPathUnsupported("column count differs from the table map")
    whole, rest = divmod(column_count, 8)
    last = (1 << rest) - 1  # the bits of the columns in a partly used last byte
    bitmaps = [event.columns_present_bitmap]
    if isinstance(event, UpdateRowsEvent):
        bitmaps.append(event.columns_present_bitmap2)
    elif not isinstance(event, WriteRowsEvent | DeleteRowsEvent):
        raise FastPathUnsupported(f"not a rows event: {type(event).__name__}")
    # Only the columns' bits count: MariaDB leaves the bits past the last column clear, MySQL 8 sets them.
    if any(b[:whole] != b"\xff" * whole or (rest and b[whole] & last != last) for b in map(bytes, bitmaps)):
        raise FastPathUnsupported("not a FULL row image (binlog_row_image is not FULL)")
    wrapper = event.packet
    if getattr(wrapper, "_BinLogPacketWrapper__data_buffer", b""):
        raise FastPathUnsupported("packet has pushed-back bytes")
    packet = wrapper.packet
    start = _PACKET_HEADER + wrapper.read_bytes
    if getattr(packet, "_position", start) != start:
        raise FastPathUnsupported("packet position is not where the rows start")
    data = packet.get_all_data()
    end = _PACKET_HEADER + event.event_size
    if end > len(data) or start > end:
        raise FastPathUnsupported("event size does not match the packet")
    return bytes(data[start:end])


def compile_image_decoder(
    plans: Sequence[ColumnPlan], null_bitmap: bytes, keys: tuple[int, ...] | None = None
) -> ImageDecoder:
    """A function decoding one row image with this null bitmap (the bitmap itself already read).

    ``decode(body, position, append) -> position after the image``; `append` receives the tuple
    of raw values in column order (None for NULL). Consecutive fixed-width columns, and the
    length prefix of the variable-length column after them, are one ``struct.unpack_from``.

    With `keys` (column indexes), only those columns are read: `append` receives
    ``(key, position)`` with the key value (a tuple in `keys` order if there are several) and
    the position the image started at (after its null bitmap), to decode it in full later.
    """
    lines = ["def decode(body, p, append):", "    start = p"]
    wanted = set(range(len(plans)) if keys is None else keys)
    namespace: dict[str, Any] = {}
    values: list[str] = []
    codes: list[str] = []
    fields: list[str] = []
    width = 0

    def flush() -> None:
        nonlocal width
        if not codes:
            return
        name = f"_s{len(namespace)}"
        namespace[name] = struct.Struct("<" + "".join(codes)).unpack_from
        target = f"{', '.join(fields)}, = " if fields else ""
        lines.append(f"    {target}{name}(body, p)")
        lines.append(f"    p += {width}")
        codes.clear()
        fields.clear()
        width = 0

    for i, plan in enumerate(plans):
        if null_bitmap[i // 8] >> (i % 8) & 1:
            values.append("None")
            continue
        value = f"v{i}"
        values.append(value)
        if plan.code is not None:
            if i in wanted:
                codes.append(plan.code)
                fields.append(value)
            else:
                codes.append(f"{plan.width}x")  # skipped: struct pads, no object made
            width += plan.width
            continue
        prefix = _PREFIX_CODES[plan.prefix]
        codes.append(prefix)
        width += plan.prefix
        if plan.prefix == 3:
            fields.extend((f"n{i}", f"h{i}"))
            flush()
            lines.append(f"    n{i} |= h{i} << 16")
        else:
            fields.append(f"n{i}")
            flush()
        if i in wanted:
            lines.append(f"    {value} = body[p : p + n{i}]")
        lines.append(f"    p += n{i}")
    flush()
    if keys is None:
        lines.append(f"    append(({', '.join(values)},))")
    else:
        key = ", ".join(values[k] for k in keys)
        lines.append(f"    append((({key},), start))" if len(keys) > 1 else f"    append(({key}, start))")
    lines.append("    return p")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<row image {null_bitmap.hex()}>", "exec"), namespace)  # noqa: S102 - generated above
    decoder: ImageDecoder = namespace["decode"]
    return decoder
