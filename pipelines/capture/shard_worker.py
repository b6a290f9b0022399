"""`lakehouse stream --shard-worker`: one of several processes sharing a DynamoDB source's shards.

Each worker leases a fair share of every table's readable shards (`connectors.lake.shard_leases`)
and commits what it reads into the source's one commit log beside the other workers
(`connectors.lake.shared_writer`), exactly once. It works in sessions of `worker_session_seconds`:
a session reads the leased shards from the lake's committed position and commits batch by batch;
between sessions the worker gives back finished shards and any beyond its share, and takes free or
expired ones (a killed worker's shards are taken over once their leases expire, at once on the
same host). A child shard is read once its parent's end is committed, so an item's changes stay in
order across workers.

The workers hold the source's writer lease as a group (`what` = shard worker): a plain `lakehouse
stream` or `sync` stands by or is refused while they run, and one that takes the lease over fences
them: they stop. Workers do no maintenance: merge the current state from Dagster (the
`<source>_tables_changed` sensor) or `lakehouse merge`. Backfills need a plain stream.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping

from connectors.dynamodb.config import DynamoDBSourceConfig
from connectors.dynamodb.offset import ShardsMovedError, StreamPositions, changed_shards, claim_positions
from connectors.dynamodb.source import DynamoDBSource
from connectors.events import Batch, TableId
from connectors.lake.lake import Lake
from connectors.lake.lease import LeaseLostError, read_holder
from connectors.lake.shard_leases import WORKER_WHAT, ShardLeases, WorkersFencedError
from connectors.lake.shared_writer import SharedLogWriter
from connectors.offsets import Offset, parse_offset
from connectors.source import SourceError
from pipelines.capture.health import StreamHealth
from pipelines.capture.runner import SyncReport
from pipelines.capture.sources import adopt_lake_schemas, open_source

log = logging.getLogger(__name__)

STANDBY_POLL_SECONDS = 1.0


def _positions(offset: Offset) -> StreamPositions:
    if not isinstance(offset, StreamPositions):
        raise TypeError(f"shard workers need a DynamoDB position, got {offset!r}")
    return offset


def _moved(batch: Batch) -> list[tuple[str, str]]:
    """The shards a batch read on (the ones whose leases must still be held at its commit)."""
    changed = changed_shards(_positions(batch.start), _positions(batch.end))  # type: ignore[arg-type]
    return [shard for shard, _, now in changed if now is not None]


def run_shard_worker(
    lake: Lake,
    config: DynamoDBSourceConfig,
    *,
    stop: threading.Event,
    worker: str | None = None,
    health: StreamHealth | None = None,
    source: DynamoDBSource | None = None,
) -> SyncReport:
    """Read and commit a share of `config`'s shards until `stop` is set (see the module docs).

    `source`: an opened source whose streams are known (`attach`, as benchmarks on the fake
    service do); default: open `config`'s and run its pre-flight checks."""
    worker = worker or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    name = config.name
    storage = lake.storage
    report = SyncReport(name)
    started = time.monotonic()
    leases = ShardLeases(storage, name, worker, ttl=lake.config.lease_ttl_seconds)
    group = lake.lease(name, WORKER_WHAT)

    def in_group() -> bool:
        """Hold the source's lease for the workers, or see another worker hold it."""
        if group.held:
            return True
        holder = group.try_acquire()
        if holder is None and group.held:
            group.start_renewing()
            return True
        if holder is not None and holder.what == WORKER_WHAT:
            return True
        log.info(
            "%s: shard worker %s standing by: %s", name, worker, holder.describe() if holder else "lease busy"
        )
        return False

    def group_epoch(latest_epoch: int) -> int:
        """The source lease epoch to record; the workers were fenced if another writer holds it."""
        holder = read_holder(storage, name)
        if holder is None or (holder.what != WORKER_WHAT and not holder.free) or latest_epoch > holder.epoch:
            described = holder.describe() if holder is not None else "nobody"
            raise WorkersFencedError(
                f"source {name!r} was taken over by {described}; shard worker {worker} stops"
            )
        return holder.epoch

    writer = SharedLogWriter(
        storage,
        name,
        worker,
        lambda latest, start, end: claim_positions(_positions(latest), _positions(start), _positions(end)),
        epoch=group_epoch,
        before_commit=lambda batch: leases.ensure(_moved(batch)),
    )
    if source is None:
        opened = open_source(config)
        if not isinstance(opened, DynamoDBSource):
            opened.close()
            raise SourceError(f"source {name!r}: shard workers read DynamoDB sources only")
        try:
            opened.preflight()
        except BaseException:
            opened.close()
            raise
        source = opened
    try:
        leases.beat()
        leases.clear_dead_staging()
        adopt_lake_schemas(lake, source)
        while not stop.is_set():
            if not in_group():
                stop.wait(STANDBY_POLL_SECONDS)
                continue
            if health is not None:
                health.holding(None)
            leases.beat()
            state = writer.reload()
            if state.offset is None:
                raise SourceError(
                    f"source {name!r} has no snapshot in the lake yet; take it first with "
                    f"`lakehouse sync --once --source {name}`, then start the shard workers"
                )
            if report.offset_before is None:
                report.offset_before = state.offset.serialize()
            _session(writer, source, state.offset, state.floors, leases, report, stop, config, health)
            committed = _positions(writer.last_committed().offset)  # type: ignore[arg-type]
            finished = {
                (t, s) for t, shards in committed.tables.items() for s, p in shards.items() if p.finished
            }
            leases.rebalance(finished)
    finally:
        if health is not None:
            health.released()
        leases.release_all()
        leases.stop_beating()
        if group.held:
            group.release()
        source.close()
    report.seconds = time.monotonic() - started
    return report


def _session(
    writer: SharedLogWriter,
    source: DynamoDBSource,
    since: Offset,
    floors: Mapping[TableId, Offset],
    leases: ShardLeases,
    report: SyncReport,
    stop: threading.Event,
    config: DynamoDBSourceConfig,
    health: StreamHealth | None,
) -> None:
    """Read the leased shards from the lake's position for one session, committing each batch.

    Within a session the reader follows the lake's newest position (`committed`): shards other
    workers finish or give back become readable, and are taken up from where the lake has them,
    without a new reader (a new reader is a new iterator lineage per shard, which the service
    throttles when several come within a second). The session ends at its deadline, for the
    worker to give back shards beyond its share."""
    deadline = time.monotonic() + config.worker_session_seconds
    next_beat = time.monotonic() + leases.ttl / 3
    log = writer.log

    def committed() -> StreamPositions:
        record = log.latest()
        return _positions(parse_offset(record.end)) if record is not None else StreamPositions.empty()

    batches = source.stream(since, floors, choose=leases.choose, committed=committed)
    try:
        for batch in batches:
            try:
                record = writer.write(batch)
            except ShardsMovedError as e:
                log.warning("%s: %s; reading again from the lake's position", config.name, e)
                return
            except WorkersFencedError:
                raise
            except LeaseLostError as e:  # a shard's lease expired while this worker was slow
                log.warning("%s: %s; reading again from the lake's position", config.name, e)
                return
            if record is not None:
                report.add(record)
            if health is not None:
                health.batch_done(batch)
            if time.monotonic() >= next_beat:
                leases.beat()
                next_beat = time.monotonic() + leases.ttl / 3
            if stop.is_set() or time.monotonic() >= deadline:
                return
    finally:
        batches.close()
