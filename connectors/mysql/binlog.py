"""Streaming changes from a MariaDB or MySQL 8 / Aurora MySQL 3 binlog in GTID mode (mysql-replication).

The dump starts at a GTID position (MariaDB ``@slave_connect_state``; MySQL ``COM_BINLOG_DUMP_GTID``
with the GTID set the lake holds, i.e. ``auto_position``), so it resumes with no gap and no
duplicate: the MySQL server sends exactly the transactions that are not in the set, whichever
server UUID wrote them (a new writer after a failover only adds a UUID to the set). Rows are buffered per transaction and handed out at its XID (or COMMIT, or after a
standalone DDL). Two mysql-replication workarounds (feasibility-db.md §1): the dump request
length fix (connectors.mysql.patches.dump_request), and `auto_position` is moved forward after
every transaction, because the library's own reconnect otherwise resumes from the *first*
position it was given (upstream issue #367). Decoding fixes are in connectors.mysql.patches.

Besides row, GTID, XID and Query events the reader asks for TABLE_MAP events, whose FULL
metadata is the schema of the rows that follow (schema.py), and, in blocking mode, heartbeats,
which wake an idle stream so a due batch (or a keep-alive) is handed out on time.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    NotImplementedEvent,
    QueryEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    PartialUpdateRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from connectors.db_tls import is_certificate_error, tls_failure
from connectors.events import Batch, TableId
from connectors.mysql import patches
from connectors.mysql.batching import BatchAssembler, Transaction
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.connection import (
    backoff_delays,
    binlog_connect,
    binlog_connection_settings,
    connect,
    endpoint,
    error_code,
    fetch_all,
    is_transient,
)
from connectors.mysql.offset import (
    BinlogPosition,
    Gtid,
    MariaGtid,
    MySQLGtid,
    MySQLGtidSet,
    advance,
    contains,
)
from connectors.mysql.position import check_position_available, position_error_1236
from connectors.mysql.rows import BinlogTable, decode_rows_event
from connectors.mysql.schema import (
    TableDefinition,
    definition_from_table_map,
    no_primary_key,
    read_primary_key,
    read_table_definition,
    table_map_fingerprint,
    table_map_is_complete,
    table_map_key,
)
from connectors.source import SourceError, SourceUnavailableError

logger = logging.getLogger(__name__)

ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236  # "Could not find GTID state requested by slave ..."
FL_STANDALONE = 0x01  # MariaDB GTID event flag: the group is one statement with no COMMIT/XID
_ROWS_EVENTS = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)
_EVENTS = [MariadbGtidEvent, XidEvent, QueryEvent, TableMapEvent, *_ROWS_EVENTS, HeartbeatLogEvent]
# MySQL also sends events the library does not decode; the ones that would carry rows we cannot
# read (below) must stop the stream rather than be skipped, so they are asked for too.
_MYSQL_EVENTS = [*_EVENTS, GtidEvent, PartialUpdateRowsEvent, NotImplementedEvent]
# Binlog event types (MySQL's binlog_event.h) that carry transactions this reader cannot decode.
_UNREADABLE_EVENTS = {
    0x22: "an anonymous GTID (gtid_mode is not ON); set gtid_mode=ON and enforce_gtid_consistency=ON",
    0x28: "a compressed transaction payload; set binlog_transaction_compression=OFF",
    0x2A: "a tagged GTID (MySQL 8.3+ gtid_next='AUTOMATIC:<tag>'), which mysql-replication cannot read; "
    "do not use tagged GTIDs on this server",
}
_DDL = re.compile(r"^\s*(?:/\*.*?\*/\s*)*(ALTER|CREATE|DROP|RENAME|TRUNCATE)\b", re.IGNORECASE | re.DOTALL)
_IDENTIFIER = re.compile(r"`((?:[^`]|``)+)`|([A-Za-z0-9_$]+)")
_NAME = r"(?:`(?:[^`]|``)+`|[A-Za-z0-9_$]+)"
_CREATE_TABLE = re.compile(
    rf"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?({_NAME})(?:\s*\.\s*({_NAME}))?",
    re.IGNORECASE,
)


class CapturedTables:
    """Definitions of the captured tables as the binlog's TABLE_MAP events describe them."""

    def __init__(
        self, config: MySQLSourceConfig, tables: Sequence[TableId], control: pymysql.connections.Connection
    ):
        self._config = config
        self._control = control
        self._by_name = {t.name: t for t in tables}
        # The reader filters on this very list, so a table appended here is read from then on.
        self.names = [t.name for t in tables]
        self._capture_new = not config.tables  # "every table" includes tables created later
        self._by_table_id: dict[int, BinlogTable] = {}
        self._by_fingerprint: dict[tuple[Any, ...], BinlogTable] = {}
        self._fallback: dict[TableId, TableDefinition] = {}
        self._warned: set[TableId] = set()

    def on_table_map(self, event: TableMapEvent) -> None:
        """Remember how the rows events that follow are laid out."""
        table = self._by_name.get(event.table)
        if table is None or event.schema != self._config.database:
            return
        fingerprint = table_map_fingerprint(event)
        binlog_table = self._by_fingerprint.get(fingerprint)
        if binlog_table is None:
            binlog_table = BinlogTable.build(self._definition(event, table), self._config.timezone)
            self._by_fingerprint[fingerprint] = binlog_table
        self._by_table_id[event.table_id] = binlog_table

    def for_rows(self, event: Any) -> BinlogTable | None:
        """The captured table a rows event belongs to (None if not captured)."""
        return self._by_table_id.get(event.table_id)

    def on_statement(self, query: str, default_schema: str) -> list[TableId]:
        """A DDL statement: capture a new table, drop cached definitions of the tables it names.

        Returns the captured tables a TRUNCATE empties (it writes no row events: the stream turns
        it into a commit that replaces those tables' current state with nothing).
        """
        match = _DDL.match(query)
        if not match:
            return []
        if self._capture_new:
            self._capture_created(query, default_schema)
        verb = match.group(1).upper()
        named = {a.replace("``", "`") if a else b for a, b in _IDENTIFIER.findall(query)}
        truncated: list[TableId] = []
        for name, table in self._by_name.items():
            if name not in named:
                continue
            self._fallback.pop(table, None)
            if verb == "TRUNCATE":
                logger.info("%s: TRUNCATE of captured table %s", endpoint(self._config), table)
                truncated.append(table)
            elif verb == "DROP":
                # No row events: the lake keeps the rows until the table is re-snapshotted.
                logger.warning(
                    "%s: %s on captured table %s (%s); the lake still has its rows: run "
                    "`lakehouse resnapshot --source %s` if the data should go too",
                    endpoint(self._config),
                    verb,
                    table,
                    query[:200],
                    self._config.name,
                )
            else:
                logger.info("%s: schema change on %s: %s", endpoint(self._config), table, query[:200])
        return truncated

    def _capture_created(self, query: str, default_schema: str) -> None:
        created = _CREATE_TABLE.match(query)
        if not created:
            return
        first, second = (_unquote(p) if p else None for p in created.groups())
        schema, name = (first, second) if second else (default_schema, first)
        if schema != self._config.database or name is None or name in self._by_name:
            return
        table = TableId(self._config.name, self._config.database, name)
        self._by_name[name] = table
        self.names.append(name)
        logger.info(
            "%s: table %s was created; capturing it from its creation on", endpoint(self._config), table
        )

    def _definition(self, event: TableMapEvent, table: TableId) -> TableDefinition:
        if table_map_is_complete(event):
            key = table_map_key(event) or read_primary_key(self._control, table)
            if not key:
                raise no_primary_key(table)
            return definition_from_table_map(event, table, key)
        # Written while binlog_row_metadata was not FULL: names come from information_schema,
        # which is only right if the table has not changed since (hence the warning).
        if table not in self._warned:
            self._warned.add(table)
            logger.warning(
                "%s: binlog events for %s lack column metadata (binlog_row_metadata was not FULL when they "
                "were written); using the table's current definition from information_schema",
                endpoint(self._config),
                table,
            )
        definition = self._fallback.get(table)
        if definition is None:
            definition = self._fallback[table] = read_table_definition(self._control, table)
        if len(definition.schema.columns) != event.column_count:
            raise SourceError(
                f"{endpoint(self._config)}: binlog events for {table} have {event.column_count} columns without "
                f"names (binlog_row_metadata was not FULL) and the table now has {len(definition.schema.columns)}; "
                f"they cannot be decoded reliably. Set binlog_row_metadata=FULL and run "
                f"`lakehouse resnapshot --source {self._config.name}`"
            )
        return definition


def _first_binlog(control: pymysql.connections.Connection) -> str:
    logs = fetch_all(control, "SHOW BINARY LOGS")
    if not logs:
        raise SourceError("the server has no binary logs; is log_bin ON?")
    return str(logs[0][0])


def _unquote(identifier: str) -> str:
    return identifier[1:-1].replace("``", "`") if identifier.startswith("`") else identifier


def read_stream(
    config: MySQLSourceConfig,
    tables: Sequence[TableId],
    since: BinlogPosition,
    floors: Mapping[TableId, BinlogPosition],
    until: BinlogPosition | None,
) -> Iterator[Batch]:
    """Batches of the captured tables' changes after `since` (see `MySQLSource.stream`)."""
    if until is not None and until <= since:
        return  # nothing to do in a bounded run that is already there
    patches.apply_all()
    control = connect(config)
    try:
        check_position_available(control, config, since)
        yield from _StreamSession(config, tables, since, floors, until, control).batches()
    finally:
        control.close()


class _StreamSession:
    """One call of `read_stream`: a binlog dump (re-opened after transient errors) and its state."""

    def __init__(
        self,
        config: MySQLSourceConfig,
        tables: Sequence[TableId],
        since: BinlogPosition,
        floors: Mapping[TableId, BinlogPosition],
        until: BinlogPosition | None,
        control: pymysql.connections.Connection,
    ) -> None:
        self.config = config
        self.is_mariadb = not isinstance(since, MySQLGtidSet)
        self.control = control
        self.since = since
        self.floors = floors
        self.until = until
        self.captured = CapturedTables(config, tables, control)
        self.assembler = BatchAssembler(config, since)
        self.trx: Transaction | None = None
        self.done = False

    def batches(self) -> Iterator[Batch]:
        delays: Iterator[float] | None = None
        while not self.done:
            reader = self._open_reader()
            try:
                for event in reader:
                    delays = None  # the connection works again: a later failure starts a fresh backoff
                    yield from self._on_event(event, reader)
                    if self.done:
                        return
                break  # a non-blocking dump reached the end of the binlog
            except pymysql.err.MySQLError as exc:
                if error_code(exc) == ER_MASTER_FATAL_ERROR_READING_BINLOG:
                    raise position_error_1236(
                        self.config, self.assembler.position, str(exc.args[1])
                    ) from None
                if is_certificate_error(exc):
                    raise tls_failure(
                        self.config, f"{endpoint(self.config)}: binlog stream", str(exc)
                    ) from None
                if not is_transient(exc):
                    raise SourceError(f"{endpoint(self.config)}: binlog stream failed: {exc}") from exc
                delays = delays or backoff_delays(self.config.retry)
                delay = next(delays, None)
                if delay is None:
                    raise SourceUnavailableError(
                        f"{endpoint(self.config)}: binlog stream lost after {self.config.retry.attempts} attempts: {exc}"
                    ) from exc
                logger.warning(
                    "%s: binlog stream interrupted (%s); reconnecting in %.1f s",
                    endpoint(self.config),
                    exc,
                    delay,
                )
                time.sleep(delay)
            finally:
                reader.close()
        if self.trx is not None and not self.trx.skip:
            logger.warning(
                "%s: the binlog ended inside transaction %s; it is not delivered",
                endpoint(self.config),
                self.trx.gtid,
            )
        if self.assembler.pending:
            yield self.assembler.cut()

    def _open_reader(self) -> BinLogStreamReader:
        blocking = self.until is None
        position = self.assembler.position
        start: dict[str, Any] = {"auto_position": str(position)}
        if isinstance(position, MySQLGtidSet) and position.is_empty:
            # The library reads an empty auto_position as "from the current end of the binlog";
            # an empty set means "everything", i.e. the first binlog still on the server (the
            # availability check made sure nothing was purged).
            start = {"log_file": _first_binlog(self.control), "log_pos": 4}
        return BinLogStreamReader(
            connection_settings=binlog_connection_settings(self.config),
            ctl_connection_settings=binlog_connection_settings(self.config),
            server_id=self.config.replica_server_id,
            is_mariadb=self.is_mariadb,
            # After a reconnect the server resends the open transaction from its GTID event;
            # Transaction.restart() takes care of rows already handed out.
            **start,
            resume_stream=True,
            blocking=blocking,
            only_events=_EVENTS if self.is_mariadb else _MYSQL_EVENTS,
            filter_non_implemented_events=self.is_mariadb,
            only_schemas=[self.config.database],
            only_tables=self.captured.names,
            # Heartbeats wake an idle blocking stream so a due batch is handed out on time.
            slave_heartbeat=self.config.batch_max_seconds if blocking else None,
            enable_logging=False,
            pymysql_wrapper=functools.partial(
                binlog_connect, meter_source=self.config.name, config=self.config
            ),
        )

    def _on_event(self, event: Any, reader: BinLogStreamReader) -> Iterator[Batch]:
        trx = self.trx
        if isinstance(event, PartialUpdateRowsEvent | NotImplementedEvent):
            self._refuse(event)
            return
        if isinstance(event, _ROWS_EVENTS):
            if trx is None or trx.skip:
                return
            table = self.captured.for_rows(event)
            if table is None or not trx.take_event():
                return
            floor = self.floors.get(table.definition.table)
            if floor is not None and contains(floor, trx.gtid):
                return  # the lake's snapshot of this table already contains this transaction
            decoded = decode_rows_event(event, table)
            if self.assembler.spill_due(trx, decoded.num_rows):
                # Hand out what is held before this event's rows would pass chunk_rows; this
                # event is not handed out yet (a restart must decode it again).
                yield self.assembler.spill(trx, events=trx.events_seen - 1)
            trx.add(table, decoded)
            return
        if isinstance(event, TableMapEvent):
            self.captured.on_table_map(event)
            return
        if isinstance(event, MariadbGtidEvent | GtidEvent):
            self._begin(event)
            return
        if isinstance(event, XidEvent):
            yield from self._end(reader)
            return
        if isinstance(event, QueryEvent):
            query = event.query.strip()
            upper = query[:8].upper()
            if upper.startswith("BEGIN"):
                if trx is not None:
                    trx.standalone = False  # MySQL: a DML transaction, ended by XID or COMMIT
                return
            if upper.startswith("COMMIT"):  # a transaction on a non-transactional engine
                yield from self._end(reader)
                return
            schema = (
                event.schema.decode("utf-8", "replace") if isinstance(event.schema, bytes) else event.schema
            )
            truncated = self.captured.on_statement(query, schema)
            if trx is not None:
                trx.truncated.update(
                    t for t in truncated if (f := self.floors.get(t)) is None or not contains(f, trx.gtid)
                )
            if trx is not None and trx.standalone:
                yield from self._end(reader)
            return
        # A heartbeat: the binlog is idle. Hand out what is due, or an idle batch (nothing in it,
        # end = start) so the caller regains control, e.g. to notice it should stop. (MySQL also
        # sends heartbeats while it skips what the GTID set already holds: a bounded run, which
        # ends by itself, hands out nothing for those.)
        if trx is None and self.until is None:
            if self.assembler.due():
                yield self.assembler.cut()
            elif not self.assembler.pending:
                yield self.assembler.idle()

    def _refuse(self, event: Any) -> None:
        """An event that carries changes this reader cannot decode: stop rather than skip them."""
        if isinstance(event, PartialUpdateRowsEvent):
            if self.captured.for_rows(event) is None:
                return  # not a captured table
            what = "a partial JSON update; set binlog_row_value_options='' (not PARTIAL_JSON)"
        else:
            what = _UNREADABLE_EVENTS.get(event.event_type, "")
            if not what:
                return  # an event that carries no rows (e.g. a transaction context)
        raise SourceError(
            f"{endpoint(self.config)}: the binlog holds {what} (in the server's parameter group on Aurora), "
            f"then run `lakehouse resnapshot --source {self.config.name}` (the transaction at "
            f"{self.assembler.position.serialize()} cannot be decoded)"
        )

    def _begin(self, event: MariadbGtidEvent | GtidEvent) -> None:
        gtid: Gtid
        if isinstance(event, GtidEvent):
            gtid = MySQLGtid.parse(event.gtid)
            # MySQL marks nothing: a group is DDL (one statement, no XID) unless BEGIN follows.
            standalone = True
        else:
            gtid = MariaGtid(event.domain_id, event.server_id, event.gtid_seq_no)
            standalone = bool(event.flags & FL_STANDALONE)
        if self.trx is not None:
            if self.trx.gtid == gtid:
                logger.info(
                    "%s: transaction %s is sent again after a reconnect; skipping its %d rows event(s) already handed out",
                    endpoint(self.config),
                    gtid,
                    self.trx.events_handed_out,
                )
                self.trx.restart()
                return
            if self.trx.events_handed_out:
                raise SourceError(
                    f"{endpoint(self.config)}: transaction {self.trx.gtid} was cut off in the binlog after part of it "
                    "was handed out; run the stream again from the committed position"
                )
            logger.warning(
                "%s: transaction %s has no commit event; skipped", endpoint(self.config), self.trx.gtid
            )
        position = self.assembler.position
        self.trx = Transaction(
            gtid=gtid,
            position=advance(position, gtid),
            commit_ts=dt.datetime.fromtimestamp(event.timestamp, dt.UTC),
            standalone=standalone,
            skip=contains(position, gtid),
        )

    def _end(self, reader: BinLogStreamReader) -> Iterator[Batch]:
        trx = self.trx
        if trx is None:
            return
        self.trx = None
        if trx.skip:
            return
        if trx.truncated:
            # The TRUNCATE's commit replaces the tables' state: nothing before it may share it.
            if self.assembler.pending:
                yield self.assembler.cut()
            self.assembler.commit(trx)
            reader.auto_position = str(self.assembler.position)
            yield self.assembler.cut(snapshot=frozenset(trx.truncated))
            if self.until is not None and self.until <= self.assembler.position:
                self.done = True
            return
        self.assembler.commit(trx)
        # The library reconnects on its own after errors 2006/2013, from `auto_position`.
        reader.auto_position = str(self.assembler.position)
        if self.until is not None and self.until <= self.assembler.position:
            yield self.assembler.cut()
            self.done = True
            return
        if self.assembler.due():
            yield self.assembler.cut()
