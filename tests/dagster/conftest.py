"""Fixtures of the Dagster tests: a small MySQL source of three tables, in a local lake."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from connectors.lake.lake import Lake
from dagster_project.definitions import build_definitions
from dagster_project.lake_metadata import lake_table_name
from dagster_project.resources import password_env_var
from pipelines.capture.runner import sync_all
from pipelines.config import LakehouseConfig, parse_config

SOURCE = "dg_tables"
TABLES = ["alpha", "beta", "gamma"]


@dataclass
class World:
    """The source's config and definitions, its lake, and an admin connection to its database."""

    config: LakehouseConfig
    defs: dg.Definitions
    lake: Lake
    conn: Any

    def change(self, tables: list[str]) -> None:
        """Update a row of each of `tables` and capture it into the change log, unmerged."""
        with self.conn.cursor() as cur:
            for t in tables:
                cur.execute(f"UPDATE {t} SET label = 'changed' WHERE id = 1")
        self.conn.commit()
        sync_all(self.config, merge=False)

    def applied(self, table: str) -> int:
        current = self.lake.current(SOURCE)
        return current.applied_seq(current.load(lake_table_name(self.schema, table)))

    def head(self, table: str) -> int:
        latest = self.lake.commit_log(SOURCE).latest()
        assert latest is not None
        return latest.heads[lake_table_name(self.schema, table)]

    def rows(self, table: str) -> pa.Table:
        return self.lake.current(SOURCE).read(lake_table_name(self.schema, table)).sort_by("id")

    @property
    def schema(self) -> str:
        return str(self.config.sources[0].database)  # type: ignore[union-attr]


@pytest.fixture
def world(mysql_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Three tables of a MySQL source, snapshotted and merged into a local lake."""
    conn = mysql_db.admin_connect()
    with conn.cursor() as cur:
        for t in TABLES:
            cur.execute(f"CREATE TABLE {t} (id INT PRIMARY KEY, label VARCHAR(20))")
            cur.execute(f"INSERT INTO {t} VALUES (1, 'one'), (2, 'two')")
    conn.commit()
    password = mysql_db.cdc_password.get_secret_value()
    source = {
        "kind": "mysql",
        "name": SOURCE,
        "host": mysql_db.host,
        "port": mysql_db.port,
        "user": mysql_db.cdc_user,
        "password": password,
        "database": mysql_db.name,
        "tables": TABLES,
    }
    config = parse_config({"lake": {"root": str(tmp_path / "lake")}, "sources": [source]})
    monkeypatch.setenv(password_env_var(SOURCE), password)
    sync_all(config)  # snapshot and merge every table
    yield World(config, build_definitions(config), Lake(config.lake), conn)
