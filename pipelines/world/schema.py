"""The world's tables: their names and keys, the DDL shipped with the package, and bulk inserts.

The DDL lives in ``sql/mysql.sql`` and ``sql/postgres.sql`` (read with importlib.resources, so it
is reviewed as SQL, not as Python strings). Statements are plain, idempotent CREATE ... IF NOT EXISTS.
Only the constant table and column names of this package are ever spliced into SQL text; values
always travel as driver parameters.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Engine = Literal["mysql", "postgres"]


class WorldError(RuntimeError):
    """The sample world could not be created or changed."""


@dataclass(frozen=True, slots=True)
class WorldTable:
    """One table of the world: which database holds it and its primary key columns."""

    name: str
    engine: Engine
    key: tuple[str, ...]


# Parents before children: the order to create, seed and count in (reverse it to drop).
MYSQL_TABLES: tuple[WorldTable, ...] = (
    WorldTable("patients", "mysql", ("patient_id",)),
    WorldTable("fitness_plans", "mysql", ("plan_id",)),
    WorldTable("plan_enrollments", "mysql", ("patient_id", "plan_id")),
    WorldTable("assessments", "mysql", ("assessment_id",)),
    WorldTable("surveys", "mysql", ("survey_id",)),
    WorldTable("health_preferences", "mysql", ("patient_id",)),
    WorldTable("insurance_claims", "mysql", ("claim_id",)),
    WorldTable("SynonymsTable", "mysql", ("SynID",)),
)
POSTGRES_TABLES: tuple[WorldTable, ...] = (
    WorldTable("tenant_metadata", "postgres", ("tenant_id",)),
    WorldTable("care_providers", "postgres", ("provider_id",)),
)
TABLES: tuple[WorldTable, ...] = MYSQL_TABLES + POSTGRES_TABLES
TABLES_BY_NAME: dict[str, WorldTable] = {t.name: t for t in TABLES}

_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)


def ddl_text(engine: Engine) -> str:
    """The packaged DDL file for ``engine`` (``mysql`` or ``postgres``)."""
    return (
        importlib.resources.files("pipelines.world")
        .joinpath("sql")
        .joinpath(f"{engine}.sql")
        .read_text("utf-8")
    )


def ddl_statements(engine: Engine) -> list[str]:
    """The packaged DDL split into statements (a statement ends with ';' at the end of a line)."""
    parts = _STATEMENT_END.split(ddl_text(engine))
    statements = []
    for part in parts:
        code = "\n".join(line for line in part.splitlines() if not line.lstrip().startswith("--")).strip()
        if code:
            statements.append(part.strip())
    return statements


def quote(engine: Engine, identifier: str) -> str:
    """Quote one of this package's identifiers for ``engine``."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", identifier):
        raise WorldError(f"unexpected identifier {identifier!r}")
    return f"`{identifier}`" if engine == "mysql" else f'"{identifier}"'


def insert_sql(engine: Engine, table: str, columns: Sequence[str]) -> str:
    """``INSERT INTO table (cols) VALUES (...)`` with one placeholder per column."""
    cols = ", ".join(quote(engine, c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {quote(engine, table)} ({cols}) VALUES ({marks})"


def insert_rows(cursor: Any, engine: Engine, table: str, rows: Sequence[dict[str, Any]]) -> int:
    """Insert ``rows`` (dicts with identical keys) in one round of batched statements.

    PyMySQL's ``executemany`` rewrites a simple INSERT into multi-row statements of up to ~1 MB;
    psycopg2's does one round trip per row, so PostgreSQL goes through ``execute_values``.
    """
    if not rows:
        return 0
    columns = list(rows[0])
    values = [tuple(r[c] for c in columns) for r in rows]
    if engine == "mysql":
        cursor.executemany(insert_sql(engine, table, columns), values)
    else:
        from psycopg2.extras import execute_values

        cols = ", ".join(quote(engine, c) for c in columns)
        execute_values(
            cursor, f"INSERT INTO {quote(engine, table)} ({cols}) VALUES %s", values, page_size=1000
        )
    return len(values)


def apply_ddl(conn: Any, engine: Engine) -> None:
    """Run the packaged DDL for ``engine`` on ``conn`` and commit (idempotent)."""
    try:
        with conn.cursor() as cur:
            for statement in ddl_statements(engine):
                cur.execute(statement)
        conn.commit()
    except Exception as exc:
        conn.rollback()
        raise WorldError(f"creating the {engine} schema failed: {exc}") from exc


def count_rows(conn: Any, tables: Iterable[WorldTable]) -> dict[str, int]:
    """``SELECT count(*)`` of each table, by name (ends the read transaction it opens)."""
    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        for table in tables:
            cur.execute(f"SELECT count(*) FROM {quote(table.engine, table.name)}")
            counts[table.name] = int(cur.fetchone()[0])
    conn.rollback()
    return counts


def drop_schema(mysql_conn: Any, pg_conn: Any) -> None:
    """Drop every world table from both databases (children first)."""
    for conn, tables in ((mysql_conn, MYSQL_TABLES), (pg_conn, POSTGRES_TABLES)):
        with conn.cursor() as cur:
            for table in reversed(tables):
                cur.execute(f"DROP TABLE IF EXISTS {quote(table.engine, table.name)}")
        conn.commit()
