"""Row estimates of MySQL / MariaDB tables from the data dictionary: no table is read.

`information_schema.TABLES.TABLE_ROWS` is InnoDB's sampled estimate (its persistent statistics,
recomputed by the server after about 10 % of a table changed); the MySQL manual warns it may be
off by 40 to 50 %. MySQL 8 also caches it for `information_schema_stats_expiry` seconds (86400 by
default), so the session asks for fresh values; MariaDB has no such cache (and no such variable).
"""

from __future__ import annotations

from collections.abc import Sequence

import pymysql

from connectors.mysql.connection import fetch_all, server_flavor


def estimated_rows(
    conn: pymysql.connections.Connection, database: str, tables: Sequence[str]
) -> dict[str, int | None]:
    """InnoDB's row estimate of each of `tables` in `database` (None: not in the dictionary)."""
    if not tables:
        return {}
    if server_flavor(conn) == "mysql":
        with conn.cursor() as cur:
            # Session-only: InnoDB's in-memory statistics, not a table read (MySQL 8.0+).
            cur.execute("SET SESSION information_schema_stats_expiry = 0")
    marks = ", ".join(["%s"] * len(tables))
    rows = fetch_all(
        conn,
        "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES"
        f" WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN ({marks})",
        (database, *tables),
    )
    # Names compared case-insensitively: lower_case_table_names may fold them on the server.
    found = {str(name).lower(): None if count is None else int(count) for name, count in rows}
    return {t: found.get(t.lower()) for t in tables}
