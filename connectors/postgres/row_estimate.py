"""Row estimates of PostgreSQL tables from the catalog, as the planner makes them: no table is read.

`pg_class.reltuples` is the row count VACUUM / ANALYZE (or autovacuum) last measured, with the
table's size in pages then (`relpages`). Like the planner (`estimate_rel_size`), the density
measured then is scaled to the table's size now, so rows added since are counted too. A table
never vacuumed nor analyzed has `reltuples` -1 (PostgreSQL 14+): no estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_ESTIMATE_SQL = """
SELECT c.relname,
       CASE WHEN c.reltuples < 0 THEN NULL
            WHEN c.relpages > 0 THEN round(c.reltuples / c.relpages
                 * (pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::float8))
            ELSE round(c.reltuples) END
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')
"""


def estimated_rows(conn: Any, schema: str, tables: Sequence[str]) -> dict[str, int | None]:
    """The planner's row estimate of each of `tables` in `schema` (None: none yet, or no table)."""
    if not tables:
        return {}
    with conn.cursor() as cur:
        cur.execute(_ESTIMATE_SQL, (schema, list(tables)))
        found = {name: None if count is None else int(count) for name, count in cur.fetchall()}
    return {t: found.get(t) for t in tables}
