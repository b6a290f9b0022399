"""Leases of a source's shards, for several writers sharing its commit log (decisions §24).

A DynamoDB source read by several `lakehouse stream --shard-worker` processes: each shard has its
own lease object, ``_leases/<source>/shards/<table>/<shard>.json`` (the same compare-and-swap lease
as the source's, `connectors.lake.lease`), so one worker at a time reads it. Each worker keeps a
heartbeat ``_leases/<source>/workers/<worker>.json``; the live workers' count sets the fair share
of each table's readable shards a worker takes, and a worker holding more than its share gives the
extra back between two of its sessions, after committing what it read of them.

A lease keeps a second worker from wasting reads; the commit log's per-shard compare-and-swap
(`connectors.dynamodb.offset.claim_positions`) is what keeps every record exactly once.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Collection, Iterable, Sequence

from connectors.lake.lease import Lease, LeaseLostError
from connectors.lake.storage import Storage

log = logging.getLogger(__name__)

WORKER_WHAT = "lakehouse stream --shard-worker"


class WorkersFencedError(LeaseLostError):
    """The source's lease was taken by a writer that is not a shard worker: every worker stops."""


class ShardLeases:
    """The shard leases one worker holds or watches, and its heartbeat."""

    def __init__(self, storage: Storage, source: str, worker: str, ttl: float) -> None:
        self.storage = storage
        self.source = source
        self.worker = worker
        self.ttl = ttl
        self._leases: dict[tuple[str, str], Lease] = {}
        self._share: dict[str, int] = {}
        self._live: tuple[float, int] | None = None  # (when counted, live workers)

    # -- heartbeat ---------------------------------------------------------------------------------
    def _heartbeat_path(self, worker: str) -> str:
        return f"_leases/{self.source}/workers/{worker}.json"

    def beat(self) -> None:
        """Say this worker is alive (wall clock: used for the fair share only, never for safety)."""
        body = json.dumps({"worker": self.worker, "at": time.time()}).encode()
        self.storage.write_bytes(self._heartbeat_path(self.worker), body)

    def live_workers(self) -> list[str]:
        """Workers whose heartbeat is newer than three lease TTLs (this one included)."""
        live = {self.worker}
        for entry in self.storage.list_files(f"_leases/{self.source}/workers/"):
            try:
                beat = json.loads(self.storage.read_bytes(entry.path))
            except (FileNotFoundError, OSError, ValueError):
                continue
            if time.time() - float(beat.get("at", 0)) < 3 * self.ttl:
                live.add(str(beat.get("worker")))
        return sorted(live)

    def clear_dead_staging(self) -> list[str]:
        """Delete what workers that died mid-batch left staged: ``_staging/<source>/w-<worker>/``
        of every worker whose heartbeat is gone or older than ten lease TTLs. A worker only paused
        that long lost its shard leases, so it cannot commit what it staged. Returns the workers."""
        beats: dict[str, float] = {}
        for entry in self.storage.list_files(f"_leases/{self.source}/workers/"):
            try:
                beat = json.loads(self.storage.read_bytes(entry.path))
                beats[str(beat.get("worker"))] = float(beat.get("at", 0))
            except (FileNotFoundError, OSError, ValueError):
                continue
        root = f"_staging/{self.source}/"
        workers = {e.path[len(root) :].split("/", 1)[0] for e in self.storage.list_files(root)}
        dead = sorted(
            w[2:]
            for w in workers
            if w.startswith("w-")
            and w[2:] != self.worker
            and time.time() - beats.get(w[2:], 0.0) > 10 * self.ttl
        )
        for worker in dead:
            log.info("%s: deleting what dead shard worker %s left staged", self.source, worker)
            self.storage.delete_prefix(f"{root}w-{worker}")
        return dead

    def _live_count(self) -> int:
        """`live_workers()`, counted at most once per heartbeat period (every table's `choose` of
        one discovery shares the count; heartbeats change no faster)."""
        now = time.monotonic()
        if self._live is None or now - self._live[0] >= self.ttl / 3:
            self._live = (now, max(1, len(self.live_workers())))
        return self._live[1]

    def stop_beating(self) -> None:
        self.storage.delete(self._heartbeat_path(self.worker))

    # -- shards ------------------------------------------------------------------------------------
    def _lease(self, table: str, shard: str) -> Lease:
        key = (table, shard)
        lease = self._leases.get(key)
        if lease is None:
            path = f"_leases/{self.source}/shards/{table}/{shard}.json"
            lease = Lease(
                self.storage, f"{self.source}/{table}/{shard}", what=WORKER_WHAT, ttl=self.ttl, path=path
            )
            self._leases[key] = lease
        return lease

    def held(self, table: str | None = None) -> list[tuple[str, str]]:
        return sorted(
            k for k, lease in self._leases.items() if lease.held and (table is None or k[0] == table)
        )

    def choose(self, table: str, readable: Sequence[str]) -> Collection[str]:
        """The readable shards of `table` this worker reads: those it holds, and free or expired
        ones it can take while it holds fewer than its fair share (readable / live workers)."""
        share = math.ceil(len(readable) / self._live_count())
        self._share[table] = share
        mine = {s for s in readable if self._lease(table, s).held}
        for shard in readable:
            if len(mine) >= share:
                break
            if shard in mine:
                continue
            lease = self._lease(table, shard)
            if lease.try_acquire() is None and lease.held:
                lease.start_renewing()
                mine.add(shard)
                log.info("%s: shard %s of %s taken by worker %s", self.source, shard, table, self.worker)
        return mine

    def ensure(self, shards: Iterable[tuple[str, str]]) -> None:
        """Before a commit: `LeaseLostError` if any of these shards' lease was lost."""
        for key in shards:
            self._lease(*key).ensure()

    def rebalance(self, finished: Collection[tuple[str, str]]) -> None:
        """Between sessions (nothing read is uncommitted): give back finished shards, and the
        shards held beyond this worker's fair share, so other workers can take them at once."""
        for key in [k for k in self.held() if k in finished]:
            self._leases.pop(key).release()
        for table, share in self._share.items():
            for key in self.held(table)[share:]:
                log.info(
                    "%s: shard %s of %s given back by worker %s (share %d)",
                    self.source,
                    key[1],
                    table,
                    self.worker,
                    share,
                )
                self._leases.pop(key).release()

    def release_all(self) -> None:
        for lease in self._leases.values():
            if lease.held:
                lease.release()
        self._leases.clear()
