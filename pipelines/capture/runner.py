"""Runs sources into the lake: bounded micro-batch syncs, long-running streams, backfills.

The same functions back the CLI (`lakehouse sync --once`, `lakehouse stream`, `lakehouse backfill`)
and the Dagster assets. Order of a commit: the lake commits the batch together with its end
offset, and only then is the source acknowledged (PostgreSQL flush LSN); so a crash at any point
re-reads at most the uncommitted batch, and the lake's compare-and-swap makes the replay a no-op.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from connectors.events import Batch, TableId
from connectors.faults import crash_point
from connectors.lake.commits import BackfillProgress, CommitConflictError, CommitRecord
from connectors.lake.current import MergeResult
from connectors.lake.lake import Lake
from connectors.lake.lease import Lease, LeaseHeldError
from connectors.lake.usage_log import RunUsage, record_run
from connectors.lake.writer import LakeWriter
from connectors.offsets import Offset
from connectors.source import Source, SourceError
from connectors.usage import METER, Usage
from pipelines.capture import requests
from pipelines.capture.backfill_worker import BackfillWorker
from pipelines.capture.health import StreamHealth
from pipelines.capture.maintenance import Maintainer
from pipelines.capture.snapshot_worker import ChunkWorker, ProgressMeter, chunked, commit_chunks
from pipelines.capture.sources import adopt_lake_schemas, open_source
from pipelines.config import AnySourceConfig, LakehouseConfig

log = logging.getLogger(__name__)

CommitCallback = Callable[[CommitRecord], None]
REQUEST_CHECK_SECONDS = 2.0


@dataclass
class SyncReport:
    """What one run did for one source (shown in the CLI and as Dagster metadata)."""

    source: str
    offset_before: str | None = None
    offset_after: str | None = None
    high_water_mark: str | None = None
    commits: int = 0
    rows: int = 0
    quarantined_rows: int = 0
    snapshot_tables: list[str] = field(default_factory=list)
    rows_by_table: dict[str, int] = field(default_factory=dict)
    lag_seconds: float | None = None
    merged: list[MergeResult] = field(default_factory=list)
    seconds: float = 0.0
    # Chunked snapshots: per table, chunks and rows committed, rows/s, ETA (see ProgressMeter).
    snapshot_progress: ProgressMeter = field(default_factory=ProgressMeter)
    # The seq of the last commit this run made (None: it committed nothing).
    last_seq: int | None = None
    # Requests and bytes of this run on the source's tables and commit log (connectors.usage).
    usage: Usage | None = None

    def add(self, record: CommitRecord) -> None:
        self.commits += 1
        self.last_seq = record.seq
        self.rows += record.rows
        self.quarantined_rows += record.quarantined_rows
        self.offset_after = record.end
        self.lag_seconds = record.source_lag_seconds
        for name, tc in record.tables.items():
            self.rows_by_table[name] = self.rows_by_table.get(name, 0) + tc.rows
            if tc.snapshot:
                self.snapshot_tables.append(name)


def _commit_all(
    writer: LakeWriter,
    source: Source,
    batches: Iterator[Batch],
    report: SyncReport,
    on_commit: CommitCallback | None,
    stop: threading.Event | None = None,
    pause: Callable[[], bool] | None = None,
    between: Callable[[], None] | None = None,
    on_batch: Callable[[Batch], None] | None = None,
) -> None:
    """Write every batch; acknowledge the source after each commit; `on_batch(batch)` after each
    write (a stream's liveness and readiness, `pipelines.capture.health`).

    Between two commit units `between()` runs (it may commit something of its own, such as a
    staged backfill, without interrupting the source's stream). Returns early when `stop` is set
    or `pause()` says so, always between two commit units (a staged, uncommitted unit is simply
    re-read later), and closes the source's iterator.
    """
    try:
        for batch in batches:
            record = writer.write(batch)
            if record is not None:
                assert batch.end is not None
                crash_point("published")
                source.acknowledge(batch.end)  # only after the lake commit: see the module docstring
                crash_point("acknowledged")
                report.add(record)
                if on_commit:
                    on_commit(record)
            if on_batch is not None:
                on_batch(batch)
            if batch.complete and between is not None:
                between()
            if batch.complete and ((stop is not None and stop.is_set()) or (pause is not None and pause())):
                return
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


@contextmanager
def holding_lease(
    lake: Lake, source: str, what: str, *, wait: float = 0.0, stop: threading.Event | None = None
) -> Iterator[Lease]:
    """The source's lease, taken for the block (waiting up to `wait` seconds for it) and renewed
    in a thread meanwhile; `LeaseHeldError` names the holder when it cannot be taken."""
    lease = lake.lease(source, what)
    lease.acquire(wait=wait, stop=stop)
    lease.start_renewing()
    try:
        yield lease
    finally:
        lease.release()


def sync_source(
    lake: Lake,
    source: Source,
    *,
    merge: bool = True,
    on_commit: CommitCallback | None = None,
    what: str = "sync --once",
) -> SyncReport:
    """One bounded run: snapshot if the lake has nothing, else stream up to the position of now.
    Refused (`LeaseHeldError`, naming the holder) while another process writes the source."""
    with holding_lease(lake, source.name, what) as lease:
        before, started = METER.snapshot(), dt.datetime.now(dt.UTC)
        report = _sync_source(lake, lake.writer(source.name, lease), source, merge, on_commit)
        report.usage = METER.snapshot().minus(before).of_source(source.name)
        record_run(lake.storage, RunUsage(source.name, what, started, report.seconds, report.usage))
        return report


def _sync_source(
    lake: Lake, writer: LakeWriter, source: Source, merge: bool, on_commit: CommitCallback | None
) -> SyncReport:
    started = time.monotonic()
    state = writer.last_committed()
    report = SyncReport(source.name, offset_before=state.offset.serialize() if state.offset else None)
    source.preflight()
    adopt_lake_schemas(lake, source)
    if state.offset is None:
        log.info("%s: no committed position in the lake; taking an initial snapshot", source.name)
        _initial_snapshot(writer, source, report, on_commit)
        state = writer.last_committed()
    _finish_chunks(writer, source, report, on_commit)
    assert state.offset is not None
    until = source.current_position()
    report.high_water_mark = until.serialize()
    _commit_all(writer, source, source.stream(state.offset, state.floors, until=until), report, on_commit)
    if report.offset_after is None:
        report.offset_after = state.offset.serialize()
    if merge:
        current = lake.current(source.name)
        report.merged = current.merge()
        current.delete_orphans()
    report.seconds = time.monotonic() - started
    return report


def _initial_snapshot(
    writer: LakeWriter,
    source: Source,
    report: SyncReport,
    on_commit: CommitCallback | None,
    stop: threading.Event | None = None,
    on_batch: Callable[[Batch], None] | None = None,
) -> None:
    """Snapshot a source the lake holds nothing of: in chunks where the source can (only the start
    is committed here; see `_finish_chunks`), else whole."""
    source_chunks = chunked(source)
    if source_chunks is None:
        _commit_all(writer, source, source.snapshot(), report, on_commit, stop, on_batch=on_batch)
        return
    start = source_chunks.begin_snapshot()
    record = writer.begin_snapshot(start)
    crash_point("published")
    source.acknowledge(start.low)
    report.add(record)
    if on_commit:
        on_commit(record)
    log.info(
        "%s: snapshot of %d table(s) begun at %s; the stream may run from there",
        source.name, len(start.tables), start.low.serialize(),
    )  # fmt: skip


def _finish_chunks(
    writer: LakeWriter, source: Source, report: SyncReport, on_commit: CommitCallback | None
) -> None:
    """Read and commit, in line, the chunks of any snapshot under way (resumed after a stop)."""
    source_chunks = chunked(source)
    if source_chunks is None or not writer.snapshots_in_progress():
        return

    def committed(record: CommitRecord) -> None:
        report.add(record)
        if on_commit:
            on_commit(record)

    commit_chunks(writer, source_chunks, report.snapshot_progress, committed)


def _twin_opener(source: Source, config: object) -> Callable[[], Source]:
    """Opens a second instance of `source`, for work beside its stream."""
    clone = getattr(source, "clone", None)
    return clone if clone is not None else (lambda: open_source(config))  # type: ignore[arg-type]


def stream_source(
    lake: Lake,
    source: Source,
    *,
    stop: threading.Event,
    merge_every_seconds: float = 5.0,
    on_commit: CommitCallback | None = None,
) -> SyncReport:
    """Stream until `stop` is set: commit each batch; a maintenance thread merges the current
    state every `merge_every_seconds` (`pipelines.capture.maintenance`), so capture never waits for it.

    The source's lease is taken first: while another process holds it this one stands by, and
    takes over once it is released or expired. If another runner commits first (compare-and-swap
    lost), drop the staged batch, re-read the lake's position and resume from there: nothing is
    written twice. A stream whose lease was taken over stops (`LeaseLostError`).
    """
    with _stream_lease(lake, source.name, stop) as lease:
        if lease is None:  # stopped while standing by
            return SyncReport(source.name)
        return _stream_source(
            lake, lake.writer(source.name, lease), source, stop, merge_every_seconds, on_commit
        )


def stream_configured(
    lake: Lake,
    config: AnySourceConfig,
    *,
    stop: threading.Event,
    merge_every_seconds: float = 5.0,
    health: StreamHealth | None = None,
) -> SyncReport:
    """`lakehouse stream` for one configured source: as `stream_source`, but the source is opened
    only once the lease is held, so a standby holds no database connection or replication slot
    (which would time out or pin WAL while it waits, possibly for days). `health` is told the
    lease and every batch (the probes of `pipelines.capture.health`)."""
    with _stream_lease(lake, config.name, stop, health) as lease:
        if lease is None:
            return SyncReport(config.name)
        source = open_source(config)
        try:
            on_batch = health.batch_done if health is not None else None
            return _stream_source(
                lake, lake.writer(config.name, lease), source, stop, merge_every_seconds, None, on_batch
            )
        finally:
            source.close()


@contextmanager
def _stream_lease(
    lake: Lake, source: str, stop: threading.Event, health: StreamHealth | None = None
) -> Iterator[Lease | None]:
    """The lease of a stream: waited for until `stop` (then None), renewed while the block runs."""
    lease = lake.lease(source, "lakehouse stream")
    try:
        lease.acquire(wait=float("inf"), stop=stop)
    except LeaseHeldError:  # stopped while standing by
        yield None
        return
    lease.start_renewing()
    if health is not None:
        health.holding(lease)
    try:
        yield lease
    finally:
        if health is not None:
            health.released()  # not ready before the lease is free for the next stream
        lease.release()


def _stream_source(
    lake: Lake,
    writer: LakeWriter,
    source: Source,
    stop: threading.Event,
    merge_every_seconds: float,
    on_commit: CommitCallback | None,
    on_batch: Callable[[Batch], None] | None = None,
) -> SyncReport:
    started = time.monotonic()
    report = SyncReport(source.name)
    source.preflight()
    adopt_lake_schemas(lake, source)
    current = lake.current(source.name)
    # Merges and orphan deletion run in their own thread: capture never waits for them.
    maintainer = Maintainer(current, merge_every_seconds=merge_every_seconds)

    def committed(record: CommitRecord) -> None:
        _record_finished_backfills(lake, record)
        if on_commit:
            on_commit(record)
        maintainer.notify(record)

    next_check = 0.0
    waiting = False
    worker: BackfillWorker | None = None
    chunker: ChunkWorker | None = None
    # A source that can be opened again gets its backfills read beside the stream: in chunks, each
    # committed between two stream commits, where the source reads chunks; else staged whole by a
    # worker and committed at once. Any other source is served in line, between two commits.
    config = getattr(source, "config", None)

    def requests_waiting() -> bool:
        """Heartbeat, and whether a backfill must be served in line (the stream pauses for it).
        With a source that can be opened again, a new request is begun beside the stream instead."""
        nonlocal next_check, waiting, worker
        if worker is not None:
            return False
        if not waiting and time.monotonic() >= next_check:
            next_check = time.monotonic() + REQUEST_CHECK_SECONDS
            if writer.lease is not None:
                writer.lease.ensure()  # a stream whose lease was taken over stops, even when idle
            requests.beat(lake.storage, source.name)
            pending = requests.pending(lake.storage, source.name)
            if pending and config is not None:
                if chunked(source) is not None:
                    begin_chunked_backfills(pending)
                else:
                    worker = _start_worker(lake, writer, source, config, pending[0])
                return False
            waiting = bool(pending)
        return waiting

    def begin_chunked_backfills(pending: Sequence[requests.BackfillRequest]) -> None:
        """Record the outcome of requests the lake has finished; begin one new request's backfill
        when no chunk worker is busy (the others wait for the next check)."""
        for request in pending:
            if _begun(lake, writer, request) is not None or chunker is not None:
                continue
            record = _begin_backfill(lake, writer, source, request)
            if record is not None:
                report_and_commit(record)
                start_chunker()

    def between_commits() -> None:
        """Commit a backfill the worker has finished staging, and the snapshot chunks staged so
        far, between two stream commits (the source's stream is not interrupted)."""
        nonlocal worker, chunker
        if worker is not None and worker.done:
            done, worker = worker, None
            _commit_staged_backfill(lake, writer, done, report, committed)
        if chunker is not None:
            try:
                chunker.commit_ready(report_and_commit)
            except BaseException:
                chunker.cancel()
                chunker = None
                raise
            if chunker.finished:
                chunker = None

    def report_and_commit(record: CommitRecord) -> None:
        report.add(record)
        committed(record)

    def start_chunker() -> None:
        """Read the chunks of a snapshot under way beside the stream (a source that can be opened again)."""
        nonlocal chunker
        progress = writer.snapshots_in_progress()
        if chunker is not None or not progress or chunked(source) is None:
            return
        if config is None:  # cannot open a second instance: read the chunks in line
            commit_chunks(writer, chunked(source), report.snapshot_progress, report_and_commit, stop)  # type: ignore[arg-type]
            return
        chunker = ChunkWorker(writer, _twin_opener(source, config), progress, report.snapshot_progress)
        chunker.start()

    maintainer.start()
    try:
        while not stop.is_set():
            between_commits()
            if requests_waiting():
                _serve_backfill_requests(lake, writer, source, report)
                waiting = False
                writer.reload()
                adopt_lake_schemas(lake, source)
            state = writer.last_committed()
            if report.offset_before is None and state.offset is not None:
                report.offset_before = state.offset.serialize()
            try:
                if state.offset is None:
                    _initial_snapshot(writer, source, report, committed, stop, on_batch)
                    continue
                start_chunker()
                batches = source.stream(state.offset, state.floors)
                _commit_all(
                    writer,
                    source,
                    batches,
                    report,
                    committed,
                    stop,
                    pause=requests_waiting,
                    between=between_commits,
                    on_batch=on_batch,
                )
            except CommitConflictError as e:
                log.warning("%s; re-reading the lake's position and resuming", e)
                if chunker is not None:
                    chunker.cancel()
                    chunker = None
                writer.reload()
                adopt_lake_schemas(lake, source)
    finally:
        if worker is not None:  # not committed: the request stays pending for the next run
            worker.cancel()
        if chunker is not None:  # the lake's progress says where the next run continues
            chunker.cancel()
        requests.clear_beat(lake.storage, source.name)
        maintainer.stop()  # after the merge under way; the last commits are merged below
    report.merged.extend(maintainer.merged)
    report.merged.extend(current.merge())
    report.seconds = time.monotonic() - started
    return report


def _begin_backfill(
    lake: Lake, writer: LakeWriter, source: Source, request: requests.BackfillRequest
) -> CommitRecord | None:
    """Commit the start of `request`'s chunked backfill at the stream's offset (None: refused, or
    no stream position yet); its chunks are then read and committed beside the stream."""
    servable = _servable(lake, writer, source, request)
    if servable is None:
        return None
    tables, offset, _ = servable
    try:
        start = chunked(source).begin_backfill(tables, offset)  # type: ignore[union-attr]
    except Exception as e:  # reported to the requester; the stream goes on
        requests.finish(lake.storage, source.name, request.request_id, error=str(e), commit=None, rows=0)
        log.error("%s: backfill of %s refused: %s", source.name, request.tables, e)
        return None
    record = writer.begin_backfill(start, request.request_id)
    crash_point("published")
    log.info(
        "%s: backfill of %s (request %s) begun as commit %d; its chunks are read beside the stream",
        source.name, ", ".join(request.tables), request.request_id, record.seq,
    )  # fmt: skip
    return record


def _begun(lake: Lake, writer: LakeWriter, request: requests.BackfillRequest) -> BackfillProgress | None:
    """How far the lake is with `request` (None: not begun). A request it has finished has its
    outcome recorded here too (a runner stopped between its last commit and recording it)."""
    latest = writer.last_committed().record
    done = latest.backfills.get(request.request_id) if latest is not None else None
    if done is not None and done.finished is not None:
        _finished(lake, writer.source, request.request_id, done.finished, done.rows)
    return done


def _record_finished_backfills(lake: Lake, record: CommitRecord) -> None:
    """Record the outcome of the backfill requests `record` finished."""
    for request_id, done in record.backfills.items():
        if done.finished == record.seq:
            _finished(lake, record.source, request_id, record.seq, done.rows)


def _finished(lake: Lake, source: str, request_id: str, commit: int, rows: int) -> None:
    """The one place a successful backfill's outcome is recorded for its requester."""
    requests.finish(lake.storage, source, request_id, error=None, commit=commit, rows=rows)
    log.info("%s: backfill request %s finished with commit %d (%d rows)", source, request_id, commit, rows)


def _start_worker(
    lake: Lake, writer: LakeWriter, source: Source, config: object, request: requests.BackfillRequest
) -> BackfillWorker | None:
    """A worker staging `request` from the stream's last commit (None: the request was refused)."""
    servable = _servable(lake, writer, source, request)
    if servable is None:
        return None
    tables, offset, seq = servable
    worker = BackfillWorker(lake, writer, _twin_opener(source, config), request, tables, offset, seq)
    worker.start()
    return worker


def _servable(
    lake: Lake, writer: LakeWriter, source: Source, request: requests.BackfillRequest
) -> tuple[list[TableId], Offset, int] | None:
    """The tables of a request a stream can serve now, and the lake's offset and seq to serve it
    from; None if the request was refused, or if there is no stream position yet (it is served
    once the initial snapshot is committed)."""
    known = {t.name: t for t in source.tables()}
    if _refused(lake, source.name, request, known):
        return None
    state = writer.last_committed()
    if state.offset is None:
        return None
    return [known[t] for t in request.tables], state.offset, state.seq


def _refused(
    lake: Lake, source: str, request: requests.BackfillRequest, known: Mapping[str, TableId]
) -> bool:
    """Finish `request` with an error if it names tables the source does not capture."""
    unknown = [t for t in request.tables if t not in known]
    if unknown:
        error = f"unknown table(s) {unknown}; the source captures {sorted(known)}"
        requests.finish(lake.storage, source, request.request_id, error=error, commit=None, rows=0)
        log.error("%s: backfill request %s refused: %s", source, request.request_id, error)
    return bool(unknown)


def _commit_staged_backfill(
    lake: Lake, writer: LakeWriter, worker: BackfillWorker, report: SyncReport, committed: CommitCallback
) -> None:
    """Commit what the worker staged (between two stream commits), or report why it failed."""
    request = worker.request
    if worker.error is not None or worker.staged is None:
        error = worker.error or RuntimeError("the backfill staged nothing")
        requests.finish(
            lake.storage, writer.source, request.request_id, error=str(error), commit=None, rows=0
        )
        log.error("%s: backfill of %s failed: %s", writer.source, request.tables, error)
        return
    staged = worker.staged
    try:
        record = writer.commit_backfill(staged)
    except CommitConflictError:
        writer.discard_backfill(staged)  # the request stays pending: staged again from the new head
        raise
    crash_point("published")
    report.add(record)
    committed(record)
    _finished(lake, writer.source, request.request_id, record.seq, staged.rows)


def _serve_backfill_requests(lake: Lake, writer: LakeWriter, source: Source, report: SyncReport) -> None:
    """Run the backfills other processes asked this stream runner for, in line."""
    for request in requests.pending(lake.storage, source.name):
        try:
            done = _serve_backfill(lake, writer, source, request)
        except Exception as e:  # recorded for the requester by _serve_backfill; the stream goes on
            log.error("%s: backfill of %s failed: %s", source.name, request.tables, e)
            continue
        report.snapshot_tables.extend(done.snapshot_tables)


def serve_backfill(lake: Lake, source: Source, request: requests.BackfillRequest) -> SyncReport:
    """Serve one backfill request in line (no stream runs meanwhile) and record its outcome.

    A request the lake has begun already (a run killed mid-way) is continued after its last
    committed chunk, never begun again; one it has finished is only recorded. A request that
    fails before it is begun gets the error as its outcome; one that fails later stays pending,
    so serving it again continues it. Refused (`LeaseHeldError`) while another process writes
    the source.
    """
    with holding_lease(lake, source.name, "lakehouse backfill") as lease:
        return _serve_backfill(lake, lake.writer(source.name, lease), source, request)


def _serve_backfill(
    lake: Lake, writer: LakeWriter, source: Source, request: requests.BackfillRequest
) -> SyncReport:
    done = _begun(lake, writer, request)
    if done is not None and done.finished is not None:
        log.info(
            "%s: backfill request %s was finished already (commit %d)",
            source.name, request.request_id, done.finished,
        )  # fmt: skip
        return SyncReport(source.name)
    known = {t.name: t for t in source.tables()}
    if done is None and _refused(lake, source.name, request, known):
        raise SourceError(f"source {source.name!r} does not capture all of {list(request.tables)}")
    try:
        report = _backfill_tables(
            lake, writer, source, [known[t] for t in request.tables], request.request_id
        )
    except Exception as e:
        if _begun(lake, writer, request) is None:
            requests.finish(lake.storage, source.name, request.request_id, error=str(e), commit=None, rows=0)
        raise
    if _begun(lake, writer, request) is None:  # snapshotted whole, in the last commit
        _finished(lake, source.name, request.request_id, writer.last_committed().seq, report.rows)
    return report


def backfill_tables(
    lake: Lake, source: Source, tables: Sequence[TableId], request_id: str | None = None
) -> SyncReport:
    """Re-snapshot some tables in line (no stream runs meanwhile; it resumes from the lake after).

    Where the source reads resumable chunks, the backfill begins with one commit at the lake's
    offset and its chunks are committed one by one, so a killed backfill continues after its last
    committed chunk: running it again (or any later run of the source) finishes it. Otherwise the
    tables are snapshotted whole, in one commit.
    """
    with holding_lease(lake, source.name, "lakehouse backfill") as lease:
        return _backfill_tables(lake, lake.writer(source.name, lease), source, tables, request_id)


def _backfill_tables(
    lake: Lake, writer: LakeWriter, source: Source, tables: Sequence[TableId], request_id: str | None
) -> SyncReport:
    started = time.monotonic()
    state = writer.last_committed()
    if state.offset is None:
        raise RuntimeError(
            f"source {source.name!r} has no committed position yet; run `lakehouse sync --once` first"
        )
    report = SyncReport(source.name, offset_before=state.offset.serialize())
    adopt_lake_schemas(lake, source)
    source_chunks = chunked(source)
    if source_chunks is None:
        _commit_all(writer, source, source.backfill(tables, state.offset), report, None)  # type: ignore[attr-defined]
    else:
        latest = writer.last_committed().record
        begun = request_id is not None and latest is not None and request_id in latest.backfills
        under_way = [t for t in tables if t.lake_name in writer.snapshots_in_progress()]
        if under_way:
            log.info(
                "%s: the snapshot of %s is under way; continuing it",
                source.name, ", ".join(t.name for t in under_way),
            )  # fmt: skip
            _finish_chunks(writer, source, report, None)
        rest = [] if begun else [t for t in tables if t not in under_way]
        if rest:
            request = requests.BackfillRequest(request_id or requests.new_id(), tuple(t.name for t in rest))
            start = source_chunks.begin_backfill(rest, writer.last_committed().offset)  # type: ignore[arg-type]
            report.add(writer.begin_backfill(start, request.request_id))
            crash_point("published")
            _finish_chunks(writer, source, report, None)
    report.merged = lake.current(source.name).merge()
    report.seconds = time.monotonic() - started
    return report


def resnapshot_source(lake: Lake, source: Source) -> SyncReport:
    """Snapshot every table again and restart the stream from the snapshot's position.
    Refused (`LeaseHeldError`) while another process writes the source."""
    with holding_lease(lake, source.name, "lakehouse resnapshot") as lease:
        return _resnapshot_source(lake, lake.writer(source.name, lease), source)


def _resnapshot_source(lake: Lake, writer: LakeWriter, source: Source) -> SyncReport:
    started = time.monotonic()
    state = writer.last_committed()
    report = SyncReport(source.name, offset_before=state.offset.serialize() if state.offset else None)
    source.preflight()
    adopt_lake_schemas(lake, source)
    _initial_snapshot(writer, source, report, None)
    _finish_chunks(writer, source, report, None)
    report.merged = lake.current(source.name).merge()
    report.seconds = time.monotonic() - started
    return report


def sync_all(
    config: LakehouseConfig, names: Sequence[str] | None = None, *, merge: bool = True
) -> list[SyncReport]:
    """`lakehouse sync --once`: a bounded run of every configured source (or the named ones)."""
    lake = Lake(config.lake, config.tenancy)
    reports = []
    for source_config in config.sources:
        if names and source_config.name not in names:
            continue
        source = open_source(source_config)
        try:
            reports.append(sync_source(lake, source, merge=merge))
        finally:
            source.close()
    return reports


def offset_text(offset: Offset | None) -> str:
    return offset.serialize() if offset is not None else "-"
