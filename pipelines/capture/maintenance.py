"""Maintenance of a streamed source's current state, apart from its capture (decisions §16).

Capture (decode, commit the change log, acknowledge the source) must never wait for a merge: a
merge or compaction of a large table takes seconds to minutes, and meanwhile the binlog lags, the
PostgreSQL slot retains WAL and DynamoDB moves toward its 24 h trim. So a stream hands each
commit to a `Maintainer`, which merges the current-state tables in its own thread every few
seconds and deletes orphaned files once a minute. The two coordinate only through the commit log:
the maintainer merges up to the newest commit it was shown, and a merge reads nothing capture
writes after that. Merges are idempotent and compare-and-swap on the Iceberg table, so a merge
that fails (or a process killed mid-merge) is simply redone from the table's last merged commit.

The maintainer holds no lock capture needs. Its heavy work is Parquet reading and writing, and
Arrow kernels, which release the GIL, so a thread is enough to keep capture's gaps flat
(`bench/bench_capture_gap.py`).
"""

from __future__ import annotations

import logging
import threading
import time

from connectors.lake.commits import CommitRecord
from connectors.lake.current import CurrentState, MergeConflictError, MergeResult

log = logging.getLogger(__name__)

MAINTAIN_EVERY_SECONDS = 60.0  # how often orphaned files whose grace has passed are deleted
RETRY_AFTER_FAILURE_SECONDS = 30.0  # a failed merge or orphan pass is tried again after this


class Maintainer:
    """Merges one source's current state and deletes its orphans in a thread of its own.

    `notify` (called by capture after each commit) only records the newest commit and never
    blocks on a merge. `stop` ends the thread after the merge under way, if any; the caller then
    merges the last commits itself (`CurrentState.merge`), so a stopped stream leaves the current
    state at its last commit as before.
    """

    def __init__(
        self,
        current: CurrentState,
        *,
        merge_every_seconds: float,
        maintain_every_seconds: float = MAINTAIN_EVERY_SECONDS,
    ) -> None:
        self.current = current
        self.merge_every_seconds = merge_every_seconds
        self.maintain_every_seconds = maintain_every_seconds
        self.merged: list[MergeResult] = []
        self._latest: CommitRecord | None = None
        self._merged_seq = 0
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"maintain-{current.source}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self, record: CommitRecord) -> None:
        """The change log's newest commit (capture's side: returns at once)."""
        with self._wake:
            if self._latest is None or record.seq > self._latest.seq:
                self._latest = record

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the merge under way; returns when the thread has ended (or `timeout`)."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        next_merge = time.monotonic() + self.merge_every_seconds
        next_maintenance = time.monotonic() + self.maintain_every_seconds
        while True:
            with self._wake:
                if self._stopping:
                    return
                self._wake.wait(max(0.0, min(next_merge, next_maintenance) - time.monotonic()))
                if self._stopping:
                    return
                latest = self._latest
            now = time.monotonic()
            if now >= next_merge:
                next_merge = now + (self._merge(latest) or self.merge_every_seconds)
            if now >= next_maintenance:
                next_maintenance = now + (self._delete_orphans() or self.maintain_every_seconds)

    def _merge(self, latest: CommitRecord | None) -> float | None:
        """Merge up to `latest`; returns a delay when the next attempt must wait longer."""
        if latest is None or latest.seq <= self._merged_seq:
            return None
        try:
            self.merged.extend(self.current.merge(latest))
        except MergeConflictError as e:  # another merger (a Dagster run, `lakehouse merge`) went first
            log.info("%s: %s; merging again next time", self.current.source, e)
            return None
        except Exception:  # capture goes on; the current state lags until a merge succeeds
            log.exception(
                "%s: merge up to commit %d failed; capture goes on, retrying in %.0f s",
                self.current.source, latest.seq, RETRY_AFTER_FAILURE_SECONDS,
            )  # fmt: skip
            return RETRY_AFTER_FAILURE_SECONDS
        self._merged_seq = latest.seq
        return None

    def _delete_orphans(self) -> float | None:
        try:
            self.current.delete_orphans()  # files of expired snapshots, once their grace has passed
        except Exception:
            log.exception("%s: deleting orphaned files failed; retrying later", self.current.source)
            return RETRY_AFTER_FAILURE_SECONDS
        return None
