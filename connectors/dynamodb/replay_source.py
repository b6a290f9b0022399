"""`DynamoDBReplaySource`: stream records that Lambda received, replayed from files into the lake.

Teams that already land DynamoDB stream records through a Lambda trigger or Firehose keep them
as files of ``{"Records": [...]}`` events. This source reads those files in lexicographic path
order (`connectors.dynamodb.replay`) and decodes the records with the same decoder as the live
stream, so the lake gets the same change log and current state.

Position: the path of the last file in the lake (``ddb-replay:<path>``), committed with the data
like every offset; a file is always committed whole. The lake starts from an empty snapshot of
the configured tables; everything after comes from the files, so the files must hold the tables'
history from their creation (or from the export the lake was seeded with).
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from connectors.dynamodb.config import DynamoDBReplayConfig
from connectors.dynamodb.decode import decode_records, epoch_seconds
from connectors.dynamodb.layout import KeyAttribute, TableLayout
from connectors.dynamodb.replay import ReplayError, iter_event_files, read_event_file, table_of
from connectors.dynamodb.source import SCHEMA
from connectors.events import Batch, QuarantinedRow, TableChanges, TableId
from connectors.lake.storage import Storage
from connectors.offsets import Offset, register_offset_kind
from connectors.source import PreflightError, SourceError

log = logging.getLogger(__name__)

KIND = "ddb-replay"
RECENT_EVENT_IDS = 200_000


@functools.total_ordering
@dataclass(frozen=True, slots=True)
class ReplayPosition:
    """The last replayed file ("" before the first), ordered like the files."""

    path: str
    kind: str = KIND

    @classmethod
    def parse(cls, text: str) -> ReplayPosition:
        return cls(text)

    def serialize(self) -> str:
        return f"{self.kind}:{self.path}"

    def __str__(self) -> str:
        return self.path or "(no file yet)"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ReplayPosition):
            return NotImplemented
        return self.path < other.path


register_offset_kind(KIND, ReplayPosition.parse)


def _position(offset: Offset) -> ReplayPosition:
    if not isinstance(offset, ReplayPosition):
        raise TypeError(f"a replay source needs a ReplayPosition offset, got {offset!r}")
    return offset


class DynamoDBReplaySource:
    """The `Source` protocol over files of Lambda stream events (see the module docstring)."""

    def __init__(self, config: DynamoDBReplayConfig) -> None:
        self.config = config
        self.name = config.name
        self.storage = Storage(config.location, config.s3)
        self._table_ids = {t: TableId(self.name, SCHEMA, t) for t in config.tables}
        self._layouts: dict[str, TableLayout] = {}
        self._known: dict[str, pa.Schema] = {}
        self.skipped_tables: dict[str, int] = {}
        self.duplicates = 0
        # Lambda retries a failed batch, so archives may hold a batch twice, next to each other:
        # records already seen (by eventID) among the most recent ones are dropped.
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __repr__(self) -> str:
        return f"DynamoDBReplaySource({self.name!r}, {self.config.location!r})"

    # --- Source protocol -----------------------------------------------------------------------
    def preflight(self) -> None:
        try:
            next(iter_event_files(self.storage, ""), None)
        except OSError as exc:
            raise PreflightError(f"source {self.name}: cannot list {self.config.location}: {exc}") from None

    def tables(self) -> Sequence[TableId]:
        return list(self._table_ids.values())

    def adopt_lake_schemas(self, schemas: Mapping[TableId, pa.Schema]) -> None:
        self._known = {t.name: s for t, s in schemas.items() if t.name in self._table_ids}
        self._layouts.clear()

    def current_position(self) -> ReplayPosition:
        """The last file there is now."""
        last = ""
        for path in iter_event_files(self.storage, ""):
            last = path
        return ReplayPosition(last)

    def snapshot(self, tables: Sequence[TableId] | None = None) -> Iterator[Batch]:
        """An empty starting point: every table empty, positioned before the first file."""
        layouts = self._ready()
        empty = tuple(
            TableChanges(layouts[t].schema(), layouts[t].schema().arrow_schema().empty_table())
            for t in self.config.tables
        )
        yield Batch(None, ReplayPosition(""), empty, snapshot=frozenset(c.table for c in empty))

    def stream(
        self, since: Offset, floors: Mapping[TableId, Offset], until: Offset | None = None
    ) -> Iterator[Batch]:
        """Files after `since` (up to `until`), whole files per batch; polls for new files when open-ended."""
        layouts = self._ready()
        start = _position(since)
        stop = _position(until) if until is not None else None
        while True:
            pending: list[tuple[str, list[dict[str, Any]]]] = []
            rows = 0
            for path in iter_event_files(self.storage, ""):
                if path <= start.path or (stop is not None and path > stop.path):
                    continue
                records = self._read(path)
                pending.append((path, records))
                rows += len(records)
                if rows >= self.config.batch_max_rows:
                    break
            if not pending:
                if stop is not None:
                    return
                yield Batch(start, start)  # idle: lets the caller stop between batches
                time.sleep(self.config.poll_seconds)
                continue
            end = ReplayPosition(pending[-1][0])
            yield self._batch(start, end, pending, layouts)
            start = end

    def acknowledge(self, offset: Offset) -> None:
        """Files are not consumed: the lake's commit is the position."""
        _position(offset)

    def count_rows(self, table: TableId) -> int:
        raise SourceError(
            f"source {self.name} replays files: there is no live table to count {table.name} in"
        )

    def close(self) -> None:
        pass

    # --- helpers -------------------------------------------------------------------------------
    def _ready(self) -> dict[str, TableLayout]:
        for table in self.config.tables:
            if table not in self._layouts:
                keys = [KeyAttribute(n, t) for n, t in self.config.key_attributes(table)]  # type: ignore[arg-type]
                self._layouts[table] = TableLayout(self._table_ids[table], keys, self._known.get(table))
        return self._layouts

    def _read(self, path: str) -> list[dict[str, Any]]:
        try:
            return read_event_file(self.storage.read_bytes(path))
        except ReplayError as exc:
            raise SourceError(f"source {self.name}: {path}: {exc}") from None

    def _seen(self, record: Mapping[str, Any]) -> bool:
        event_id = record.get("eventID")
        if not isinstance(event_id, str):
            return False
        if event_id in self._recent:
            return True
        self._recent[event_id] = None
        if len(self._recent) > RECENT_EVENT_IDS:
            self._recent.popitem(last=False)
        return False

    def _batch(
        self,
        start: ReplayPosition,
        end: ReplayPosition,
        files: list[tuple[str, list[dict[str, Any]]]],
        layouts: Mapping[str, TableLayout],
    ) -> Batch:
        by_table: dict[str, list[dict[str, Any]]] = {}
        for path, records in files:
            for record in records:
                try:
                    table = table_of(record)
                except ReplayError as exc:
                    raise SourceError(f"source {self.name}: {path}: {exc}") from None
                if self._seen(record):
                    self.duplicates += 1
                elif table in layouts:
                    by_table.setdefault(table, []).append(record)
                else:
                    self.skipped_tables[table] = self.skipped_tables.get(table, 0) + 1
        changes: list[TableChanges] = []
        quarantined: list[QuarantinedRow] = []
        newest = 0.0
        for table, records in by_table.items():
            decoded = decode_records(layouts[table], records)
            if decoded.changes is not None:
                changes.append(decoded.changes)
                newest = max(
                    newest, epoch_seconds(records[-1]["dynamodb"].get("ApproximateCreationDateTime", 0))
                )
            quarantined.extend(decoded.quarantined)
            for drift in layouts[table].take_drift():
                log.warning("%s: table %s: %s", self.name, table, drift)
        log.info("%s: replayed %d file(s) up to %s", self.name, len(files), end.path)
        lag = max(0.0, dt.datetime.now(dt.UTC).timestamp() - newest) if newest else None
        return Batch(start, end, tuple(changes), quarantined=tuple(quarantined), source_lag_seconds=lag)
