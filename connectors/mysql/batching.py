"""Transactions of decoded rows -> Batches cut at transaction boundaries.

Consecutive transactions are grouped into one complete batch until `batch_max_rows` rows or
`batch_max_seconds` have passed. A transaction bigger than `chunk_rows` is handed out early as
incomplete batches (the sink stages them and commits with the next complete batch), so memory
stays bounded however large a transaction is.

Rows decoded by the fast decoder arrive as raw row images and are converted to Arrow here, once
per run of one table layout per batch (or per chunk), not once per ~50-row event: Arrow's cost
per conversion call dominates at that size. Raw images take several times the memory of Arrow
columns, so held images are converted early once they pass `_CONVERT_VALUES` values.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import pyarrow as pa

from connectors.events import Batch, QuarantinedRow, TableChanges, TableId, TableSchema
from connectors.mysql.columns import ConvertedRows, RowsOrigin, spans_changes_table
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.offset import BinlogPosition, Gtid
from connectors.mysql.rows import BinlogTable, RowImages, convert_run

# Raw row images (a Python object per value, ~40-60 bytes each) held before they are converted
# to Arrow: about 50 MB, and runs long enough that Arrow's per-call cost no longer matters.
_CONVERT_VALUES = 250_000


class HeldChanges:
    """Change rows held for a transaction or a batch, in stream order.

    Rows converted by the library path arrive as `ConvertedRows`; rows from the fast decoder as
    `RowImages`, converted by `convert` in runs: consecutive events (per schema) of one table
    layout are one conversion. Converted rows end up as Arrow tables per schema version (in
    first-appearance order, so v1 comes before v2) and quarantined rows in stream order.
    """

    def __init__(self) -> None:
        self.tables: dict[TableSchema, list[pa.Table]] = {}
        self.quarantined: list[QuarantinedRow] = []
        self.rows = 0
        self._raw: list[_HeldRows] = []
        self._raw_values = 0

    def __bool__(self) -> bool:
        return bool(self.tables or self.quarantined or self._raw)

    def add(self, table: BinlogTable, decoded: RowImages | ConvertedRows, origin: RowsOrigin) -> None:
        """Hold one rows event's rows (converting what is held if raw images take too much room)."""
        if not decoded.num_rows and not (isinstance(decoded, ConvertedRows) and decoded.rejected):
            return
        self._raw.append(_HeldRows(table, decoded, origin))
        self.rows += decoded.num_rows
        if isinstance(decoded, RowImages):
            self._raw_values += decoded.num_rows * len(table.definition.types)
            if self._raw_values >= _CONVERT_VALUES:
                self.convert()

    def take_from(self, other: HeldChanges) -> None:
        """Move everything `other` holds after what this holds (`other` is left empty)."""
        if other.tables or other.quarantined:
            self.convert()  # what is held here comes first
            for schema, tables in other.tables.items():
                self.tables.setdefault(schema, []).extend(tables)
            self.quarantined.extend(other.quarantined)
        self._raw.extend(other._raw)
        self._raw_values += other._raw_values
        self.rows += other.rows
        other.clear()
        if self._raw_values >= _CONVERT_VALUES:
            self.convert()

    def clear(self) -> None:
        """Forget everything held."""
        self.tables, self.quarantined, self._raw = {}, [], []
        self.rows = self._raw_values = 0

    def convert(self) -> None:
        """Convert every held row image to Arrow: one conversion per run of one table layout."""
        raw = self._raw
        if not raw:
            return
        runs: dict[TableSchema, list[list[int]]] = {}  # per schema, runs of indexes into `raw`
        for i, held in enumerate(raw):
            schema_runs = runs.setdefault(held.table.definition.schema, [])
            if schema_runs and isinstance(held.rows, RowImages):
                last = raw[schema_runs[-1][-1]]
                if last.table is held.table and isinstance(last.rows, RowImages):
                    schema_runs[-1].append(i)
                    continue
            schema_runs.append([i])
        quarantined: list[tuple[int, int, QuarantinedRow]] = []
        for schema, schema_runs in runs.items():
            for run in schema_runs:
                for indexes, converted in _convert_run(raw, run):
                    origin = raw[indexes[0]].origin
                    definition = raw[indexes[0]].table.definition
                    if converted.num_rows:
                        spans = (
                            [(converted.num_rows, origin)]
                            if len(indexes) == 1
                            else [(raw[k].rows.num_rows, raw[k].origin) for k in indexes]
                        )
                        table = spans_changes_table(definition, converted, spans)
                        self.tables.setdefault(schema, []).append(table)
                    for r in converted.rejected:
                        row = QuarantinedRow(
                            definition.table, origin.position, origin.commit_ts, r.reason, r.payload
                        )
                        quarantined.append((indexes[0], r.index, row))
        quarantined.sort(key=lambda q: q[:2])  # stream order across tables, as they were read
        self.quarantined.extend(q for _, _, q in quarantined)
        self._raw, self._raw_values = [], 0


def _convert_run(raw: list[_HeldRows], run: list[int]) -> list[tuple[list[int], ConvertedRows]]:
    """The converted rows of one run of held events, as (indexes of the events, rows) parts."""
    first = raw[run[0]]
    if isinstance(first.rows, ConvertedRows):
        return [(run, first.rows)]  # runs of library-path rows are single events
    pieces = [p for k in run if isinstance(p := raw[k].rows, RowImages)]
    assert len(pieces) == len(run)  # HeldChanges.convert puts library-path rows in runs of their own
    parts = convert_run(first.table, pieces)
    result = [(run[start:end], converted) for start, end, converted in parts]
    # Rejected rows (library-path fall-backs) are reported per event, whose origin they take.
    assert all(len(indexes) == 1 for indexes, c in result if c.rejected)
    return result


@dataclass(slots=True)
class _HeldRows:
    """One rows event's rows, not converted yet, with the transaction they belong to."""

    table: BinlogTable
    rows: RowImages | ConvertedRows
    origin: RowsOrigin


@dataclass(eq=False)
class Transaction:
    """One binlog event group (GTID ... XID/COMMIT) being read.

    `position` is the GTID position after this transaction: what the lake stores with it.
    `events_seen`/`events_handed_out` count captured rows events so that, when a dropped
    connection makes the server send the transaction again from its GTID event, the events
    already handed out in incomplete batches are skipped instead of duplicated.
    """

    gtid: Gtid
    position: BinlogPosition
    commit_ts: dt.datetime
    standalone: bool = False  # DDL: the group is the one statement, with no XID/COMMIT
    skip: bool = False  # already contained in the position: read past it
    events_seen: int = 0
    events_handed_out: int = 0
    events_to_skip: int = 0
    truncated: set[TableId] = field(default_factory=set)  # captured tables a TRUNCATE emptied
    held: HeldChanges = field(default_factory=HeldChanges)
    origin: RowsOrigin = field(init=False)

    def __post_init__(self) -> None:
        self.origin = RowsOrigin(self.commit_ts, self.position.serialize(), self.txid)

    @property
    def txid(self) -> str:
        return str(self.gtid)

    @property
    def rows(self) -> int:
        """Rows held (not handed out yet)."""
        return self.held.rows

    def restart(self) -> None:
        """The server is sending this transaction again (reconnect): forget what was not handed out."""
        self.events_to_skip = self.events_handed_out
        self.events_seen = 0
        self.held.clear()

    def take_event(self) -> bool:
        """Count one captured rows event; False if it was already handed out before a reconnect."""
        self.events_seen += 1
        return self.events_seen > self.events_to_skip

    def add(self, table: BinlogTable, decoded: RowImages | ConvertedRows) -> None:
        """Keep decoded rows (converted or not) until the transaction is handed out."""
        self.held.add(table, decoded, self.origin)


class BatchAssembler:
    """Collects transactions into commit units and cuts them into Batches."""

    def __init__(self, config: MySQLSourceConfig, start: BinlogPosition) -> None:
        self._config = config
        self.unit_start = start  # end of the last complete batch
        self.position = start  # after the last transaction read completely
        self._held = HeldChanges()
        self._opened_at: float | None = None
        self._last_commit_ts: dt.datetime | None = None

    @property
    def pending(self) -> bool:
        """Whether a complete batch would carry anything (rows, or just a newer position)."""
        return self.position != self.unit_start or bool(self._held)

    def spill_due(self, trx: Transaction, more_rows: int) -> bool:
        """Whether adding `more_rows` to the open transaction would hold more than `chunk_rows`."""
        held = self._held.rows + trx.rows
        return held > 0 and held + more_rows > self._config.chunk_rows

    def spill(self, trx: Transaction, events: int) -> Batch:
        """Hand out everything held, including the open transaction so far, as an incomplete batch.

        `events` is how many of the transaction's captured rows events that covers.
        """
        self._held.take_from(trx.held)
        trx.events_handed_out = events
        return self._take(complete=False)

    def commit(self, trx: Transaction) -> None:
        """The transaction ended: hold its rows and advance the position past it."""
        self._held.take_from(trx.held)
        self.position = trx.position
        self._last_commit_ts = trx.commit_ts
        if self._opened_at is None:
            self._opened_at = time.monotonic()

    def due(self) -> bool:
        """Whether the held transactions should be committed now (size or age)."""
        if not self.pending:
            return False
        if self._held.rows >= self._config.batch_max_rows:
            return True
        return (
            self._opened_at is not None
            and time.monotonic() - self._opened_at >= self._config.batch_max_seconds
        )

    def cut(self, snapshot: frozenset[TableId] = frozenset()) -> Batch:
        """A complete batch of everything held, ending at the current position.

        `snapshot` names tables whose state this commit replaces (emptied by a TRUNCATE)."""
        return self._take(complete=True, snapshot=snapshot)

    def idle(self) -> Batch:
        """A complete batch with nothing in it that does not move the position (a keep-alive)."""
        return Batch(start=self.position, end=self.position, source_lag_seconds=0.0)

    def _take(self, *, complete: bool, snapshot: frozenset[TableId] = frozenset()) -> Batch:
        held = self._held
        held.convert()
        changes = tuple(
            TableChanges(schema, parts[0] if len(parts) == 1 else pa.concat_tables(parts))
            for schema, parts in held.tables.items()
        )
        lag = None
        if complete and self._last_commit_ts is not None:
            lag = max(0.0, (dt.datetime.now(dt.UTC) - self._last_commit_ts).total_seconds())
        batch = Batch(
            start=self.unit_start,
            end=self.position if complete else None,
            changes=changes,
            complete=complete,
            quarantined=tuple(held.quarantined),
            source_lag_seconds=lag,
            snapshot=snapshot,
        )
        held.clear()
        if complete:
            self.unit_start = self.position
            self._opened_at = None
        return batch
