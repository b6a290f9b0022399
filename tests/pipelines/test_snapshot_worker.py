"""`ChunkWorker`: chunks read and staged in a thread, committed by the stream thread between its
own commits; a TRUNCATE streamed meanwhile ends that table's snapshot.

The chunk source is an in-memory table read in key order (the real sources are tested in
tests/connectors/test_snapshot_chunk_sources.py and, with the worker, by the SIGKILL tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from connectors.events import Batch, TableId
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.offsets import Offset
from connectors.postgres.offset import Lsn
from connectors.snapshot_chunks import SnapshotChunk, SnapshotStart
from pipelines.capture.snapshot_worker import ChunkWorker, ProgressMeter
from tests.lake.helpers import PATIENTS, changes, stream_batch

ROWS, CHUNK = 60, 10


class MemoryChunks:
    """Rows 1..ROWS of PATIENTS in chunks of CHUNK; each chunk waits for `gate` to be released."""

    name = "src"

    def __init__(self, gate: threading.Semaphore) -> None:
        self.gate = gate
        self.read: list[int] = []

    def snapshot_chunks(
        self, table: TableId, after: Sequence[Any] | None, low: Offset
    ) -> Iterator[SnapshotChunk]:
        start = 0 if after is None else after[0]
        while True:
            self.gate.acquire()
            ids = range(start + 1, min(start + CHUNK, ROWS) + 1)
            self.read.extend(ids)
            rows = changes([("I", 100, {"id": i, "name": "snap"}) for i in ids])
            last = not ids or ids[-1] == ROWS
            yield SnapshotChunk(rows, (), (ids[-1],) if ids else (start,), last)
            if last:
                return
            start = ids[-1]

    def close(self) -> None:
        pass


def commit_until(worker: ChunkWorker, done: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the worker did not get there"
        worker.commit_ready(lambda record: None)
        time.sleep(0.01)


def test_a_truncate_during_the_snapshot_drops_staged_chunks_and_ends_the_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    writer = lake.writer("src")
    writer.begin_snapshot(SnapshotStart(Lsn(100), (changes([]),)))
    gate = threading.Semaphore(1)  # the reader waits before each chunk until it is let go
    source = MemoryChunks(gate)
    worker = ChunkWorker(writer, lambda: source, writer.snapshots_in_progress(), ProgressMeter())  # type: ignore[arg-type, return-value]
    worker.start()
    commit_until(worker, lambda: writer.snapshots_in_progress()[PATIENTS.lake_name].chunks == 1)
    gate.release()
    time.sleep(0.2)  # the second chunk is read and staged, not committed
    truncate = Batch(
        start=Lsn(100), end=Lsn(200), changes=(changes([("I", 150, {"id": 100, "name": "after"})]),),
        snapshot=frozenset({PATIENTS}),
    )  # fmt: skip
    writer.write(truncate)
    for _ in range(ROWS // CHUNK):  # one more chunk at a time, each committed (or not) before the next
        gate.release()
        time.sleep(0.2)
        worker.commit_ready(lambda record: None)
        if worker.finished:
            break
    commit_until(worker, lambda: worker.finished)
    assert worker.error is None and writer.snapshots_in_progress() == {}
    assert max(source.read) < ROWS  # the worker stopped reading the table
    writer.write(stream_batch(200, 300, changes([("I", 250, {"id": 101, "name": "later"})])))
    lake.current("src").merge()
    state = lake.current("src").read(PATIENTS.lake_name).to_pylist()
    assert sorted(r["id"] for r in state) == [100, 101]
