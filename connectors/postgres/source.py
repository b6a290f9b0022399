"""`PostgresSource`: the `Source` protocol over a pgoutput logical replication slot."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from connectors.events import Batch, TableId
from connectors.offsets import Offset
from connectors.postgres import snapshot as snapshots
from connectors.postgres.catalog import Catalog, qualified
from connectors.postgres.config import PostgresSourceConfig
from connectors.postgres.connection import close_quietly, connect
from connectors.postgres.formats import use_binary_values
from connectors.postgres.offset import Lsn
from connectors.postgres.preflight import run_preflight
from connectors.postgres.replication import ReplicationSession
from connectors.postgres.slot import advance_slot, released_slot_state
from connectors.postgres.stream import ChangeStream
from connectors.snapshot_chunks import JsonValue, SnapshotChunk, SnapshotStart
from connectors.source import PositionLostError, SourceError

log = logging.getLogger(__name__)


def _lsn(offset: Offset) -> Lsn:
    if not isinstance(offset, Lsn):
        raise TypeError(f"a PostgreSQL source needs an Lsn offset, got {offset!r}")
    return offset


class PostgresSource:
    """Change data capture from PostgreSQL / Aurora PostgreSQL through a pgoutput slot.

    * `snapshot()` is the *initial* snapshot: it (re)creates the slot and yields the tables as of
      the slot's starting point. Only call it while the lake holds nothing of this source.
    * `begin_snapshot(tables)` / `snapshot_chunks(table, after, low)` take the initial snapshot (or a
      resnapshot) resumably: the first (re)creates the slot, the second reads one table in key
      chunks after a given key (see `connectors.snapshot_chunks`).
    * `backfill(tables, stream_offset)` snapshots tables while streaming goes on, through a
      temporary slot; its final batch keeps the stream at `stream_offset` and sets the tables'
      floors.
    * `stream(since, floors, until)` reads the slot; `acknowledge(offset)` confirms a lake-committed
      offset to the server (a status update on the running stream, else
      ``pg_replication_slot_advance``).

    Connections are opened lazily; `close()` (or ``with``) releases them.
    """

    def __init__(self, config: PostgresSourceConfig) -> None:
        self.config = config
        self.name = config.name
        self.replica_identities: dict[TableId, str] = {}
        self._conn: Any = None
        self._replication: ReplicationSession | None = None  # set while a stream() generator is open
        self._delivered: Lsn | None = None  # highest complete-batch end handed out by stream()
        self.values_format: str | None = None  # 'binary' or 'text': the last replication session's

    def __enter__(self) -> PostgresSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.config
        return f"PostgresSource({c.name!r}, {c.host}:{c.port}/{c.database}, slot={c.slot_name})"

    def _sql(self) -> Any:
        """The shared autocommit SQL connection, reopened if the server dropped it."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.config)
        return self._conn

    def _query_one(self, query: Any, params: Sequence[Any] = ()) -> tuple[Any, ...]:
        try:
            with self._sql().cursor() as cur:
                cur.execute(query, params)
                return cur.fetchone()  # type: ignore[no-any-return]
        except psycopg2.OperationalError:
            close_quietly(self._conn)  # a dead connection: reconnect once (with backoff) and retry
            self._conn = None
            with self._sql().cursor() as cur:
                cur.execute(query, params)
                return cur.fetchone()  # type: ignore[no-any-return]

    # --- Source protocol -----------------------------------------------------------------------

    def preflight(self) -> None:
        """Check settings, privileges and tables; logs and records each table's replica identity."""
        self.replica_identities = run_preflight(self._sql(), self.config, self.tables())

    def tables(self) -> Sequence[TableId]:
        """The configured tables, or every base table of the configured schema."""
        names = self.config.tables or tuple(
            Catalog(self._sql(), self.config.timezone).list_tables(self.config.schema_name)
        )
        return [TableId(self.name, self.config.schema_name, n) for n in names]

    def current_position(self) -> Lsn:
        """The server's current WAL write position (the high-water mark of a bounded run)."""
        (text,) = self._query_one("SELECT pg_current_wal_lsn()::text")
        return Lsn.parse(text)

    def _flush_position(self) -> Lsn:
        (text,) = self._query_one("SELECT pg_current_wal_flush_lsn()::text")
        return Lsn.parse(text)

    def snapshot(self, tables: Sequence[TableId] | None = None) -> Iterator[Batch]:
        """The initial snapshot: (re)creates the slot; the final batch ends at its consistent point."""
        yield from snapshots.initial_snapshot(
            self.config, list(tables) if tables is not None else self.tables()
        )

    def begin_snapshot(self, tables: Sequence[TableId] | None = None) -> SnapshotStart:
        """Start a resumable snapshot: (re)create the slot; its consistent point is the low watermark."""
        return snapshots.begin_snapshot(self.config, list(tables) if tables is not None else self.tables())

    def begin_backfill(self, tables: Sequence[TableId], stream_offset: Offset) -> SnapshotStart:
        """Start a resumable backfill of `tables` from the stream's committed LSN (no slot of its own)."""
        return snapshots.begin_backfill(self.config, list(tables), _lsn(stream_offset))

    def snapshot_chunks(
        self, table: TableId, after: Sequence[JsonValue] | None, low: Offset
    ) -> Iterator[SnapshotChunk]:
        """`table`'s rows after key `after` (None: from the first) in key order, `chunk_rows` per
        autocommit statement, as of at least `low` (see `connectors.snapshot_chunks`)."""
        return snapshots.read_table_chunks(self.config, table, after, _lsn(low))

    def backfill(self, tables: Sequence[TableId], stream_offset: Offset) -> Iterator[Batch]:
        """Snapshot `tables` while streaming: final batch has start = end = `stream_offset`.

        Its floors map each table to the backfill's own consistent point, so the stream (which
        continues from `stream_offset`) skips the changes the backfilled rows already contain.
        A table not yet in the publication is added to it first.
        """
        yield from snapshots.backfill(self.config, list(tables), _lsn(stream_offset))

    def stream(
        self, since: Offset, floors: Mapping[TableId, Offset], until: Offset | None = None
    ) -> Iterator[Batch]:
        """Changes after `since` from the slot; see `connectors.postgres.stream` for the rules."""
        start = _lsn(since)
        stop = _lsn(until) if until is not None else None
        self._check_slot(start)
        if self._replication is not None:
            raise SourceError(f"source {self.name} is already streaming; one stream at a time per source")
        captured = set(self.tables())
        catalog = Catalog(self._sql(), self.config.timezone)
        decoder = ChangeStream(
            self.config,
            catalog,
            captured,
            start,
            {t: _lsn(f) for t, f in floors.items()},
            stop,
            self._flush_position,
            binary=use_binary_values(self.config, self._sql(), catalog, captured),
        )
        try:
            for batch in decoder.batches(self._open_session):
                if batch.complete:
                    self._delivered = _lsn(batch.end)  # type: ignore[arg-type]
                yield batch
        finally:
            self._close_session()

    def _open_session(self, start_lsn: int, binary: bool) -> ReplicationSession:
        """START_REPLICATION from `start_lsn`; a session already open is closed first (and its
        walsender given the moment it needs to release the slot)."""
        if self._replication is not None:
            self._close_session()
            released_slot_state(self._sql(), self.config.slot_name)
        options = {"proto_version": "1", "publication_names": self.config.publication_name}
        if binary:
            options["binary"] = "true"
        try:
            session = ReplicationSession.start(self.config, self.config.slot_name, start_lsn, options)
        except psycopg2.errors.UndefinedObject as exc:
            raise self._position_lost(f"{str(exc).strip()}") from None
        except psycopg2.Error as exc:
            if "has already been removed" in str(exc):
                raise self._position_lost(
                    f"WAL needed from {Lsn(start_lsn)} was removed: {str(exc).strip()}"
                ) from None
            raise SourceError(
                f"cannot start streaming from slot {self.config.slot_name}: {str(exc).strip()}"
            ) from None
        self._replication = session
        self.values_format = "binary" if binary else "text"
        log.info("%s: streaming %s values from %s", self.name, self.values_format, Lsn(start_lsn))
        return session

    def _close_session(self) -> None:
        session, self._replication = self._replication, None
        if session is not None:
            session.close()

    def acknowledge(self, offset: Offset) -> None:
        """Confirm that everything up to `offset` (a lake-committed batch end) is in the lake."""
        lsn = _lsn(offset)
        if self._delivered is not None and self._delivered < lsn:
            raise ValueError(
                f"cannot acknowledge {lsn}: the stream has only delivered up to {self._delivered}"
            )
        if self._replication is not None:
            self._replication.confirm(lsn.value)
        else:
            advance_slot(self._sql(), self.config.slot_name, lsn)
        log.debug("acknowledged %s on slot %s", lsn, self.config.slot_name)

    def count_rows(self, table: TableId) -> int:
        """SELECT count(*) of the table now."""
        (count,) = self._query_one(sql.SQL("SELECT count(*) FROM {}").format(qualified(table)))
        return int(count)

    def close(self) -> None:
        close_quietly(self._conn)
        self._conn = None

    # --- helpers -------------------------------------------------------------------------------

    def _position_lost(self, detail: str) -> PositionLostError:
        return PositionLostError(
            f"source {self.name}: {detail}. The changes after the lake's position cannot be read any more; "
            f"take a new snapshot with `lakehouse resnapshot --source {self.name}`."
        )

    def _check_slot(self, since: Lsn) -> None:
        """Fail clearly when the slot cannot deliver what follows `since`."""
        slot = self.config.slot_name
        state = released_slot_state(self._sql(), slot)
        if state is None:
            raise self._position_lost(
                f"replication slot {slot} does not exist on {self.config.host}:{self.config.port} (dropped, or the "
                "server was restored or failed over without it), so changes after "
                f"{since} are lost; a new slot would only see changes from now on"
            )
        if state.plugin != "pgoutput" or state.database != self.config.database:
            raise SourceError(
                f"replication slot {slot} belongs to plugin {state.plugin!r} in database {state.database!r}, not "
                f"pgoutput in {self.config.database!r}; set `slot` to a free name"
            )
        if state.wal_status == "lost":
            raise self._position_lost(
                f"replication slot {slot} lost its WAL (max_slot_wal_keep_size exceeded)"
            )
        if state.active_pid is not None:
            raise SourceError(
                f"replication slot {slot} is in use by backend pid {state.active_pid}; is another run streaming?"
            )
        if state.confirmed_flush is not None and since < state.confirmed_flush:
            raise self._position_lost(
                f"replication slot {slot} is confirmed up to {state.confirmed_flush}, ahead of the lake's position "
                f"{since}: the server has discarded changes the lake does not have"
            )
