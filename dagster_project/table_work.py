"""What a run of one table partition does: merge one table, or re-snapshot some tables.

Each is a short composition of the calls the CLI makes, so a Dagster run and `lakehouse merge` /
`lakehouse backfill` do the same thing to the lake:

* `merge_one_table`: `CurrentState.merge_table` up to the table's last commit (its `heads` entry
  in the newest commit record), as `CurrentState.merge` does for each table of a source.
* `request_backfill`: the request path of `lakehouse backfill`. A running `lakehouse stream`
  owns the source's commit log, so the request is handed to it as a file in the lake and this
  run waits for the outcome; with no stream running it is served here (`serve_backfill`, under
  the source's lease). A request for the same tables still pending (a run stopped or killed
  before the outcome was recorded) is continued, never begun again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from connectors.lake.current import CurrentState, MergeConflictError, MergeResult
from connectors.lake.lake import Lake
from connectors.source import Source
from pipelines.capture import requests
from pipelines.capture.runner import serve_backfill

# How long a run waits for a stream runner to serve its backfill. A large table's chunked
# backfill can take hours; a run that gives up leaves the request pending, and running the
# partition again waits for the same request.
BACKFILL_WAIT_SECONDS = 12 * 3600.0
# A backfill served in this run has its outcome recorded before `serve_backfill` returns.
OUTCOME_READ_SECONDS = 10.0


@dataclass(frozen=True)
class TableMerge:
    """One table's merge: its last commit in the change log, and what the merge did."""

    lake_table: str
    head: int  # the change log's last commit touching the table (0: none yet)
    result: MergeResult | None  # None: nothing new, or a snapshot under way
    snapshot_under_way: bool


def merge_one_table(current: CurrentState, lake_table: str) -> TableMerge:
    """Merge `lake_table`'s commits up to its last one; the source's other tables are not read.

    A table whose chunked snapshot is under way keeps its current state until the last chunk is
    committed (as in `CurrentState.merge`). If another merger (the stream's maintenance thread,
    a whole-source merge) commits the table first, the merge continues from that commit once.
    """
    latest = current.log.latest()
    head = latest.heads.get(lake_table, 0) if latest is not None else 0
    if latest is None or not head:
        return TableMerge(lake_table, 0, None, snapshot_under_way=False)
    if lake_table in latest.snapshots:
        return TableMerge(lake_table, head, None, snapshot_under_way=True)
    try:
        result = current.merge_table(lake_table, head)
    except MergeConflictError:  # the other merger's commit stands; merge what it left, if anything
        result = current.merge_table(lake_table, head)
    return TableMerge(lake_table, head, result, snapshot_under_way=False)


@dataclass(frozen=True)
class BackfillOutcome:
    """A backfill request served: by whom, and the commit that finished it."""

    request_id: str
    tables: tuple[str, ...]
    served_by: str  # "stream runner" or "this run"
    commit: int | None
    rows: int


class BackfillFailedError(RuntimeError):
    """The stream runner (or this run) recorded an error as the request's outcome."""


def request_backfill(
    lake: Lake,
    source: str,
    tables: Sequence[str],
    open_source: Callable[[], Source],
    log: Callable[[str], None],
) -> BackfillOutcome:
    """Re-snapshot `tables` of `source` through `lakehouse backfill`'s request path."""
    wanted = list(dict.fromkeys(tables))
    request = _request(lake, source, wanted, log)
    if requests.runner_alive(lake.storage, source):
        log(f"a stream runner is active for {source}; backfill request {request.request_id} handed to it")
        served_by = "stream runner"
        outcome = requests.wait(
            lake.storage,
            source,
            request.request_id,
            timeout=BACKFILL_WAIT_SECONDS,
            progress=lambda: _log_progress(lake, source, request.request_id, log),
            progress_every=30.0,
        )
    else:
        served_by = "this run"
        src = open_source()
        try:
            serve_backfill(lake, src, request)
        finally:
            src.close()
        outcome = requests.wait(lake.storage, source, request.request_id, timeout=OUTCOME_READ_SECONDS)
    if not outcome["ok"]:
        raise BackfillFailedError(f"backfill of {wanted} of {source!r} failed: {outcome['error']}")
    commit = outcome.get("commit")
    return BackfillOutcome(
        request.request_id,
        tuple(wanted),
        served_by,
        int(commit) if isinstance(commit, int) else None,
        int(outcome.get("rows") or 0),  # type: ignore[call-overload]
    )


def _request(
    lake: Lake, source: str, wanted: list[str], log: Callable[[str], None]
) -> requests.BackfillRequest:
    """A pending request for the same tables (continued), else a new one."""
    request, continued = requests.continue_or_submit(lake.storage, source, wanted)
    if continued:
        log(f"continuing backfill request {request.request_id} of {', '.join(wanted)}")
    return request


def _log_progress(lake: Lake, source: str, request_id: str, log: Callable[[str], None]) -> None:
    """How far the stream runner is with the request, from the lake's last commit."""
    for line in requests.progress_lines(lake.commit_log(source).latest(), request_id):
        log(line)
