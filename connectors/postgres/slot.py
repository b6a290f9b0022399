"""The replication slot and publication this source owns.

The publication lists exactly the captured tables (``FOR TABLE``), so pgoutput sends nothing else;
it is created when missing and re-pointed with ``ALTER PUBLICATION ... SET TABLE`` when the table
list changes. The slot is created by the initial snapshot (``CREATE_REPLICATION_SLOT ... LOGICAL
pgoutput EXPORT_SNAPSHOT``) so that the snapshot and the slot start at the same WAL position.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from connectors.events import TableId
from connectors.postgres.catalog import qualified
from connectors.postgres.offset import Lsn
from connectors.source import PreflightError, SourceError

log = logging.getLogger(__name__)

# A walsender whose client just closed the stream holds the slot for a moment while it exits.
SLOT_RELEASE_WAIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class SlotState:
    """A row of pg_replication_slots."""

    name: str
    plugin: str | None
    database: str | None
    active_pid: int | None
    confirmed_flush: Lsn | None
    wal_status: str | None  # 'reserved' | 'extended' | 'unreserved' | 'lost' (PostgreSQL 13+)


def slot_state(conn: Any, slot: str) -> SlotState | None:
    """The slot's state, or None when it does not exist."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT slot_name, plugin, database, active_pid, confirmed_flush_lsn::text, wal_status"
            " FROM pg_catalog.pg_replication_slots WHERE slot_name = %s",
            (slot,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    name, plugin, database, pid, flush, wal_status = row
    return SlotState(name, plugin, database, pid, Lsn.parse(flush) if flush else None, wal_status)


def released_slot_state(
    conn: Any, slot: str, wait_seconds: float = SLOT_RELEASE_WAIT_SECONDS
) -> SlotState | None:
    """The slot's state once no backend holds it, or as it is when `wait_seconds` ran out."""
    state = slot_state(conn, slot)
    deadline = time.monotonic() + wait_seconds
    while state is not None and state.active_pid is not None and time.monotonic() < deadline:
        time.sleep(0.05)
        state = slot_state(conn, slot)
    return state


def drop_slot(conn: Any, slot: str) -> None:
    """Drop the slot; a slot in use by a running stream is reported, not killed."""
    state = released_slot_state(conn, slot)
    if state is None:
        return
    if state.active_pid is not None:
        raise SourceError(
            f"replication slot {slot} is in use by backend pid {state.active_pid}; stop the other "
            "pipeline run (or pg_terminate_backend it) before taking a new snapshot"
        )
    with conn.cursor() as cur:
        cur.execute("SELECT pg_catalog.pg_drop_replication_slot(%s)", (slot,))


def create_slot_with_snapshot(replication_cursor: Any, slot: str, *, temporary: bool) -> tuple[Lsn, str]:
    """Create a pgoutput slot and export its snapshot; returns (consistent point, snapshot name).

    The exported snapshot sees exactly the transactions that committed before the consistent
    point, and the slot streams exactly those that commit after it. It stays importable until the
    replication connection runs another command or closes. The old ``EXPORT_SNAPSHOT`` spelling is
    used because it works on PostgreSQL 10 to 16 alike.
    """
    command = (
        f"CREATE_REPLICATION_SLOT {slot}{' TEMPORARY' if temporary else ''} LOGICAL pgoutput EXPORT_SNAPSHOT"
    )
    replication_cursor.execute(command)
    row = replication_cursor.fetchone()
    _name, consistent_point, snapshot_name, _plugin = row
    return Lsn.parse(consistent_point), snapshot_name


def advance_slot(conn: Any, slot: str, lsn: Lsn) -> Lsn | None:
    """Move an inactive slot's confirmed position forward to `lsn` (never backwards)."""
    state = released_slot_state(conn, slot)
    if state is None or state.confirmed_flush is None or lsn <= state.confirmed_flush:
        return state.confirmed_flush if state else None
    with conn.cursor() as cur:
        cur.execute(
            "SELECT end_lsn::text FROM pg_catalog.pg_replication_slot_advance(%s, %s::pg_lsn)",
            (slot, str(lsn)),
        )
        row = cur.fetchone()
    return Lsn.parse(row[0]) if row and row[0] else None


# --- publication ----------------------------------------------------------------------------

# Stands for a FOR ALL TABLES publication (set up by a DBA): it covers every table, and the stream
# ignores the tables it does not capture.
ALL_TABLES: frozenset[tuple[str, str]] = frozenset({("*", "*")})


def publication_tables(conn: Any, publication: str) -> frozenset[tuple[str, str]] | None:
    """(schema, table) pairs in the publication, `ALL_TABLES`, or None when it does not exist."""
    with conn.cursor() as cur:
        cur.execute("SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = %s", (publication,))
        row = cur.fetchone()
        if row is None:
            return None
        if row[0]:
            return ALL_TABLES
        cur.execute(
            "SELECT schemaname, tablename FROM pg_catalog.pg_publication_tables WHERE pubname = %s",
            (publication,),
        )
        return frozenset((s, t) for s, t in cur.fetchall())


def publication_sql(publication: str, tables: Sequence[TableId], *, exists: bool) -> sql.Composed:
    """The CREATE or ALTER statement that makes `publication` list exactly `tables`."""
    table_list = sql.SQL(", ").join(qualified(t) for t in tables)
    if exists:
        return sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(sql.Identifier(publication), table_list)
    # publish_via_partition_root: changes of a partitioned table arrive under the table itself.
    return sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)").format(
        sql.Identifier(publication), table_list
    )


def ensure_publication(conn: Any, publication: str, tables: Sequence[TableId]) -> None:
    """Create the publication, or point it at exactly `tables` when its list differs."""
    if not tables:
        raise SourceError("no tables to capture: the schema is empty or `tables` lists none")
    current = publication_tables(conn, publication)
    wanted = {(t.schema, t.name) for t in tables}
    if current == wanted or current is ALL_TABLES:
        return
    statement = publication_sql(publication, tables, exists=current is not None)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    except (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ObjectNotInPrerequisiteState) as exc:
        raise PreflightError(
            f"cannot {'alter' if current is not None else 'create'} publication {publication}: "
            f"{str(exc).strip()}. Ask a database owner to run: {statement.as_string(conn)}"
        ) from None
    log.info(
        "publication %s %s for %d table(s)",
        publication,
        "re-pointed" if current is not None else "created",
        len(tables),
    )
