"""Row-level security on a captured table: a snapshot's SELECT must read every row, so preflight
refuses a CDC user that RLS would limit (logical replication itself reads past RLS)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.postgres import PostgresSource
from connectors.source import PreflightError
from tests.postgres_support import make_config


@pytest.fixture
def limited_user(pg_db: Any, admin: Any) -> Iterator[tuple[str, str]]:
    """A login that can replicate and SELECT the test tables but neither owns them nor bypasses RLS."""
    name, password = f"rls_{uuid.uuid4().hex[:10]}", "rls-test-pw"
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {name} LOGIN REPLICATION PASSWORD '{password}'")
        cur.execute(
            "CREATE TABLE clinics (tenant_id text, id int PRIMARY KEY, name text);"
            "INSERT INTO clinics VALUES ('a', 1, 'Oak'), ('b', 2, 'Elm'), ('a', 3, 'Ash');"
            "ALTER TABLE clinics ENABLE ROW LEVEL SECURITY;"
            "CREATE POLICY tenant_isolation ON clinics USING (tenant_id = current_user);"
            f"GRANT SELECT ON clinics TO {name}"
        )
    try:
        yield name, password
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP OWNED BY {name}; DROP ROLE {name}")


def _problems(pg_db: Any, user: str, password: str) -> str:
    source = PostgresSource(make_config(pg_db, user=user, password=password, tables=("clinics",)))
    try:
        source.preflight()
    except PreflightError as e:
        return str(e)
    finally:
        source.close()
    return ""


def test_a_user_that_rls_limits_is_refused_naming_the_table_and_the_fixes(
    pg_db: Any, admin: Any, limited_user: tuple[str, str]
) -> None:
    user, password = limited_user
    problems = _problems(pg_db, user, password)
    assert "table \"public\".\"clinics\" has row-level security" in problems
    assert f"ALTER ROLE {user} BYPASSRLS" in problems and "USING (true)" in problems
    assert password not in problems

    # the table owner's fix: a policy that shows the CDC user every row
    with admin.cursor() as cur:
        cur.execute(f"CREATE POLICY lakehouse_cdc_read ON clinics FOR SELECT TO {user} USING (true)")
    assert "row-level security" not in _problems(pg_db, user, password)


def test_the_stacks_cdc_user_reads_past_rls_and_the_snapshot_has_every_row(pg_db: Any, admin: Any) -> None:
    with admin.cursor() as cur:
        cur.execute(
            "CREATE TABLE clinics (tenant_id text, id int PRIMARY KEY, name text);"
            "INSERT INTO clinics VALUES ('a', 1, 'Oak'), ('b', 2, 'Elm');"
            "ALTER TABLE clinics ENABLE ROW LEVEL SECURITY; ALTER TABLE clinics FORCE ROW LEVEL SECURITY;"
            "CREATE POLICY tenant_isolation ON clinics USING (tenant_id = current_user)"
        )
    source = PostgresSource(make_config(pg_db, tables=("clinics",)))
    try:
        source.preflight()  # cdc has BYPASSRLS (devstack), as the sample world needs
        rows = sum(c.num_rows for batch in source.snapshot() for c in batch.changes)
    finally:
        source.close()
    assert rows == 2
