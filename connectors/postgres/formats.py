"""Whether a replication session can ask pgoutput for binary values, or must take text.

pgoutput's ``binary`` option (PostgreSQL 14+) applies to a whole session: every value of a type
with a send function then arrives in its binary form (a type without one still comes as text).
The stream decodes the binary forms of the types `connectors.postgres.binary` knows and keeps
exactly the values the text path gives; for any other type (money, inet, ranges, composites,
extension types, ...) only the text form is certain, so a session whose captured tables have such
a column takes text values throughout. Binary is the faster path: the server's send functions are
cheaper than its output functions, and fixed-width values need no parsing here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from connectors.events import TableId
from connectors.postgres.catalog import Catalog
from connectors.postgres.config import PostgresSourceConfig
from connectors.postgres.types import column_type

log = logging.getLogger(__name__)

MIN_BINARY_SERVER_VERSION = 140000


def columns_without_binary_decoder(
    conn: Any, catalog: Catalog, tables: Iterable[TableId], timezone: str
) -> list[str]:
    """``schema.table.column (type)`` for each captured column whose type has no binary decoder."""
    tables = list(tables)
    if not tables:
        return []
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname, a.attname, a.atttypid, a.atttypmod"
            " FROM pg_catalog.pg_attribute a"
            " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
            " AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''"
            " ORDER BY 1, 2, a.attnum",
            ([t.schema for t in tables], [t.name for t in tables]),
        )
        rows = cur.fetchall()
    types = catalog.load_types({row[3] for row in rows})
    missing = []
    for schema, table, column, oid, typmod in rows:
        if column_type(oid, typmod, types, timezone).binary is None:
            missing.append(f"{schema}.{table}.{column} ({types[oid].name})")
    return missing


def use_binary_values(
    config: PostgresSourceConfig, conn: Any, catalog: Catalog, tables: Iterable[TableId]
) -> bool:
    """Whether the next replication session should ask for binary values (logged when not)."""
    if not config.binary_values:
        return False
    if conn.server_version < MIN_BINARY_SERVER_VERSION:
        log.info(
            "%s: PostgreSQL %s has no binary pgoutput values; reading text", config.name, conn.server_version
        )
        return False
    missing = columns_without_binary_decoder(conn, catalog, tables, config.timezone)
    if missing:
        log.info(
            "%s: reading text values, since these column types have no binary decoder: %s",
            config.name,
            ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""),
        )
        return False
    return True
