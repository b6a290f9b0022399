"""Pre-flight checks: server settings, privileges and tables, each failure with its fix.

All checks run and every failure goes into one `PreflightError`, so a DBA can fix everything in
one round. The replica identity of each table is logged and returned, because it decides what an
UPDATE carries (see `connectors.postgres.stream` on unchanged TOAST values).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from connectors.events import TableId
from connectors.postgres.catalog import qualified
from connectors.postgres.config import PostgresSourceConfig
from connectors.postgres.slot import ALL_TABLES, publication_sql, publication_tables
from connectors.source import PreflightError

log = logging.getLogger(__name__)

IDENTITY_NAMES = {"d": "DEFAULT", "f": "FULL", "i": "USING INDEX", "n": "NOTHING"}
MIN_SERVER_VERSION = 100000  # pgoutput and CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT need 10+


def _one(conn: Any, query: str, params: Sequence[Any] = ()) -> Any:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()


def check_server(conn: Any, config: PostgresSourceConfig) -> list[str]:
    """wal_level, slot and walsender capacity, the REPLICATION privilege."""
    problems: list[str] = []
    version, wal_level, max_slots, max_senders, standby = _one(
        conn,
        "SELECT current_setting('server_version_num')::int, current_setting('wal_level'),"
        " current_setting('max_replication_slots')::int, current_setting('max_wal_senders')::int,"
        " pg_is_in_recovery()",
    )
    if standby:
        problems.append(
            f"{config.host} is a standby (pg_is_in_recovery() is true: an Aurora reader or a hot standby), "
            "where the slot and publication cannot be created and a failover would lose the slot. Fix: set "
            "`host` to the cluster endpoint (<cluster>.cluster-<id>.<region>.rds.amazonaws.com), which always "
            "points at the writer."
        )
    if version < MIN_SERVER_VERSION:
        problems.append(
            f"PostgreSQL {version} is too old: logical replication with pgoutput needs 10 or later."
        )
    if wal_level != "logical":
        problems.append(
            f"wal_level is '{wal_level}', logical decoding needs 'logical'. Fix: set wal_level = logical and "
            "restart PostgreSQL (Aurora/RDS: set rds.logical_replication = 1 in the DB cluster parameter group "
            "and reboot the writer)."
        )
    used_slots, ours = _one(
        conn,
        "SELECT count(*), count(*) FILTER (WHERE slot_name = %s) FROM pg_catalog.pg_replication_slots",
        (config.slot_name,),
    )
    if max_slots <= 0:
        problems.append(
            "max_replication_slots is 0. Fix: set max_replication_slots to at least 2 and restart."
        )
    elif not ours and used_slots >= max_slots:
        problems.append(
            f"all {max_slots} replication slots are in use and slot {config.slot_name} is not one of them. Fix: drop "
            "unused slots (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active "
            "AND ...) or raise max_replication_slots."
        )
    (senders,) = _one(conn, "SELECT count(*) FROM pg_catalog.pg_stat_replication")
    if max_senders <= 0:
        problems.append("max_wal_senders is 0. Fix: set max_wal_senders to at least 2 and restart.")
    elif senders >= max_senders:
        problems.append(
            f"all {max_senders} WAL senders are busy. Fix: raise max_wal_senders (needs a restart)."
        )
    superuser, replication = _one(
        conn, "SELECT rolsuper, rolreplication FROM pg_catalog.pg_roles WHERE rolname = current_user"
    )
    rds_replication = False
    if _one(conn, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_replication'") is not None:
        (rds_replication,) = _one(conn, "SELECT pg_has_role(current_user, 'rds_replication', 'MEMBER')")
    if not (superuser or replication or rds_replication):
        problems.append(
            f"user {config.user} may not use replication. Fix: ALTER ROLE {config.user} WITH REPLICATION "
            f"(Aurora/RDS: GRANT rds_replication TO {config.user})."
        )
    return problems


# Whether row-level security hides rows of table `c` from this user: RLS is on, the user is no
# superuser and has no BYPASSRLS, is not the owner (or the table FORCEs RLS on its owner), and no
# permissive SELECT policy for the user (or PUBLIC) shows every row (`USING (true)`).
_RLS_HIDES_ROWS = (
    "c.relrowsecurity"
    " AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user)"
    " AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))"
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid AND p.polpermissive"
    " AND p.polcmd IN ('r', '*') AND pg_catalog.pg_get_expr(p.polqual, p.polrelid) = 'true'"
    " AND (0 = ANY (p.polroles) OR EXISTS (SELECT 1 FROM unnest(p.polroles) r(oid)"
    " WHERE pg_has_role(current_user, r.oid, 'MEMBER'))))"
)


def check_tables(
    conn: Any, config: PostgresSourceConfig, tables: Sequence[TableId]
) -> tuple[list[str], dict[TableId, str]]:
    """Existence, SELECT privilege, every row readable (row-level security), and a usable replica
    identity for every captured table."""
    problems: list[str] = []
    identities: dict[TableId, str] = {}
    for table in tables:
        name = qualified(table).as_string(conn)
        row = _one(
            conn,
            "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),"
            " has_table_privilege(c.oid, 'SELECT'), "
            + _RLS_HIDES_ROWS
            + " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
            (table.schema, table.name),
        )
        if row is None:
            problems.append(
                f"table {name} does not exist (check `tables` and `schema` of source {config.name})."
            )
            continue
        identity, has_pk, can_select, rls_hides_rows = row
        identities[table] = IDENTITY_NAMES.get(identity, identity)
        if not can_select:
            problems.append(
                f"user {config.user} cannot read {name}. Fix: GRANT SELECT ON {name} TO {config.user}."
            )
        if rls_hides_rows:
            problems.append(
                f"table {name} has row-level security and user {config.user} does not read past it: a snapshot "
                "would copy only the rows its policies show (logical replication reads every row), so the lake "
                f"would miss rows silently. Fix: ALTER ROLE {config.user} BYPASSRLS, or let the table owner run "
                f"CREATE POLICY lakehouse_cdc_read ON {name} FOR SELECT TO {config.user} USING (true)."
            )
        if identity == "n" or (identity == "d" and not has_pk):
            problems.append(
                f"table {name} has no primary key and REPLICA IDENTITY {IDENTITY_NAMES[identity]}: its UPDATEs and "
                "DELETEs cannot be captured (and fail for the application once it is in the publication). Fix: add a "
                f"primary key (ALTER TABLE {name} ADD PRIMARY KEY (...)) or run ALTER TABLE {name} REPLICA IDENTITY FULL."
            )
    for table, identity in identities.items():
        log.info("table %s: REPLICA IDENTITY %s", table, identity)
    return problems, identities


def check_publication(conn: Any, config: PostgresSourceConfig, tables: Sequence[TableId]) -> list[str]:
    """The publication exists with these tables, or this user may create or alter it."""
    current = publication_tables(conn, config.publication_name)
    if current is ALL_TABLES or current == {(t.schema, t.name) for t in tables} or not tables:
        return []
    superuser, can_create, owns_all = _one(
        conn,
        "SELECT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),"
        " has_database_privilege(current_database(), 'CREATE'),"
        " bool_and(pg_has_role(c.relowner, 'USAGE'))"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([t.schema for t in tables], [t.name for t in tables]),
    )
    if superuser or (can_create and owns_all):
        return []
    statement = publication_sql(config.publication_name, tables, exists=current is not None).as_string(conn)
    return [
        f"publication {config.publication_name} {'lists other tables' if current is not None else 'does not exist'} and "
        f"user {config.user} cannot {'alter' if current is not None else 'create'} it (that needs CREATE on the "
        f"database and ownership of the tables). Fix: a table owner runs {statement}"
    ]


def run_preflight(conn: Any, config: PostgresSourceConfig, tables: Sequence[TableId]) -> dict[TableId, str]:
    """Run every check; raise one `PreflightError` listing all problems, else return identities."""
    problems = check_server(conn, config)
    table_problems, identities = check_tables(conn, config, tables)
    problems += table_problems
    problems += check_publication(conn, config, tables)
    if problems:
        where = f"{config.host}:{config.port}/{config.database}"
        raise PreflightError(
            f"PostgreSQL source {config.name} ({where}) is not ready for CDC:\n"
            + "\n".join(f"- {p}" for p in problems)
        )
    return identities
