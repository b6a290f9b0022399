"""`planned_chunks`: chunk ends planned ahead, ranges read by several threads, yielded in key order.

The table is a sorted list of keys that the test changes while chunks are planned and read, as a
concurrent writer would; the reads are slowed so that several are in flight at once.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from connectors.snapshot_chunks import chunks_after, planned_chunks

SIZE = 10  # rows per chunk


@dataclass(frozen=True)
class Chunk:
    keys: tuple[int, ...]
    key: tuple[Any, ...] | None
    rows: int
    last: bool


class Table:
    def __init__(self, keys: list[int]) -> None:
        self.keys = sorted(keys)
        self.lock = threading.Lock()
        self.reading = 0
        self.most_reading = 0
        self.reads_between = 0

    def _after(self, last: tuple[Any, ...] | None) -> int:
        return 0 if last is None else bisect.bisect_right(self.keys, last[0])

    def read(self, last: tuple[Any, ...] | None) -> Chunk:
        with self.lock:
            start = self._after(last)
            keys = tuple(self.keys[start : start + SIZE])
        return Chunk(keys, (keys[-1],) if keys else None, len(keys), len(keys) < SIZE)

    def bound(self, last: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        with self.lock:
            index = self._after(last) + SIZE - 1
            return (self.keys[index],) if index < len(self.keys) else None

    def read_between(self, last: tuple[Any, ...] | None, end: tuple[Any, ...]) -> Chunk:
        with self.lock:
            self.reading += 1
            self.reads_between += 1
            self.most_reading = max(self.most_reading, self.reading)
        time.sleep(0.01)  # a read takes a while: the others start meanwhile
        with self.lock:
            self.reading -= 1
            keys = tuple(self.keys[self._after(last) : bisect.bisect_right(self.keys, end[0])])
        return Chunk(keys, (keys[-1],) if keys else None, len(keys), len(keys) < SIZE)


def keys_of(chunks: list[Chunk]) -> list[int]:
    return [k for c in chunks for k in c.keys]


@pytest.mark.parametrize("readers", [2, 4])
def test_chunks_come_in_key_order_read_at_once_and_equal_the_serial_read(readers: int) -> None:
    table = Table(list(range(0, 1000, 3)))
    chunks = list(planned_chunks(table.read, table.bound, table.read_between, None, readers))
    assert keys_of(chunks) == keys_of(list(chunks_after(table.read, None)))
    assert table.most_reading == readers
    assert chunks[-1].last and not any(c.last for c in chunks[:-1])
    # Each chunk records where it ends: the next one starts right after it.
    for before, chunk in zip(chunks, chunks[1:], strict=False):
        if chunk.keys:
            assert before.key is not None and chunk.keys[0] > before.key[0]


def test_rows_deleted_or_inserted_after_planning_are_neither_read_twice_nor_skipped() -> None:
    table = Table(list(range(1000)))
    seen: list[int] = []
    generator = planned_chunks(table.read, table.bound, table.read_between, None, 3)
    for number, chunk in enumerate(generator):
        seen.extend(chunk.keys)
        if number == 2:
            with table.lock:
                # Empty planned ranges ahead, thin the rest, add rows after the last planned end.
                table.keys = [k for k in table.keys if not 40 <= k < 60 and k % 7 != 3]
                table.keys = sorted({*table.keys, 1000, 1001, 1002})
    assert seen == sorted(set(seen))  # key order, none twice
    # Every row still there at the end was read, those added after the last planned end too.
    assert set(table.keys) <= set(seen) and {1000, 1001, 1002} <= set(seen)


def test_a_stopped_generator_stops_the_readers_and_records_the_last_yielded_end() -> None:
    table = Table(list(range(1000)))
    generator = planned_chunks(table.read, table.bound, table.read_between, None, 2)
    taken = [next(generator) for _ in range(3)]
    generator.close()
    reads = table.reads_between
    time.sleep(0.05)
    assert table.reads_between == reads and table.reading == 0
    assert taken[-1].key == (29,)
    rest = list(planned_chunks(table.read, table.bound, table.read_between, taken[-1].key, 2))
    assert keys_of(taken + rest) == list(range(1000))


def test_one_reader_reads_serially() -> None:
    table = Table(list(range(95)))
    chunks = list(planned_chunks(table.read, table.bound, table.read_between, None, 1))
    assert table.reads_between == 0 and keys_of(chunks) == list(range(95))
