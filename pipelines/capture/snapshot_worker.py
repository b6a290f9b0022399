"""Chunked snapshots into the lake: read in bounded runs, or beside a running stream.

The snapshot starts with one commit (`LakeWriter.begin_snapshot`) that fixes the low watermark;
the lake's position is then that watermark, so the stream can run from it at once. Each table is
then read in key order, a chunk at a time; each chunk is committed with the key it ended at
(`LakeWriter.commit_chunk`), so a restart continues after the last committed chunk. In a bounded
run the chunks are read and committed in line (`commit_chunks`); beside a stream a `ChunkWorker`
thread reads and stages them while the stream thread commits them between two of its own commits,
so neither waits for the other (decisions §5).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field

from connectors.faults import crash_point
from connectors.lake.commits import CommitRecord, SnapshotProgress
from connectors.lake.writer import LakeWriter, StagedChunk
from connectors.offsets import parse_offset
from connectors.snapshot_chunks import ChunkedSnapshotSource, SnapshotChunk
from connectors.source import Source

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 5.0
READY_CHUNKS = 8  # staged chunks waiting for the stream thread (on storage, not in memory)


def chunked(source: Source) -> ChunkedSnapshotSource | None:
    """The source, if its snapshots are read in resumable chunks."""
    return source if isinstance(source, ChunkedSnapshotSource) else None


@dataclass
class ProgressMeter:
    """Rows and chunks committed per table in this run, for progress lines and Dagster metadata."""

    started: float = field(default_factory=time.monotonic)
    rows_this_run: int = 0
    tables: dict[str, dict[str, float | int | bool | None]] = field(default_factory=dict)
    _last_log: float = 0.0

    def committed(
        self, name: str, rows: int, progress: SnapshotProgress | None, before: SnapshotProgress
    ) -> None:
        """A chunk of `name` with `rows` rows was committed; `progress` is None once it was the last."""
        self.rows_this_run += rows
        seconds = max(time.monotonic() - self.started, 1e-9)
        rate = self.rows_this_run / seconds
        done = progress is None
        total = before.rows + rows
        estimate = before.estimate if done else progress.estimate  # type: ignore[union-attr]
        left = 0 if done or not estimate else max(estimate - total, 0)
        self.tables[name] = {
            "chunks": before.chunks + 1,
            "rows": total,
            "estimated_rows": estimate,
            "rows_per_second": round(rate),
            "eta_seconds": round(left / rate) if rate and not done else 0,
            "done": done,
        }
        now = time.monotonic()
        if done or now - self._last_log >= PROGRESS_EVERY_SECONDS:
            self._last_log = now
            line = self.tables[name]
            if done:
                log.info("snapshot of %s committed: %d rows in %d chunk(s)", name, total, line["chunks"])
            else:
                log.info(
                    "snapshot of %s: %d chunk(s), %d of about %s rows committed, %d rows/s, about %d s left",
                    name, line["chunks"], total, estimate if estimate is not None else "?",
                    line["rows_per_second"], line["eta_seconds"],
                )  # fmt: skip


def table_chunks(
    source: ChunkedSnapshotSource, name: str, progress: SnapshotProgress
) -> Iterator[SnapshotChunk]:
    """The chunks of a table after those its `progress` says are committed."""
    table = progress.table.table_id(getattr(source, "name", ""))
    if progress.chunks:
        log.info(
            "snapshot of %s resumes after chunk %d (%d rows committed)", name, progress.chunks, progress.rows
        )
    return source.snapshot_chunks(table, progress.after, parse_offset(progress.low))


def staged_chunks(
    writer: LakeWriter,
    source: ChunkedSnapshotSource,
    progress: Mapping[str, SnapshotProgress],
    go_on: Callable[[str], bool] = lambda _name: True,
) -> Generator[StagedChunk, None, None]:
    """Every chunk still missing from the tables in `progress`, read and staged in key order.

    Each chunk is staged after the one before it, assuming that one is committed (its progress is
    what `LakeWriter.commit_chunk` will record). `go_on(table)` is asked before a table is opened
    and before each of its chunks is staged: False reads that table no further.
    """
    # Tables whose rows give other tables their tenant first: a `via` table's chunk finds its
    # parents staged before it (connectors.lake.tenant_layout).
    parents = writer.tenants.is_parent if writer.tenants is not None else (lambda _name: False)
    for name, table_progress in sorted(progress.items(), key=lambda item: (not parents(item[0]), item[0])):
        if not go_on(name):
            continue
        chunks = table_chunks(source, name, table_progress)
        try:
            for chunk in chunks:
                if not go_on(name):
                    break
                staged = writer.stage_chunk(chunk, table_progress)
                yield staged
                if chunk.last:
                    break
                table_progress = table_progress.after_chunk(staged.rows, staged.after, staged.estimate)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


def commit_chunks(
    writer: LakeWriter,
    source: ChunkedSnapshotSource,
    meter: ProgressMeter,
    on_commit: Callable[[CommitRecord], None],
    stop: threading.Event | None = None,
) -> None:
    """Read and commit, in line, every chunk still missing from the tables being snapshotted."""
    with contextlib.closing(staged_chunks(writer, source, writer.snapshots_in_progress())) as chunks:
        for staged in chunks:
            record = writer.commit_chunk(staged)
            crash_point("published")
            name = staged.table.lake_name
            meter.committed(name, staged.rows, record.snapshots.get(name), staged.progress)
            on_commit(record)
            if stop is not None and stop.is_set():
                return


class ChunkWorker:
    """Reads and stages the missing chunks in a thread; the stream thread commits them (`commit_ready`).

    The worker reads a table's next chunk once the previous one is staged, assuming it will be
    committed; if a commit is refused (the lake's progress moved: another runner), the worker is
    cancelled and the stream starts a new one from the lake's progress. A table the stream
    replaced meanwhile (a TRUNCATE ends its snapshot: `LakeWriter`) has its staged chunks dropped
    and is read no further.
    """

    def __init__(
        self,
        writer: LakeWriter,
        open_twin: Callable[[], Source],
        progress: dict[str, SnapshotProgress],
        meter: ProgressMeter,
    ) -> None:
        self.writer = writer
        self.open_twin = open_twin
        self.progress = progress
        self.meter = meter
        self.error: BaseException | None = None
        self._ready: queue.Queue[StagedChunk | None] = queue.Queue(maxsize=READY_CHUNKS)
        self._cancel = threading.Event()
        self._ended: set[str] = set()  # tables whose snapshot the stream ended: read no further
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=f"snapshot-{writer.source}", daemon=True)

    def start(self) -> None:
        log.info(
            "%s: snapshot of %d table(s) read beside the stream: %s",
            self.writer.source, len(self.progress), ", ".join(sorted(self.progress)),
        )  # fmt: skip
        self._thread.start()

    @property
    def finished(self) -> bool:
        """Every chunk was read and committed (or the worker failed: see `error`)."""
        return self._finished

    def commit_ready(self, on_commit: Callable[[CommitRecord], None]) -> None:
        """Commit the chunks staged so far (call between two stream commits); raise the worker's error."""
        while True:
            try:
                staged = self._ready.get_nowait()
            except queue.Empty:
                return
            if staged is None:
                self._finished = True
                self._thread.join()
                if self.error is not None:
                    raise self.error
                return
            name = staged.table.lake_name
            if name not in self.writer.snapshots_in_progress():
                # The stream replaced the table meanwhile (a TRUNCATE): its snapshot has ended.
                self._ended.add(name)
                self.writer.discard_chunk(staged)
                log.info("snapshot of %s ended: the table was truncated while it was read", name)
                continue
            record = self.writer.commit_chunk(staged)
            crash_point("published")
            self.meter.committed(name, staged.rows, record.snapshots.get(name), staged.progress)
            on_commit(record)

    def cancel(self, timeout: float = 30.0) -> None:
        """Stop reading and drop what is staged but not committed."""
        self._cancel.set()
        while self._thread.is_alive():
            self._discard_ready()
            self._thread.join(0.1)
            timeout -= 0.1
            if timeout <= 0:
                break
        self._discard_ready()

    def _discard_ready(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                staged = self._ready.get_nowait()
                if staged is not None:
                    self.writer.discard_chunk(staged)

    def _put(self, item: StagedChunk | None) -> bool:
        while not self._cancel.is_set():
            with contextlib.suppress(queue.Full):
                self._ready.put(item, timeout=0.2)
                return True
        if item is not None:
            self.writer.discard_chunk(item)
        return False

    def _reads_on(self, name: str) -> bool:
        return not self._cancel.is_set() and name not in self._ended

    def _run(self) -> None:
        try:
            source = self.open_twin()
        except BaseException as exc:
            self.error = exc
            self._put(None)
            return
        try:
            staging = staged_chunks(self.writer, source, self.progress, self._reads_on)  # type: ignore[arg-type]
            with contextlib.closing(staging) as chunks:
                for staged in chunks:
                    if not self._put(staged):
                        return
            if self._cancel.is_set():
                return
        except BaseException as exc:  # raised in the stream thread by commit_ready
            self.error = exc
        finally:
            source.close()
        self._put(None)
