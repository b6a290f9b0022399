"""Fixtures shared by the PostgreSQL source's test modules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.postgres import PostgresSource
from tests.postgres_support import ACK_WAIT_SECONDS, make_config


@pytest.fixture
def admin(pg_db: Any) -> Any:
    """Autocommit connection for the test's own DDL and DML (as the admin user)."""
    return pg_db.admin_connect()


@pytest.fixture
def make_source(pg_db: Any) -> Iterator[Any]:
    """Build sources for the test database; closes them and drops their slots afterwards."""
    made: list[PostgresSource] = []

    def build(**overrides: Any) -> PostgresSource:
        source = PostgresSource(make_config(pg_db, **overrides))
        made.append(source)
        return source

    yield build
    conn = pg_db.admin_connect()
    for source in made:
        source.close()
        deadline = time.monotonic() + ACK_WAIT_SECONDS
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                    (source.config.slot_name,),
                )
                row = cur.fetchone()
                if row is None:
                    break
                if row[0] is None:
                    cur.execute("SELECT pg_drop_replication_slot(%s)", (source.config.slot_name,))
                    break
            time.sleep(0.1)
