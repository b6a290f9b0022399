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
    con, my, database, _ = _warehouse(mysql_db, pg_db, tmp_path)
    return con, my, database


def _warehouse(
    mysql_db: Any, pg_db: Any, tmp_path: Path, devices: tuple[Any, str] | None = None
) -> tuple[Any, Any, str, Lake]:
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
    sources = ["aurora_mysql"]
    if devices is not None:
        from connectors.dynamodb.config import DynamoDBSourceConfig

        aws, table = devices
        ddb_config = DynamoDBSourceConfig(
            name="devices", tables=(table,), settle_seconds=0,
            aws={"endpoint_url": aws["endpoint_url"], "access_key_id": "testing", "secret_access_key": "testing"},
        )  # fmt: skip
        ddb = open_source(ddb_config)
        try:
            sync_source(lake, ddb)
        finally:
            ddb.close()
        sources.append("devices")
    con = connect()
    register_lake(con, lake, sources)
    return con, my, mysql_db.name, lake


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


def test_coach_patients_off_plan_matches_the_sources(
    mysql_db: Any, pg_db: Any, tmp_path: Path, aws_client_kwargs: dict[str, str]
) -> None:
    import uuid

    import boto3
    from boto3.dynamodb.types import TypeDeserializer

    from pipelines.world.devices import seed_devices
    from pipelines.world.devices_schema import create_device_tables

    client = boto3.client("dynamodb", **aws_client_kwargs)
    prefix = f"uc{uuid.uuid4().hex[:6]}_"
    tables = create_device_tables(client, prefix)
    seed_devices(client, tables, patients=40, events_per_patient=12, seed=3)
    events_table = tables.name("device_events")
    con, my, database, _ = _warehouse(mysql_db, pg_db, tmp_path, devices=(aws_client_kwargs, events_table))
    result = run(
        con, "coach_patients_off_plan", databases={"health": database},
        tables={"dynamodb__device_events": f"dynamodb__{events_table}".lower()},
    )  # fmt: skip
    got = {
        (r["patient_id"], r["plan_code"], float(r["steps_per_day"]), float(r["sleep_minutes_per_day"]))
        for r in result.to_pylist()
    }

    # Independently: DynamoDB items and MariaDB rows, in Python.
    events = []
    deserialize = TypeDeserializer().deserialize
    for page in client.get_paginator("scan").paginate(TableName=events_table):
        events += [{k: deserialize(v) for k, v in item.items()} for item in page["Items"]]

    def at(e: dict[str, Any]) -> dt.datetime:
        return dt.datetime.fromisoformat(str(e["event_time"]).replace("Z", "+00:00"))

    latest = max(at(e) for e in events)
    steps: dict[int, float] = defaultdict(float)
    sleep: dict[int, float] = defaultdict(float)
    for e in events:
        if at(e) > latest - dt.timedelta(days=7):
            if e["type"] == "steps":
                steps[int(e["patient_id"])] += float(e.get("steps", 0))
            elif e["type"] == "sleep":
                sleep[int(e["patient_id"])] += float(e.get("sleep_minutes", 0))
    with my.cursor() as cur:
        cur.execute(
            "SELECT e.patient_id, p.code, p.target_daily_steps, p.target_sleep_minutes FROM plan_enrollments e "
            "JOIN fitness_plans p ON p.plan_id = e.plan_id WHERE e.status = 'active'"
        )
        enrolled = cur.fetchall()
    expected = set()
    for pid, code, target_steps, target_sleep in enrolled:
        per_day_steps, per_day_sleep = steps[int(pid)] / 7, sleep[int(pid)] / 7
        if per_day_steps < target_steps or per_day_sleep < target_sleep:
            expected.add((int(pid), code, round(per_day_steps, 1), round(per_day_sleep, 1)))
    assert got == expected and got
