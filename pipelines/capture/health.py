"""Liveness and readiness of `lakehouse stream`, served over HTTP for Kubernetes and ECS probes.

``GET /healthz`` (liveness) answers 200 while every stream's capture loop is alive: standing by for
its source's lease, stopping, or holding the lease and having handed a batch to the lake within
`live_seconds`. A 503 tells the orchestrator to restart the process, which re-reads at most the
uncommitted unit (the commit protocol makes the replay a no-op).

``GET /readyz`` (readiness) answers 200 while every stream holds its source's lease and has
committed or confirmed its position (a complete batch, an idle one included) within
`ready_seconds`, and no stop was asked for. A standby waiting for the lease is live but not ready;
after SIGTERM readiness is false at once, before the lease is released.

Both answer a small JSON body: per source its state, lease epoch and the seconds since its last
batch and confirmation. Nothing from the configuration is in it (no host, user or secret).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from connectors.events import Batch
from connectors.lake.lease import Lease

log = logging.getLogger(__name__)

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
# A stream hands the lake a batch at least every `batch_max_seconds` (1 s by default), idle or not;
# the longest normal gaps are one spill of `chunk_rows` rows of a huge transaction or one snapshot
# page: seconds. Minutes without a batch mean a stuck loop; a restart is cheap (see above).
LIVE_SECONDS = 180.0
# Only the last batch of a transaction confirms a position; the binlog is read into the lake at
# about 170k rows/s (docs/decisions.md §6), so even a million-row transaction takes seconds.
READY_SECONDS = 60.0

Clock = Callable[[], float]


class StreamHealth:
    """What one source's stream reports about itself (thread-safe): the runner calls `holding`,
    `batch_done` and `released`; the health server reads `status`."""

    def __init__(self, source: str, clock: Clock = time.monotonic) -> None:
        self.source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._lease: Lease | None = None
        self._state = "standby"
        self._since = clock()  # when the lease was taken: progress is measured from there
        self._last_batch: float | None = None
        self._last_confirmed: float | None = None
        self._lag: float | None = None

    def holding(self, lease: Lease | None) -> None:
        """The stream took its source's lease and starts capturing (None: a shard worker, which
        holds shard leases instead, `pipelines.capture.shard_worker`)."""
        with self._lock:
            self._lease, self._state, self._since = lease, "capturing", self._clock()
            self._last_batch = self._last_confirmed = None

    def batch_done(self, batch: Batch) -> None:
        """The lake took `batch`: staged it, or (a complete batch) committed or confirmed its end."""
        now = self._clock()
        with self._lock:
            self._last_batch = now
            if batch.complete:
                self._last_confirmed = now
                if batch.source_lag_seconds is not None:
                    self._lag = batch.source_lag_seconds

    def released(self) -> None:
        """The stream stopped capturing; its lease is released next."""
        with self._lock:
            self._state = "stopped"
        log.info("%s: stream stopped; releasing the lease", self.source)

    def status(self, *, live_seconds: float, ready_seconds: float) -> StreamStatus:
        now = self._clock()
        with self._lock:
            progress = self._last_batch if self._last_batch is not None else self._since
            confirmed = None if self._last_confirmed is None else now - self._last_confirmed
            holding = self._state == "capturing" and (self._lease is None or self._lease.held)
            return StreamStatus(
                source=self.source,
                state=self._state if self._state != "capturing" or holding else "lease lost",
                lease_epoch=self._lease.epoch if self._lease is not None else None,
                seconds_since_batch=None if self._last_batch is None else now - self._last_batch,
                seconds_since_confirmed=confirmed,
                source_lag_seconds=self._lag,
                live=self._state != "capturing" or now - progress < live_seconds,
                ready=holding and confirmed is not None and confirmed < ready_seconds,
            )


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """One source's answer to the probes."""

    source: str
    state: str  # standby | capturing | lease lost | stopped
    lease_epoch: int | None
    seconds_since_batch: float | None
    seconds_since_confirmed: float | None
    source_lag_seconds: float | None
    live: bool
    ready: bool


class HealthBoard:
    """The health of every stream of one `lakehouse stream` process. Setting `stop` (SIGTERM)
    makes the process not ready at once; it stays live while it stops."""

    def __init__(
        self,
        stop: threading.Event,
        *,
        live_seconds: float = LIVE_SECONDS,
        ready_seconds: float = READY_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.stop = stop
        self.live_seconds = live_seconds
        self.ready_seconds = ready_seconds
        self._clock = clock
        self._streams: dict[str, StreamHealth] = {}

    def stream(self, source: str) -> StreamHealth:
        """The health of `source`'s stream (registered before the stream starts)."""
        if source not in self._streams:
            self._streams[source] = StreamHealth(source, self._clock)
        return self._streams[source]

    def statuses(self) -> list[StreamStatus]:
        return [
            s.status(live_seconds=self.live_seconds, ready_seconds=self.ready_seconds)
            for s in self._streams.values()
        ]

    def report(self) -> dict[str, Any]:
        """The probes' JSON body: `live`, `ready`, `stopping` and one entry per source."""
        statuses = self.statuses()
        stopping = self.stop.is_set()
        return {
            # Stopping: the orchestrator's grace period bounds it, not the probe.
            "live": stopping or _all(s.live for s in statuses),
            "ready": not stopping and _all(s.ready for s in statuses),
            "stopping": stopping,
            "streams": {
                s.source: {
                    "state": s.state,
                    "lease_epoch": s.lease_epoch,
                    "seconds_since_batch": _round(s.seconds_since_batch),
                    "seconds_since_confirmed": _round(s.seconds_since_confirmed),
                    "source_lag_seconds": _round(s.source_lag_seconds),
                }
                for s in statuses
            },
        }


def _all(flags: Iterable[bool]) -> bool:
    values = list(flags)
    return bool(values) and all(values)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class HealthServer:
    """`/healthz` and `/readyz` for a `HealthBoard`, from a daemon thread (stdlib `http.server`)."""

    def __init__(self, board: HealthBoard, host: str, port: int) -> None:
        self.board = board
        self._server = ThreadingHTTPServer((host, port), _handler(board))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> HealthServer:
        self._thread.start()
        host, port = self.address
        log.info("health: /healthz and /readyz on http://%s:%d", host, port)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(board: HealthBoard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            report = board.report()
            if self.path == LIVENESS_PATH:
                ok = report["live"]
            elif self.path == READINESS_PATH:
                ok = report["ready"]
            else:
                self.send_error(404)
                return
            body = json.dumps(report).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's signature)
            log.debug("health: " + format, *args)  # probes arrive every few seconds: not at INFO

    return Handler
