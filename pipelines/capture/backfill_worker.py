"""A backfill staged beside a running stream, so the stream's other tables keep flowing.

The worker re-snapshots the requested tables with a second source instance (the source's `clone()`
when it has one, else one opened from its configuration) and stages the rows
(`LakeWriter.stage_backfill`) while the stream goes on committing every table. Between two of its
commits the stream then commits the staged snapshot (`LakeWriter.commit_backfill`), marked to
replay the tables' changes committed since the worker started: the snapshot was taken at or after
that point, so "snapshot, then those changes again, in order" is the source's state (decisions §5).

A crash or a stop before that commit leaves only staging, which the next start-up deletes; the
request file stays pending, so the next stream serves it again. Nothing is committed twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence

from connectors.events import Batch, TableId
from connectors.lake.lake import Lake
from connectors.lake.writer import LakeWriter, StagedBackfill
from connectors.offsets import Offset
from connectors.source import Source
from pipelines.capture.requests import BackfillRequest
from pipelines.capture.sources import adopt_lake_schemas

log = logging.getLogger(__name__)


class BackfillCancelled(Exception):
    """The stream stopped while the worker was staging; the request stays pending."""


class BackfillWorker:
    """Stages one backfill request in a thread: `done` once it has `staged` rows or an `error`."""

    def __init__(
        self,
        lake: Lake,
        writer: LakeWriter,
        open_twin: Callable[[], Source],
        request: BackfillRequest,
        tables: Sequence[TableId],
        stream_offset: Offset,
        replay_after: int,
    ) -> None:
        self.lake = lake
        self.writer = writer
        self.open_twin = open_twin
        self.request = request
        self.tables = list(tables)
        self.stream_offset = stream_offset
        self.replay_after = replay_after
        self.staged: StagedBackfill | None = None
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"backfill-{request.request_id}", daemon=True)

    def start(self) -> None:
        log.info(
            "%s: backfill of %s requested; staging it beside the stream (from commit %d)",
            self.writer.source, self.request.tables, self.replay_after,
        )  # fmt: skip
        self._thread.start()

    @property
    def done(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def cancel(self, timeout: float = 30.0) -> None:
        """Stop staging (at the next batch) and drop what was staged."""
        self._cancel.set()
        self._thread.join(timeout)
        if self.staged is not None:
            self.writer.discard_backfill(self.staged)
            self.staged = None

    def _run(self) -> None:
        source = self.open_twin()
        batches = None
        try:
            adopt_lake_schemas(self.lake, source)
            batches = source.backfill(self.tables, self.stream_offset)  # type: ignore[attr-defined]
            self.staged = self.writer.stage_backfill(self._until_cancelled(batches), self.replay_after)
        except BaseException as exc:  # reported to the requester by the stream
            self.error = exc
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
            source.close()

    def _until_cancelled(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        for batch in batches:
            if self._cancel.is_set():
                raise BackfillCancelled(f"backfill {self.request.request_id} cancelled: the stream stopped")
            yield batch
