"""Resumable chunked snapshots: what a database source hands the pipeline, and how a chunk's last
key is kept in the lake so a killed snapshot continues after its last committed chunk.

An initial snapshot (or a resnapshot) is taken in two steps (decisions §5):
1. `ChunkedSnapshotSource.begin_snapshot` fixes the *low watermark*: the stream position that every
   chunk read afterwards contains (MySQL: the GTID position read first; PostgreSQL: the new slot's
   consistent point). The lake commits it at once, with each table's schema and an empty progress
   record, and the stream can start from there while the tables are read.
2. `ChunkedSnapshotSource.snapshot_chunks` reads one table in key order after a given key, each
   chunk one short autocommit statement. Each chunk is committed with the key it ended at, so a
   restart continues after the last committed chunk: no chunk is read into the lake twice and none
   is skipped.

Keys are stored in commit records as JSON: `encode_key` / `decode_key` keep the Python types a
driver returns (int, str, bytes, Decimal, date, datetime, time, timedelta, float) exactly.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import decimal
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from connectors.events import Batch, QuarantinedRow, TableChanges, TableId
from connectors.offsets import Offset
from connectors.source import SourceError

# A JSON value: what a key column's value becomes in a commit record.
JsonValue = Any


@dataclass(frozen=True, slots=True)
class SnapshotStart:
    """The low watermark and the tables to read (each as zero rows: its schema and key)."""

    low: Offset
    tables: tuple[TableChanges, ...]


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """One chunk of a table, in key order.

    `after` is the encoded key of the chunk's last row (`encode_key`; None only for an empty
    table); `last` says the table has no rows after this chunk (the final chunk may hold no rows).
    `estimate` is the server's estimate of the table's rows, for progress (None: unknown).
    """

    changes: TableChanges
    quarantined: tuple[QuarantinedRow, ...]
    after: tuple[JsonValue, ...] | None
    last: bool
    estimate: int | None = None


@runtime_checkable
class ChunkedSnapshotSource(Protocol):
    """A source whose snapshots are read in resumable key-ordered chunks."""

    def begin_snapshot(self, tables: Sequence[TableId] | None = None) -> SnapshotStart:
        """Fix the low watermark for `tables` (all captured tables by default).

        PostgreSQL creates the source's replication slot here (dropping a leftover or the old one
        of a resnapshot), so the stream can read from `low`; no source writes anything else.
        """
        ...

    def begin_backfill(self, tables: Sequence[TableId], stream_offset: Offset) -> SnapshotStart:
        """Start a resumable backfill of `tables` into a stream committed up to `stream_offset`:
        that offset is the low watermark (every chunk, read later, contains the changes up to it).

        Nothing is created on the server: no slot, no lock (PostgreSQL adds a table that is not
        yet published to the publication, so the stream carries its changes from now on).
        """
        ...

    def snapshot_chunks(
        self, table: TableId, after: Sequence[JsonValue] | None, low: Offset
    ) -> Iterator[SnapshotChunk]:
        """`table`'s rows with keys after `after` (a recorded chunk's `after`, as recorded; None:
        from the first), in chunks of
        `chunk_rows`, each read by one autocommit statement; the rows carry `low` as their
        position. The final chunk has `last=True`."""
        ...


class ReadChunk(Protocol):
    """A chunk as a source's reader produces it: the last key still as the driver returned it."""

    @property
    def changes(self) -> TableChanges: ...
    @property
    def quarantined(self) -> tuple[QuarantinedRow, ...]: ...
    @property
    def key(self) -> tuple[Any, ...] | None: ...
    @property
    def rows(self) -> int: ...
    @property
    def last(self) -> bool: ...


Chunk = TypeVar("Chunk", bound=ReadChunk)


def resume_key(
    table: TableId, after: Sequence[JsonValue] | None, key: Sequence[str]
) -> tuple[Any, ...] | None:
    """The key to read `table` on after, from a recorded chunk's `after` (None: from the first row);
    `SourceError` when the table's primary key has changed since (`key`: its columns now)."""
    if after is None:
        return None
    values = decode_key(after)
    if len(values) != len(key):
        raise SourceError(
            f"cannot continue the snapshot of {table} after {values!r}: its key is now {tuple(key)}; "
            "take the snapshot again"
        )
    return values


def chunks_after(
    read: Callable[[tuple[Any, ...] | None], Chunk], after: tuple[Any, ...] | None
) -> Iterator[Chunk]:
    """Chunks read by `read(last key)` in key order after `after`, up to the one that is `last`.

    A full chunk is followed by another read, which may find no rows: that chunk carries the key
    it started after, so its `after` is still where the table ends."""
    last = after
    while True:
        chunk = read(last)
        if chunk.rows:
            last = chunk.key
        else:
            chunk = dataclasses.replace(chunk, key=last)  # type: ignore[type-var]
        yield chunk
        if chunk.last:
            return


def staged_batches(chunks: Iterable[ReadChunk], start: Offset | None) -> Generator[Batch, None, int]:
    """A whole-table snapshot's chunks as incomplete batches from `start` (chunks without rows,
    the empty read that ends a range, are left out); returns how many rows there were."""
    rows = 0
    for chunk in chunks:
        if not chunk.rows:
            continue
        rows += chunk.rows
        yield Batch(
            start=start, end=None, changes=(chunk.changes,), complete=False, quarantined=chunk.quarantined
        )
    return rows


def planned_chunks(
    read: Callable[[tuple[Any, ...] | None], Chunk],
    bound: Callable[[tuple[Any, ...] | None], tuple[Any, ...] | None],
    read_between: Callable[[tuple[Any, ...] | None, tuple[Any, ...]], Chunk],
    after: tuple[Any, ...] | None,
    readers: int,
    name: str = "snapshot-reader",
) -> Iterator[Chunk]:
    """The chunks of `chunks_after(read, after)`, read by `readers` threads at once, in key order.

    A chunk's end is planned ahead by `bound(last key)`: the key of the chunk-size-th row after it
    (an index-only read that returns no rows), None when fewer rows are left. The range up to it is
    read by `read_between(last key, bound)` in a reader thread (its chunk ends at the bound, even
    if rows were deleted meanwhile), so up to `readers` chunks are read while the caller stages and
    commits the earlier ones; chunks are yielded in key order, so a recorded `after` still means
    "everything up to here". Where `bound` finds the end near, the rest is read by `read` one
    chunk at a time, as without planning. Memory: at most `readers` chunks are held besides the
    one the caller has. `read_between` runs in reader threads: it must use its own connections.
    """
    if readers <= 1:
        yield from chunks_after(read, after)
        return
    pool = ThreadPoolExecutor(readers, thread_name_prefix=name)
    pending: deque[tuple[Future[Chunk], tuple[Any, ...] | None]] = deque()  # (read, its end; None: tail)
    cancelled = threading.Event()
    try:
        last = after
        tail = False  # the end is near: the rest is read one chunk at a time
        while True:
            while not tail and len(pending) < readers:
                end = bound(last)
                if end is None:
                    tail = True
                    break
                pending.append((pool.submit(_unless, cancelled, read_between, last, end), end))
                last = end
            if pending:
                future, end = pending.popleft()
                chunk = future.result()
                yield dataclasses.replace(chunk, key=end, last=False)  # type: ignore[type-var]
                continue
            yield from chunks_after(read, last)
            return
    finally:
        cancelled.set()
        pool.shutdown(wait=True, cancel_futures=True)


class PerThread:
    """One resource per reader thread, opened on first use (`get`) and all closed by `close`."""

    def __init__(self, open_one: Callable[[], Any], close_one: Callable[[Any], None]) -> None:
        self._open = open_one
        self._close = close_one
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[Any] = []

    def get(self) -> Any:
        resource = getattr(self._local, "resource", None)
        if resource is None:
            resource = self._local.resource = self._open()
            with self._lock:
                self._opened.append(resource)
        return resource

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for resource in opened:
            with contextlib.suppress(Exception):
                self._close(resource)


def _unless(cancelled: threading.Event, read: Callable[..., Chunk], *args: Any) -> Chunk:
    if cancelled.is_set():
        raise RuntimeError("snapshot reading was stopped")
    return read(*args)


def recorded(chunk: ReadChunk, estimate: int | None) -> SnapshotChunk:
    """A reader's chunk as the pipeline takes it, its last key encoded for the commit record."""
    after = None if chunk.key is None else encode_key(chunk.key)
    return SnapshotChunk(chunk.changes, chunk.quarantined, after, chunk.last, estimate)


def encode_key(values: Sequence[Any]) -> tuple[JsonValue, ...]:
    """A key's values as JSON values that `decode_key` turns back into equal values of equal types."""
    return tuple(_encode(v) for v in values)


def decode_key(values: Sequence[JsonValue]) -> tuple[Any, ...]:
    return tuple(_decode(v) for v in values)


def _encode(value: Any) -> JsonValue:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return {"float": value.hex()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dt.datetime):  # before date: a datetime is a date
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"timedelta": [value.days, value.seconds, value.microseconds]}
    raise TypeError(f"a key value of type {type(value).__name__} cannot be recorded: {value!r}")


def _decode(value: JsonValue) -> Any:
    if not isinstance(value, dict):
        return value
    ((kind, text),) = value.items()
    match kind:
        case "float":
            return float.fromhex(text)
        case "decimal":
            return decimal.Decimal(text)
        case "bytes":
            return base64.b64decode(text)
        case "datetime":
            return dt.datetime.fromisoformat(text)
        case "date":
            return dt.date.fromisoformat(text)
        case "time":
            return dt.time.fromisoformat(text)
        case "timedelta":
            days, seconds, micros = text
            return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    raise ValueError(f"a recorded key value has unknown kind {kind!r}")
