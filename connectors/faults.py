"""Crash points for fault-injection tests: kill this process at a named step of the commit protocol.

Set ``LAKEHOUSE_CRASH_AT=<point>[,<point>...]`` and ``LAKEHOUSE_CRASH_PROBABILITY=<0..1>`` (default 1)
and the process SIGKILLs itself when it reaches one of those points — a real crash, with no
cleanup, exactly what the crash tests need to show that a restart loses and duplicates nothing.
Unset (the normal case), a crash point costs one dictionary lookup.

Points: ``staged`` (batch files written, unit not committed), ``committed`` (commit record created,
files not yet moved), ``published`` (files moved, source not yet acknowledged), ``acknowledged``.
"""

from __future__ import annotations

import os
import random
import signal

CRASH_ENV = "LAKEHOUSE_CRASH_AT"
PROBABILITY_ENV = "LAKEHOUSE_CRASH_PROBABILITY"


def crash_point(name: str) -> None:
    points = os.environ.get(CRASH_ENV)
    if not points or name not in points.split(","):
        return
    if random.random() < float(os.environ.get(PROBABILITY_ENV, "1")):
        os.kill(os.getpid(), signal.SIGKILL)
