"""The named use-case queries: run in the local DuckDB warehouse against the sample world captured
into a lake, checked against values computed independently from the source database; rendered for
Redshift and Athena and parsed back."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from connectors.catalog.warehouse import connect, register_lake
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from pipelines.analytics import UseCaseError, load_use_cases, render, run
from pipelines.runner import sync_source
from pipelines.sources import open_source
from pipelines.world import create_world

TABLES = ("patients", "plan_enrollments", "fitness_plans", "insurance_claims")


@pytest.fixture
def warehouse(mysql_db: Any, pg_db: Any, tmp_path: Path) -> tuple[Any, Any, str]:
    my = mysql_db.admin_connect()
    create_world(my, pg_db.admin_connect(), seed=4, patients=40)
    config = MySQLSourceConfig(
        name="aurora_mysql", host=mysql_db.host, port=mysql_db.port, user=mysql_db.cdc_user,
        password=mysql_db.cdc_password, database=mysql_db.name, tables=TABLES, server_id=0,
    )  # fmt: skip
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    source = open_source(config)
    try:
        sync_source(lake, source)
    finally:
        source.close()
    con = connect()
    register_lake(con, lake, ["aurora_mysql"])
    return con, my, mysql_db.name


def test_cost_of_care_per_plan_and_month_matches_the_source(warehouse: tuple[Any, Any, str]) -> None:
    con, my, database = warehouse
    result = run(con, "cost_of_care_per_plan_month", databases={"health": database}).to_pylist()
    # Independently: the raw rows from MariaDB, aggregated in Python.
    with my.cursor() as cur:
        cur.execute(
            "SELECT p.code, p.name, c.service_date, c.amount FROM insurance_claims c "
            "JOIN plan_enrollments e ON e.patient_id = c.patient_id JOIN fitness_plans p ON p.plan_id = e.plan_id"
        )
        rows = cur.fetchall()
    expected: dict[tuple[str, str, dt.date], list[Decimal]] = defaultdict(list)
    for code, name, day, amount in rows:
        expected[(code, name, day.replace(day=1))].append(amount)
    assert result, "the sample world has claims of plan members"
    got = {
        (r["plan_code"], r["plan_name"], r["service_month"]): (r["claims"], Decimal(r["claimed_amount"]))
        for r in result
    }
    assert got == {k: (len(v), sum(v, Decimal(0))) for k, v in expected.items()}


def test_every_use_case_renders_for_redshift_and_athena() -> None:
    cases = load_use_cases()
    assert cases and all(c.version >= 1 for c in cases.values())
    for name in cases:
        for dialect in ("redshift", "athena"):
            sql = render(name, dialect, schemas={"aurora_mysql": "lake health"})
            assert '"lake health"' in sql
            sqlglot.parse_one(sql, read=dialect)  # parses back in that dialect


def test_an_unknown_use_case_names_the_known_ones() -> None:
    with pytest.raises(UseCaseError, match="cost_of_care_per_plan_month"):
        render("nope", "redshift")
