"""What each run used, kept in the lake: one small JSON object per run under ``_usage/<source>/``.

A run (`sync --once`, a Dagster run, a `stream` between two reports) writes its `Usage` for the
source's own tables and commit log, so `lakehouse show` can sum the last days per table without
any process staying up. One PUT per run; nothing in it but service, operation and table names and
counts (never a key, a host or a value).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from connectors.lake.storage import Storage
from connectors.usage import Usage

USAGE_PREFIX = "_usage"


@dataclass(frozen=True)
class RunUsage:
    """One run's usage of one source."""

    source: str
    what: str
    started: dt.datetime
    seconds: float
    usage: Usage
    source_bytes: int = 0


def record_run(storage: Storage, run: RunUsage) -> str:
    """Write one run's usage; returns its path in the lake."""
    day = run.started.astimezone(dt.UTC)
    path = f"{USAGE_PREFIX}/{run.source}/{day:%Y-%m-%d}/{day:%H%M%S}-{uuid.uuid4().hex[:8]}.json"
    keys = sorted(set(run.usage.requests) | set(run.usage.bytes_sent) | set(run.usage.bytes_received))
    body = {
        "source": run.source,
        "what": run.what,
        "started": day.isoformat(),
        "seconds": round(run.seconds, 3),
        "source_bytes": run.source_bytes,
        "counts": [
            [
                *k,
                run.usage.requests.get(k, 0),
                run.usage.bytes_sent.get(k, 0),
                run.usage.bytes_received.get(k, 0),
            ]
            for k in keys
        ],
    }
    storage.write_bytes(path, json.dumps(body, separators=(",", ":")).encode())
    return path


def read_runs(storage: Storage, source: str, since: dt.datetime) -> list[RunUsage]:
    """The runs of `source` that started at or after `since`, oldest first."""
    runs = []
    first_day = f"{USAGE_PREFIX}/{source}/{since.astimezone(dt.UTC):%Y-%m-%d}"
    for entry in storage.list_files(f"{USAGE_PREFIX}/{source}"):
        if entry.path.rsplit("/", 1)[0] < first_day:
            continue
        body = json.loads(storage.read_bytes(entry.path))
        started = dt.datetime.fromisoformat(body["started"])
        if started < since:
            continue
        requests, sent, received = {}, {}, {}
        for service, operation, table, n, out, got in body["counts"]:
            key = (service, operation, table)
            requests[key], sent[key], received[key] = n, out, got
        usage = Usage(
            {k: v for k, v in requests.items() if v},
            {k: v for k, v in sent.items() if v},
            {k: v for k, v in received.items() if v},
        )
        runs.append(
            RunUsage(body["source"], body["what"], started, body["seconds"], usage, body["source_bytes"])
        )
    return sorted(runs, key=lambda r: r.started)


def total(runs: Sequence[RunUsage]) -> Usage:
    """The sum of the runs' usage."""
    out = Usage()
    for run in runs:
        out = out.plus(run.usage)
    return out
