"""One writer per source: a lease object in the lake, renewed by compare-and-swap (decisions §13).

``_leases/<source>.json`` holds the owner (host, pid, what it runs, since when), an *epoch* and the
TTL. It is taken with a create-if-absent write, renewed with a write conditional on the version
the holder last wrote (S3: If-Match on its ETag), and released by writing it back marked free.
Each conditional write answers with the version it made (S3: PutObject returns the ETag), so a
renewal is one request and the holder never reads its own lease back.
A contender takes a held lease over only after it saw the same version unchanged for the TTL on
its *own* monotonic clock (no clock is compared across machines), or at once when the holder is
a process of this host that no longer exists. Every take raises the epoch.

The lease keeps a second writer from starting work (and from deleting the live writer's staged
files); the commit log's create-if-absent records remain the fence for data. A writer that took
a lease over from an expired holder first appends a *fence* commit with its epoch, so the old
holder, if it is only paused, can no longer commit (its next sequence number is taken) and stops
when it re-reads the log (`LeaseLostError`); only then are the old holder's staged files deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from connectors.lake.storage import Storage

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 30.0


class LeaseHeldError(Exception):
    """Another live process holds the source's lease."""


class LeaseLostError(Exception):
    """This process's lease was taken over: it must stop writing at once."""


@dataclass(frozen=True, slots=True)
class Holder:
    """What a lease object says about its holder."""

    owner: str
    host: str
    pid: int
    started: str  # the process's start time on its host (guards against pid reuse)
    what: str
    since: str
    epoch: int
    ttl: float
    free: bool

    @classmethod
    def parse(cls, data: bytes) -> Holder:
        raw = json.loads(data)
        return cls(
            owner=raw["owner"], host=raw["host"], pid=int(raw["pid"]), started=raw.get("started", ""),
            what=raw.get("what", ""), since=raw["since"], epoch=int(raw["epoch"]), ttl=float(raw["ttl"]),
            free=bool(raw.get("free", False)),
        )  # fmt: skip

    def describe(self) -> str:
        return f"{self.what or 'a writer'} on {self.host} (pid {self.pid}) since {self.since}, lease epoch {self.epoch}"


def _process_started(pid: int) -> str:
    """The start time of process `pid` on this host (clock ticks since boot), '' if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _gone(holder: Holder) -> bool:
    """Whether the holder is a process of this host that has ended (its lease can be taken now)."""
    if holder.host != socket.gethostname():
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    started = _process_started(holder.pid)
    return bool(started and holder.started and started != holder.started)


class Lease:
    """The lease of one source, for one process. `acquire`, then keep it (`start_renewing` or
    `ensure` before each commit); `release` when done."""

    def __init__(
        self,
        storage: Storage,
        source: str,
        *,
        what: str,
        ttl: float = DEFAULT_TTL_SECONDS,
        path: str | None = None,
    ) -> None:
        """`path`: the lease object (default ``_leases/<source>.json``, the source's writer lease;
        a DynamoDB shard's lease is another object, `connectors.dynamodb.shard_leases`)."""
        if ttl <= 0:
            raise ValueError(f"lease ttl must be positive, not {ttl}")
        self.storage = storage
        self.source = source
        self.what = what
        self.ttl = ttl
        self.path = path or f"_leases/{source}.json"
        self.owner = uuid.uuid4().hex
        self.epoch = 0
        self.took_over = False  # taken from a holder that did not release it
        self._version: str | None = None
        self._renewed = 0.0
        self._since = ""
        self._lost: str | None = None
        self._seen: tuple[str, float] | None = None  # a holder's version, and when it was first seen
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._version is not None and self._lost is None

    def _body(self, epoch: int, *, free: bool = False) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": _process_started(os.getpid()),
                "what": self.what,
                "since": self._since,
                "epoch": epoch,
                "ttl": self.ttl,
                "free": free,
                # Every write differs, so a contender sees every renewal as a new version.
                "renewed_at": dt.datetime.now(dt.UTC).isoformat(),
                "write": uuid.uuid4().hex,
            }  # fmt: skip
        ).encode()

    # -- taking ----------------------------------------------------------------------------------
    def try_acquire(self) -> Holder | None:
        """Take the lease if it is free, released, expired or its holder is gone; else return the
        holder. Call again to keep watching: expiry is judged on this process's monotonic clock,
        from the first call that saw the holder's current version."""
        with self._lock:
            if self.held:
                return None
            self._since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            current = self.storage.read_versioned(self.path)
            if current is None:
                created = self.storage.put_if_absent(self.path, self._body(1))
                if created is not None:
                    self._took(1, created, took_over=False)
                    return None
                current = self.storage.read_versioned(self.path)
                if current is None:  # released and deleted between the two reads: try again later
                    return None
            data, version = current
            holder = Holder.parse(data)
            expired = self._watch(version, holder.ttl)
            if not (holder.free or expired or _gone(holder)):
                return holder
            epoch = holder.epoch + 1
            taken = self.storage.put_if_match(self.path, self._body(epoch), version)
            if taken is None:
                return holder  # another contender took it first
            self._took(epoch, taken, took_over=not holder.free)
            if not holder.free:
                log.warning(
                    "%s: lease taken over from %s (%s)",
                    self.source, holder.describe(), "its process is gone" if not expired else "it expired",
                )  # fmt: skip
            return None

    def _watch(self, version: str, ttl: float) -> bool:
        """Whether `version` has been seen unchanged for `ttl` seconds (this process's clock)."""
        now = time.monotonic()
        if self._seen is None or self._seen[0] != version:
            self._seen = (version, now)
            return False
        return now - self._seen[1] >= ttl

    def _took(self, epoch: int, version: str, *, took_over: bool) -> None:
        self._version = version
        self.epoch = epoch
        self.took_over = took_over
        self._renewed = time.monotonic()
        self._lost = None
        self._seen = None
        log.info("%s: lease taken (epoch %d) by %s", self.source, epoch, self.what)

    def acquire(self, wait: float = 0.0, poll: float = 1.0, stop: threading.Event | None = None) -> None:
        """Take the lease, waiting up to `wait` seconds for the holder to release it or expire;
        `LeaseHeldError` naming the holder otherwise (or when `stop` is set meanwhile)."""
        deadline = time.monotonic() + wait
        announced = False
        while True:
            holder = self.try_acquire()
            if holder is None and self.held:
                return
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                described = holder.describe() if holder else "another writer"
                raise LeaseHeldError(
                    f"source {self.source!r} is being written by {described}; "
                    "stop it first, or let it finish (a stream serves `lakehouse backfill` itself)"
                )
            if holder is not None and not announced:
                log.info("%s: standing by: the lease is held by %s", self.source, holder.describe())
                announced = True
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))

    # -- keeping ---------------------------------------------------------------------------------
    def renew(self) -> None:
        """Write the lease again, conditional on the version this process wrote last."""
        with self._lock:
            self._check()
            assert self._version is not None
            # The write succeeds only over the version this process wrote last, so the lease
            # is still ours: a contender's takeover would have changed that version.
            version = self.storage.put_if_match(self.path, self._body(self.epoch), self._version)
            if version is None:
                self._lost = "it was taken over"
                self._check()
            self._version = version
            self._renewed = time.monotonic()

    def ensure(self) -> None:
        """Before a commit: `LeaseLostError` if the lease is lost; renew it if a third of its TTL
        has passed since the last renewal (so a process that was paused finds out here)."""
        self._check()
        if time.monotonic() - self._renewed >= self.ttl / 3:
            self.renew()

    def _check(self) -> None:
        if self._version is None:
            raise LeaseLostError(f"source {self.source!r}: this process does not hold the lease")
        if self._lost is not None:
            raise LeaseLostError(
                f"source {self.source!r}: the lease of this {self.what} (epoch {self.epoch}) was lost "
                f"({self._lost}); it stops without committing"
            )

    def start_renewing(self) -> None:
        """Renew every third of the TTL in a thread, so long work between commits keeps the lease."""
        if self._thread is not None:
            return

        def run() -> None:
            while not self._stop.wait(self.ttl / 3):
                try:
                    self.renew()
                except LeaseLostError:
                    log.error("%s: lease lost; this %s stops", self.source, self.what)
                    return
                except Exception as e:  # a storage hiccup: the next round tries again
                    log.warning("%s: lease renewal failed, retrying: %s", self.source, e)

        self._thread = threading.Thread(target=run, name=f"lease-{self.source}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Mark the lease free (if this process still holds it), so the next writer takes it at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            if self._version is not None and self._lost is None:
                with contextlib.suppress(Exception):
                    self.storage.put_if_match(self.path, self._body(self.epoch, free=True), self._version)
            self._version = None


def read_holder(storage: Storage, source: str) -> Holder | None:
    """Who holds `source`'s lease now (None: nobody ever took it)."""
    current = storage.read_versioned(f"_leases/{source}.json")
    return Holder.parse(current[0]) if current is not None else None
