"""Shared by tests that run `stream_source` (what `lakehouse stream` runs) in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from connectors.lake.lake import Lake
from pipelines.capture import requests
from pipelines.capture.runner import stream_source
from pipelines.capture.sources import open_source


@dataclass
class RunningStream:
    """A stream running in a thread: `errors` holds what it raised."""

    lake: Lake
    name: str
    errors: list[BaseException] = field(default_factory=list)

    def wait_alive(self, timeout: float = 30.0, nudge: Callable[[], None] | None = None) -> None:
        """Until the runner's heartbeat is in the lake (`nudge` wakes an idle source meanwhile)."""
        deadline = time.monotonic() + timeout
        while not requests.runner_alive(self.lake.storage, self.name):
            assert time.monotonic() < deadline and not self.errors, self.errors
            if nudge is not None:
                nudge()
            time.sleep(0.2)


@contextmanager
def running_stream(
    lake: Lake, config: Any, *, merge_every_seconds: float = 0.5, wake: Callable[[], None] | None = None
) -> Iterator[RunningStream]:
    """Run `stream_source` for `config` until the block ends; then stop it (`wake` pokes an idle
    source so it notices), join it and require that it raised nothing."""
    stop = threading.Event()
    source = open_source(config)
    running = RunningStream(lake, config.name)

    def run() -> None:
        try:
            stream_source(lake, source, stop=stop, merge_every_seconds=merge_every_seconds)
        except BaseException as e:  # surfaced below
            running.errors.append(e)

    streamer = threading.Thread(target=run)
    streamer.start()
    try:
        yield running
    finally:
        stop.set()
        if wake is not None:
            wake()
        streamer.join(timeout=60)
        source.close()
    assert not running.errors, running.errors
