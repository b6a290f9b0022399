"""The interface every source connector offers, and the errors it raises."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from connectors.events import Batch, TableId
from connectors.offsets import Offset


class SourceError(Exception):
    """A source failed in a way the user must act on; the message says what to do."""


class PreflightError(SourceError):
    """A server setting or permission that CDC needs is wrong; the message names the fix."""


class PositionLostError(SourceError):
    """The stored position is no longer available on the server (binlog purged, slot dropped)."""


class PositionPurgedError(PositionLostError):
    """The server no longer has changes the lake needs (binlogs purged, WAL removed): resnapshot."""


class PositionAheadError(PositionLostError):
    """The stored position has changes the server never had (restored from a backup, replaced)."""


class SourceUnavailableError(SourceError):
    """The source could not be reached after bounded retries."""


class Source(Protocol):
    """A change-data-capture source.

    `snapshot` and `stream` yield `Batch`es; the pipeline hands each to the lake and, once the lake
    has committed a complete batch, calls `acknowledge` with its end offset. Nothing is acknowledged
    to the server before the lake commit.
    """

    name: str

    def preflight(self) -> None:
        """Check server settings and permissions; raise `PreflightError` naming what to change."""
        ...

    def tables(self) -> Sequence[TableId]:
        """The tables this source captures."""
        ...

    def current_position(self) -> Offset:
        """The server's position now: the high-water mark of a bounded run, and the lag reference."""
        ...

    def snapshot(self, tables: Sequence[TableId] | None = None) -> Iterator[Batch]:
        """A consistent snapshot of `tables` (all by default).

        Yields incomplete batches and finally a complete one whose `end` is the position the
        snapshot is consistent with, whose `snapshot` names the tables and whose `floors` map each
        table to that position. For an initial snapshot `start` is None; for a backfill while
        streaming, `start` and `end` of the final batch are the stream's committed offset (the
        backfill does not move the stream) and only `floors` carry the snapshot position.
        """
        ...

    def stream(
        self,
        since: Offset,
        floors: Mapping[TableId, Offset],
        until: Offset | None = None,
    ) -> Iterator[Batch]:
        """Changes after `since`, skipping a table's changes at or below its floor.

        With `until`, stops once everything up to `until` has been yielded (bounded run);
        otherwise runs until the caller stops iterating. Batches end at transaction boundaries
        (`complete=True`); a transaction larger than the batch size arrives as incomplete batches
        followed by a complete one.
        """
        ...

    def acknowledge(self, offset: Offset) -> None:
        """Tell the server that everything up to `offset` is durably in the lake."""
        ...

    def count_rows(self, table: TableId) -> int:
        """Rows in the table now (for reconciliation checks)."""
        ...

    def close(self) -> None: ...
