"""Transactions of decoded rows -> Batches cut at transaction boundaries.

Consecutive transactions are grouped into one complete batch until `batch_max_rows` rows or
`batch_max_seconds` have passed. A transaction bigger than `chunk_rows` is handed out early as
incomplete batches (the sink stages them and commits with the next complete batch), so memory
stays bounded however large a transaction is.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import pyarrow as pa

from connectors.events import Batch, QuarantinedRow, TableChanges, TableSchema
from connectors.mysql.columns import ConvertedRows, changes_table
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.offset import MariaGtid, MariaGtidPosition
from connectors.mysql.schema import TableDefinition


@dataclass(eq=False)
class Transaction:
    """One binlog event group (GTID ... XID/COMMIT) being read.

    `position` is the GTID position after this transaction: what the lake stores with it.
    `events_seen`/`events_handed_out` count captured rows events so that, when a dropped
    connection makes the server send the transaction again from its GTID event, the events
    already handed out in incomplete batches are skipped instead of duplicated.
    """

    gtid: MariaGtid
    position: MariaGtidPosition
    commit_ts: dt.datetime
    standalone: bool = False  # DDL: the group is the one statement, with no XID/COMMIT
    skip: bool = False  # already contained in the position: read past it
    events_seen: int = 0
    events_handed_out: int = 0
    events_to_skip: int = 0
    rows: int = 0
    pieces: list[tuple[TableDefinition, ConvertedRows]] = field(default_factory=list)
    quarantined: list[QuarantinedRow] = field(default_factory=list)

    @property
    def txid(self) -> str:
        return str(self.gtid)

    def restart(self) -> None:
        """The server is sending this transaction again (reconnect): forget what was not handed out."""
        self.events_to_skip = self.events_handed_out
        self.events_seen = 0
        self.rows = 0
        self.pieces.clear()
        self.quarantined.clear()

    def take_event(self) -> bool:
        """Count one captured rows event; False if it was already handed out before a reconnect."""
        self.events_seen += 1
        return self.events_seen > self.events_to_skip

    def add(self, definition: TableDefinition, converted: ConvertedRows) -> None:
        """Keep decoded rows (and quarantine the rejected ones) until the transaction is handed out."""
        table = definition.table
        position = self.position.serialize()
        for r in converted.rejected:
            self.quarantined.append(QuarantinedRow(table, position, self.commit_ts, r.reason, r.payload))
        if converted.num_rows:
            self.pieces.append((definition, converted))
            self.rows += converted.num_rows


class BatchAssembler:
    """Collects transactions into commit units and cuts them into Batches."""

    def __init__(self, config: MySQLSourceConfig, start: MariaGtidPosition) -> None:
        self._config = config
        self.unit_start = start  # end of the last complete batch
        self.position = start  # after the last transaction read completely
        self._tables: list[tuple[TableSchema, pa.Table]] = []
        self._quarantined: list[QuarantinedRow] = []
        self._rows = 0
        self._opened_at: float | None = None
        self._last_commit_ts: dt.datetime | None = None

    @property
    def pending(self) -> bool:
        """Whether a complete batch would carry anything (rows, or just a newer position)."""
        return self.position != self.unit_start or bool(self._tables)

    def spill_due(self, trx: Transaction, more_rows: int) -> bool:
        """Whether adding `more_rows` to the open transaction would hold more than `chunk_rows`."""
        held = self._rows + trx.rows
        return held > 0 and held + more_rows > self._config.chunk_rows

    def spill(self, trx: Transaction, events: int) -> Batch:
        """Hand out everything held, including the open transaction so far, as an incomplete batch.

        `events` is how many of the transaction's captured rows events that covers.
        """
        self._absorb(trx)
        trx.events_handed_out = events
        return self._take(complete=False)

    def commit(self, trx: Transaction) -> None:
        """The transaction ended: hold its rows and advance the position past it."""
        self._absorb(trx)
        self.position = trx.position
        self._last_commit_ts = trx.commit_ts
        if self._opened_at is None:
            self._opened_at = time.monotonic()

    def due(self) -> bool:
        """Whether the held transactions should be committed now (size or age)."""
        if not self.pending:
            return False
        if self._rows >= self._config.batch_max_rows:
            return True
        return (
            self._opened_at is not None
            and time.monotonic() - self._opened_at >= self._config.batch_max_seconds
        )

    def cut(self) -> Batch:
        """A complete batch of everything held, ending at the current position."""
        return self._take(complete=True)

    def idle(self) -> Batch:
        """A complete batch with nothing in it that does not move the position (a keep-alive)."""
        return Batch(start=self.position, end=self.position, source_lag_seconds=0.0)

    def _absorb(self, trx: Transaction) -> None:
        position = trx.position.serialize()
        for definition, converted in trx.pieces:
            data = changes_table(definition, converted, trx.commit_ts, position, trx.txid)
            self._tables.append((definition.schema, data))
        self._quarantined.extend(trx.quarantined)
        self._rows += trx.rows
        trx.pieces.clear()
        trx.quarantined.clear()
        trx.rows = 0

    def _take(self, *, complete: bool) -> Batch:
        grouped: dict[TableSchema, list[pa.Table]] = {}
        for schema, data in self._tables:  # dicts keep first-appearance order: v1 before v2
            grouped.setdefault(schema, []).append(data)
        changes = tuple(
            TableChanges(schema, parts[0] if len(parts) == 1 else pa.concat_tables(parts))
            for schema, parts in grouped.items()
        )
        lag = None
        if complete and self._last_commit_ts is not None:
            lag = max(0.0, (dt.datetime.now(dt.UTC) - self._last_commit_ts).total_seconds())
        batch = Batch(
            start=self.unit_start,
            end=self.position if complete else None,
            changes=changes,
            complete=complete,
            quarantined=tuple(self._quarantined),
            source_lag_seconds=lag,
        )
        self._tables, self._quarantined, self._rows = [], [], 0
        if complete:
            self.unit_start = self.position
            self._opened_at = None
        return batch
