"""`MySQLSource`: the binlog CDC source for MySQL 8 / Aurora MySQL 3 and MariaDB.

Positions are GTID sets on MySQL (`MySQLGtidSet`, the value of ``@@gtid_executed``) and GTID
positions on MariaDB (`MariaGtidPosition`); the flavour is asked from the server (or configured).
Snapshots are chunked and lock-free on both (snapshot.py); streams resume by GTID (binlog.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence

import pymysql

from connectors.events import Batch, TableId
from connectors.mysql.binlog import read_stream
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.connection import connect, endpoint, fetch_value, is_transient, server_flavor
from connectors.mysql.offset import BinlogPosition, MariaGtidPosition, MySQLGtidSet
from connectors.mysql.position import current_gtid_position
from connectors.mysql.preflight import run_preflight
from connectors.mysql.schema import list_base_tables
from connectors.mysql.snapshot import begin_snapshot, read_snapshot, read_table_chunks
from connectors.mysql.types import quote_identifier
from connectors.offsets import Offset
from connectors.snapshot_chunks import JsonValue, SnapshotChunk, SnapshotStart
from connectors.source import SourceError

logger = logging.getLogger(__name__)


class MySQLSource:
    """Change data capture from a MariaDB / MySQL binlog (see `connectors.source.Source`)."""

    def __init__(self, config: MySQLSourceConfig) -> None:
        self.config = config
        self.name = config.name
        self._control: pymysql.connections.Connection | None = None
        self._flavor: str | None = None if config.flavor == "auto" else config.flavor

    def __repr__(self) -> str:
        return f"MySQLSource({self.name!r}, {self.config.host}:{self.config.port}/{self.config.database})"

    # -- connection ---------------------------------------------------------------------------

    def _connection(self) -> pymysql.connections.Connection:
        """The control connection (opened lazily, re-opened if the server dropped it)."""
        if self._control is not None:
            try:
                self._control.ping(reconnect=False)
            except pymysql.err.MySQLError as exc:
                if not is_transient(exc):
                    raise
                self._close_control()
        if self._control is None:
            self._control = connect(self.config)
        return self._control

    def _close_control(self) -> None:
        if self._control is not None:
            with contextlib.suppress(pymysql.err.Error):  # already gone
                self._control.close()
            self._control = None

    @property
    def flavor(self) -> str:
        """'mariadb' or 'mysql' (configured, or asked from the server once)."""
        if self._flavor is None:
            self._flavor = server_flavor(self._connection())
        return self._flavor

    # -- Source protocol ----------------------------------------------------------------------

    def preflight(self) -> None:
        """Check binlog settings, GTIDs, retention, grants and tables; one PreflightError lists all."""
        run_preflight(self._connection(), self.config, self.flavor, self._configured_tables())

    def tables(self) -> Sequence[TableId]:
        """The configured tables, or every base table of the database."""
        return [TableId(self.config.name, self.config.database, t) for t in self._configured_tables()]

    def _configured_tables(self) -> list[str]:
        if self.config.tables:
            return list(self.config.tables)
        return list_base_tables(self._connection(), self.config.database)

    def current_position(self) -> Offset:
        """The GTID position now (MySQL ``@@gtid_executed``, MariaDB ``@@gtid_binlog_pos``): the
        high-water mark of a bounded run."""
        return current_gtid_position(self._connection(), self.flavor)

    def snapshot(
        self, tables: Sequence[TableId] | None = None, *, stream_offset: Offset | None = None
    ) -> Iterator[Batch]:
        """A snapshot of `tables` (all by default) in chunks, without a lock or a long transaction.

        Without `stream_offset` this is an initial snapshot: the final batch has start None,
        end = the snapshot's position and floors = that position for every table. With
        `stream_offset` (the lake's committed stream offset) it is a backfill of tables into a
        running stream: the final batch has start = end = `stream_offset` and only `floors`
        carry the snapshot position.
        """
        chosen = list(tables) if tables is not None else list(self.tables())
        self._check_tables(chosen)
        offset = None if stream_offset is None else self._position(stream_offset, "stream_offset")
        return read_snapshot(self.config, self.flavor, chosen, offset)

    def backfill(self, tables: Sequence[TableId], stream_offset: Offset) -> Iterator[Batch]:
        """Re-snapshot `tables` into a running stream: ``snapshot(tables, stream_offset=...)``."""
        return self.snapshot(tables, stream_offset=stream_offset)

    def begin_snapshot(self, tables: Sequence[TableId] | None = None) -> SnapshotStart:
        """Start a resumable snapshot of `tables` (all by default): the GTID position now, read
        before any table, as the low watermark, and each table's schema as a zero-row change."""
        chosen = list(tables) if tables is not None else list(self.tables())
        self._check_tables(chosen)
        return begin_snapshot(self.config, self.flavor, chosen)

    def begin_backfill(self, tables: Sequence[TableId], stream_offset: Offset) -> SnapshotStart:
        """Start a resumable backfill of `tables` from the stream's committed offset (no lock)."""
        self._check_tables(tables)
        return begin_snapshot(
            self.config, self.flavor, tables, self._position(stream_offset, "stream_offset")
        )

    def snapshot_chunks(
        self, table: TableId, after: Sequence[JsonValue] | None, low: Offset
    ) -> Iterator[SnapshotChunk]:
        """`table`'s rows after key `after` (None: from the first) in key order, `chunk_rows` per
        autocommit statement, as of at least `low` (see `connectors.snapshot_chunks`)."""
        self._check_tables([table])
        return read_table_chunks(self.config, self.flavor, table, after, self._position(low, "low"))

    def stream(
        self,
        since: Offset,
        floors: Mapping[TableId, Offset],
        until: Offset | None = None,
    ) -> Iterator[Batch]:
        """Changes after `since` as batches cut at transaction boundaries (see the Source protocol).

        Without `until` the stream blocks for new changes until the caller stops iterating;
        with `until` it stops after the transaction that reaches `until` (or at the end of the
        binlog). Each row's `_position` is the serialised GTID position after its transaction
        (``mariadb-gtid:0-1-42``, ``mysql-gtid:<uuid>:1-42``) and `_txid` is its GTID
        (``0-1-42``, ``<uuid>:42``).
        """
        start = self._position(since, "since")
        end = None if until is None else self._position(until, "until")
        typed_floors = {t: self._position(o, f"floor of {t}") for t, o in floors.items()}
        return read_stream(self.config, list(self.tables()), start, typed_floors, end)

    def acknowledge(self, offset: Offset) -> None:
        """Nothing to tell the server: a binlog reader keeps no server-side position.

        The lake stores the GTID position with the data; binlog retention
        (`min_binlog_retention_hours`, checked by preflight) is what keeps it available.
        """

    def count_rows(self, table: TableId) -> int:
        """``SELECT COUNT(*)`` of the table now."""
        sql = f"SELECT COUNT(*) FROM {quote_identifier(table.schema)}.{quote_identifier(table.name)}"
        return int(fetch_value(self._connection(), sql))

    def close(self) -> None:
        """Close the control connection (streams and snapshots close their own)."""
        self._close_control()

    def _check_tables(self, tables: Sequence[TableId]) -> None:
        for t in tables:
            if t.source != self.name or t.schema != self.config.database:
                raise SourceError(
                    f"{t} does not belong to source {self.name!r} (database {self.config.database!r})"
                )

    def _position(self, offset: Offset, what: str) -> BinlogPosition:
        """`offset` as this server's kind of position; an offset of the other flavour (a lake
        written from MariaDB, the source now pointed at MySQL, or back) is refused by name."""
        wanted = MySQLGtidSet if self.flavor == "mysql" else MariaGtidPosition
        if not isinstance(offset, wanted):
            raise SourceError(
                f"{endpoint(self.config)}: {what} {offset.serialize()!r} is not a {self.flavor} GTID position "
                f"({'mysql-gtid' if self.flavor == 'mysql' else 'mariadb-gtid'}:...); the lake was written from "
                f"another server flavour. Run `lakehouse resnapshot --source {self.name}`"
            )
        return offset
