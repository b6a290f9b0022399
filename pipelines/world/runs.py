"""Run the world's workloads side by side, all or nothing: the SQL databases and the device tables.

Each part runs on its own thread with one shared stop event. When a part fails, the event stops
the others (each checks it between two operations, and pauses wait on it), and the failure is
raised as one ``WorkloadError`` naming the part. A caller that sets the event (on SIGINT or SIGTERM)
ends every part within one operation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pipelines.world.stats import WorkloadStats
from pipelines.world.workload import WorkloadError

__all__ = ["WorkloadPart", "run_parts"]

# How often the waiting thread looks at the parts; also bounds how late a failure is noticed.
_POLL_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class WorkloadPart:
    """One workload to run: ``run(stop)`` runs until its own bound or until ``stop`` is set."""

    name: str
    run: Callable[[threading.Event], WorkloadStats]


def run_parts(parts: list[WorkloadPart], stop: threading.Event) -> Mapping[str, WorkloadStats]:
    """Run ``parts`` concurrently until each ends or ``stop`` is set; return each part's stats.

    If a part raises, ``stop`` is set so the others end after their current operation, and a
    ``WorkloadError`` "<part> workload failed: <error>" (one line) is raised once all have ended.
    """
    results: dict[str, WorkloadStats] = {}
    errors: dict[str, BaseException] = {}

    def body(part: WorkloadPart) -> None:
        try:
            results[part.name] = part.run(stop)
        except BaseException as exc:  # noqa: BLE001 - reported below, after the other parts stop
            errors[part.name] = exc
            stop.set()

    threads = [
        threading.Thread(target=body, args=(p,), name=f"{p.name}-workload", daemon=True) for p in parts
    ]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(_POLL_SECONDS)
    finally:
        stop.set()  # an interrupt of this thread must stop the parts too
        for thread in threads:
            thread.join()
    for part in parts:  # the first part in the caller's order, for a stable message
        if part.name in errors:
            exc = errors[part.name]
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise WorkloadError(f"{part.name} workload failed: {message}") from exc
    return MappingProxyType(dict(results))
