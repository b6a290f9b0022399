"""Backfill requests handed to a running `lakehouse stream`, and the runner's heartbeat.

A source has one writer at a time. When `lakehouse stream` runs, it owns the source's commit log,
so a backfill asked for from elsewhere (`lakehouse backfill`, a Dagster run) is written as a request
file in the lake; the stream picks it up between two commits, re-snapshots the tables and records
the outcome. Files:

    _runners/<source>.json                 {"pid", "host", "heartbeat_at"} while a stream runs
    _requests/<source>/<id>.json           {"tables": [...], "requested_at"}
    _requests/<source>/<id>.done.json      {"ok", "error", "commit", "rows", "finished_at"}
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from connectors.lake.commits import CommitRecord
from connectors.lake.storage import Storage

HEARTBEAT_FRESH_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    request_id: str
    tables: tuple[str, ...]


class RequestTimeoutError(TimeoutError):
    """The running stream did not finish a backfill request in time."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def beat(storage: Storage, source: str) -> None:
    """Record that a stream runner for `source` is alive."""
    payload = {"pid": os.getpid(), "host": socket.gethostname(), "heartbeat_at": _now()}
    storage.write_bytes(f"_runners/{source}.json", json.dumps(payload).encode())


def clear_beat(storage: Storage, source: str) -> None:
    storage.delete(f"_runners/{source}.json")


def runner_alive(storage: Storage, source: str) -> bool:
    """Whether a stream runner for `source` sent a heartbeat recently."""
    try:
        data = json.loads(storage.read_bytes(f"_runners/{source}.json"))
    except (FileNotFoundError, OSError, ValueError):
        return False
    age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(data["heartbeat_at"])
    return age.total_seconds() < HEARTBEAT_FRESH_SECONDS


def new_id() -> str:
    """A request id: sortable by time, unique."""
    return f"{int(time.time() * 1000):015d}-{uuid.uuid4().hex[:8]}"


def submit(storage: Storage, source: str, tables: list[str]) -> str:
    request_id = new_id()
    payload = {"tables": tables, "requested_at": _now()}
    storage.write_bytes(f"_requests/{source}/{request_id}.json", json.dumps(payload).encode())
    return request_id


def pending(storage: Storage, source: str) -> list[BackfillRequest]:
    """Requests without an outcome, oldest first."""
    files = sorted(e.path for e in storage.list_files(f"_requests/{source}/"))
    done = {p.removesuffix(".done.json") for p in files if p.endswith(".done.json")}
    out = []
    for path in files:
        if path.endswith(".done.json") or not path.endswith(".json"):
            continue
        if path.removesuffix(".json") in done:
            continue
        data = json.loads(storage.read_bytes(path))
        out.append(BackfillRequest(path.rsplit("/", 1)[1].removesuffix(".json"), tuple(data["tables"])))
    return out


def finish(
    storage: Storage, source: str, request_id: str, *, error: str | None, commit: int | None, rows: int
) -> None:
    payload = {"ok": error is None, "error": error, "commit": commit, "rows": rows, "finished_at": _now()}
    storage.write_bytes(f"_requests/{source}/{request_id}.done.json", json.dumps(payload).encode())


def wait(
    storage: Storage,
    source: str,
    request_id: str,
    timeout: float = 3600.0,
    progress: Callable[[], None] | None = None,
    progress_every: float = 5.0,
) -> dict[str, object]:
    """Block until the runner has handled the request; returns its outcome. `progress()` is
    called every `progress_every` seconds meanwhile (to show how far the runner is)."""
    deadline = time.monotonic() + timeout
    next_progress = time.monotonic() + progress_every
    path = f"_requests/{source}/{request_id}.done.json"
    while time.monotonic() < deadline:
        if storage.exists(path):
            result: dict[str, object] = json.loads(storage.read_bytes(path))
            return result
        if progress is not None and time.monotonic() >= next_progress:
            next_progress = time.monotonic() + progress_every
            progress()
        time.sleep(0.5)
    raise RequestTimeoutError(
        f"the stream runner of {source!r} did not finish backfill request {request_id} in {timeout:.0f} s"
    )


def continue_or_submit(storage: Storage, source: str, tables: list[str]) -> tuple[BackfillRequest, bool]:
    """A request for the same tables still pending (a run killed or stopped before its outcome was
    recorded) is continued, not begun again; else a new one. True when continued."""
    for request in pending(storage, source):
        if sorted(request.tables) == sorted(tables):
            return request, True
    return BackfillRequest(submit(storage, source, tables), tuple(tables)), False


def progress_lines(latest: CommitRecord | None, request_id: str) -> list[str]:
    """How far a runner is with a backfill request, from the source's last commit record."""
    under_way = [p for p in (latest.snapshots.values() if latest else ()) if p.request == request_id]
    if not under_way:
        return [f"backfill request {request_id}: waiting for the stream runner to begin it"]
    return [
        f"backfill of {p.table.name}: {p.chunks} chunk(s), {p.rows} of about "
        f"{p.estimate if p.estimate is not None else '?'} rows committed"
        for p in under_way
    ]
