"""Pacing for the workload generators: a steady rate within optional bounds, with progress logs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Pacer:
    """Paces a loop to `rate` operations per second (None: as fast as possible).

    `next(done)` waits for the next operation's turn and says whether there is one: False once
    `operations` are done, `duration` seconds have passed or `stop` is set. Waits are on the stop
    event, so a stop request ends a pause at once.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        duration: float | None = None,
        operations: int | None = None,
        stop: threading.Event | None = None,
        log_every: float = 10.0,
    ) -> None:
        self.rate = rate
        self.operations = operations
        self.stop = stop or threading.Event()
        self.started = time.monotonic()
        self.deadline = None if duration is None else self.started + duration
        self._log_every = log_every
        self._next_log = self.started + log_every

    def next(self, done: int) -> bool:
        while not self.stop.is_set():
            if self.operations is not None and done >= self.operations:
                return False
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                return False
            if self.rate is None:
                return True
            delay = self.started + done / self.rate - now
            if self.deadline is not None:
                delay = min(delay, self.deadline - now)
            if delay <= 0:
                return True
            self.stop.wait(delay)  # not a busy wait; returns early when stop is set
        return False

    def progress(self, what: str, done: int, changed: Callable[[], int], unit: str) -> None:
        """Log `done` operations and the rate every `log_every` seconds."""
        if time.monotonic() < self._next_log:
            return
        self._next_log = time.monotonic() + self._log_every
        elapsed = time.monotonic() - self.started
        log.info(
            "%s: %d operations in %.0fs (%.1f/s), %d %s changed",
            what, done, elapsed, done / elapsed if elapsed else 0.0, changed(), unit,
        )  # fmt: skip

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started
