"""The named use-case queries: run in the local DuckDB warehouse against the sample world captured
into a lake, checked against values computed independently from the source database; rendered for
Redshift and Athena and parsed back."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from connectors.catalog.warehouse import connect, register_lake
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from pipelines.capture.runner import sync_source
from pipelines.capture.sources import open_source
from pipelines.publish.analytics import UseCaseError, load_use_cases, render, run
from pipelines.world import create_world

TABLES = ("patients", "plan_enrollments", "fitness_plans", "insurance_claims", "health_preferences")


@pytest.fixture
def warehouse(mysql_db: Any, pg_db: Any, tmp_path: Path) -> tuple[Any, Any, str]:
    con, my, database, _ = _warehouse(mysql_db, pg_db, tmp_path)
    return con, my, database


def _warehouse(
    mysql_db: Any,
    pg_db: Any,
    tmp_path: Path,
    devices: tuple[Any, tuple[str, ...]] | None = None,
    prepare: Any = None,
    *,
    seed: int = 4,
    patients: int = 40,
) -> tuple[Any, Any, str, Lake]:
    my = mysql_db.admin_connect()
    pg = pg_db.admin_connect()
    create_world(my, pg, seed=seed, patients=patients)
    if prepare is not None:
        prepare(my, pg)
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

        aws, device_tables = devices
        ddb_config = DynamoDBSourceConfig(
            name="devices", tables=device_tables, settle_seconds=0,
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


def test_renderings_read_the_lake_through_the_declared_spectrum_schemas() -> None:
    from pipelines.config import load_config
    from pipelines.publish.catalogs import published_schemas

    config = load_config(Path(__file__).resolve().parents[2] / "lakehouse.toml")
    spectrum = {s.glue_database: s.name for s in config.redshift.spectrum}
    redshift = render("care_patients_needing_attention", "redshift", published_schemas(config, "redshift"))
    tree = sqlglot.parse_one(redshift, read="redshift")
    schemas = {t.db for t in tree.find_all(sqlglot.exp.Table) if t.db}
    assert schemas and schemas <= set(spectrum.values())  # every lake table through a Spectrum schema
    athena = render("care_patients_needing_attention", "athena", published_schemas(config, "athena"))
    glue = {t.db for t in sqlglot.parse_one(athena, read="athena").find_all(sqlglot.exp.Table) if t.db}
    assert glue and glue <= set(spectrum)  # Athena reads the Glue databases by their own names


def test_an_unknown_use_case_names_the_known_ones() -> None:
    with pytest.raises(UseCaseError, match="cost_of_care_per_plan_month"):
        render("nope", "redshift")


@dataclass
class DevicesWorld:
    con: Any
    my: Any
    database: str
    tables: Any  # pipelines.world.devices_schema.DeviceTables
    events: list[dict[str, Any]]
    summaries: list[dict[str, Any]]

    def run(self, name: str) -> list[dict[str, Any]]:
        tables = {
            f"dynamodb__{logical}": f"dynamodb__{self.tables.name(logical)}".lower()
            for logical in ("device_events", "daily_summary")
        }
        return run(self.con, name, databases={"health": self.database}, tables=tables).to_pylist()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self.my.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    def latest(self) -> dt.datetime:
        return max(_at(e) for e in self.events)

    def latest_day(self) -> dt.date:
        return max(_day(s) for s in self.summaries)


def _day(summary: dict[str, Any]) -> dt.date:
    return dt.date.fromisoformat(str(summary["day"]))


def _at(event: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(event["event_time"]).replace("Z", "+00:00"))


def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    deserialize = TypeDeserializer().deserialize
    return [
        {k: deserialize(v) for k, v in item.items()}
        for page in client.get_paginator("scan").paginate(TableName=table)
        for item in page["Items"]
    ]


def _devices_world(
    mysql_db: Any,
    pg_db: Any,
    tmp_path: Path,
    aws_client_kwargs: dict[str, str],
    *,
    seed: int = 4,
    patients: int = 40,
    prepare: Any = None,
) -> DevicesWorld:
    """The sample world as `lakehouse world` makes it (MySQL rows and device items for the same
    patients, both relative to today), after ``prepare(my, pg, client, tables)``, captured into a lake."""
    import uuid

    import boto3

    from pipelines.world.devices import seed_devices
    from pipelines.world.devices_schema import create_device_tables

    client = boto3.client("dynamodb", **aws_client_kwargs)
    tables = create_device_tables(client, f"uc{uuid.uuid4().hex[:6]}_")
    seed_devices(client, tables, patients=patients, events_per_patient=10, seed=seed)
    con, my, database, _ = _warehouse(
        mysql_db,
        pg_db,
        tmp_path,
        devices=(aws_client_kwargs, (tables.device_events, tables.daily_summary)),
        prepare=None if prepare is None else lambda my, pg: prepare(my, pg, client, tables),
        seed=seed,
        patients=patients,
    )
    events, summaries = _scan(client, tables.device_events), _scan(client, tables.daily_summary)
    return DevicesWorld(con, my, database, tables, events, summaries)


@pytest.fixture
def devices_world(
    mysql_db: Any, pg_db: Any, tmp_path: Path, aws_client_kwargs: dict[str, str]
) -> DevicesWorld:
    return _devices_world(mysql_db, pg_db, tmp_path, aws_client_kwargs)


def _last_week_totals(w: DevicesWorld) -> tuple[dict[int, float], dict[int, float]]:
    """Steps and sleep minutes per patient over the 7 days up to the newest summary day."""
    week = w.latest_day() - dt.timedelta(days=7)
    steps: dict[int, float] = defaultdict(float)
    sleep: dict[int, float] = defaultdict(float)
    for s in w.summaries:
        if _day(s) > week:
            steps[int(s["patient_id"])] += float(s.get("steps") or 0)
            sleep[int(s["patient_id"])] += float(s.get("sleep_minutes") or 0)
    return steps, sleep


def test_coach_patients_off_plan_matches_the_sources(devices_world: DevicesWorld) -> None:
    w = devices_world
    got = {
        (r["patient_id"], r["plan_code"], float(r["steps_per_day"]), float(r["sleep_minutes_per_day"]))
        for r in w.run("coach_patients_off_plan")
    }
    # Independently: the DynamoDB items and the MariaDB rows, in Python.
    steps, sleep = _last_week_totals(w)
    expected = set()
    for pid, code, target_steps, target_sleep in w.rows(
        "SELECT e.patient_id, p.code, p.target_daily_steps, p.target_sleep_minutes FROM plan_enrollments e "
        "JOIN fitness_plans p ON p.plan_id = e.plan_id WHERE e.status = 'active'"
    ):
        per_day_steps, per_day_sleep = steps[int(pid)] / 7, sleep[int(pid)] / 7
        if per_day_steps < target_steps or per_day_sleep < target_sleep:
            expected.add((int(pid), code, round(per_day_steps, 1), round(per_day_sleep, 1)))
    assert got == expected and got


def test_care_patients_needing_attention_matches_the_sources(devices_world: DevicesWorld) -> None:
    from pipelines.world.profiles import patient_profile

    w = devices_world
    got = {(r["patient_id"], r["recent_claims"]) for r in w.run("care_patients_needing_attention")}
    week = w.latest_day() - dt.timedelta(days=7)
    recent: dict[int, list[float]] = defaultdict(list)
    earlier: dict[int, list[float]] = defaultdict(list)
    for s in w.summaries:
        if s.get("resting_pulse") is not None:
            (recent if _day(s) > week else earlier)[int(s["patient_id"])].append(float(s["resting_pulse"]))
    claims = w.rows("SELECT patient_id, service_date FROM insurance_claims")
    newest = max(day for _, day in claims)
    recent_claims: dict[int, int] = defaultdict(int)
    for pid, day in claims:
        if day > newest - dt.timedelta(days=90):
            recent_claims[int(pid)] += 1
    expected = set()
    for pid in set(recent) & set(earlier) & set(recent_claims):
        r, b = sum(recent[pid]) / len(recent[pid]), sum(earlier[pid]) / len(earlier[pid])
        if r >= 1.1 * b:
            expected.add((pid, recent_claims[pid]))
    assert got == expected
    # The sample world's patients whose pulse is rising are the ones found, without any help.
    assert {pid for pid, _ in got} == {pid for pid in range(1, 41) if patient_profile(pid).pulse_rising}


def test_marketing_campaign_audience_matches_the_sources(devices_world: DevicesWorld) -> None:
    w = devices_world
    got = {r["patient_id"] for r in w.run("marketing_campaign_audience")}
    week = w.latest() - dt.timedelta(days=7)
    walked: dict[int, float] = defaultdict(float)
    for e in w.events:
        if e["type"] == "steps" and _at(e) > week:
            walked[int(e["patient_id"])] += float(e.get("steps", 0))
    expected = {
        int(pid)
        for pid, opt_in, channel, prefs in w.rows(
            "SELECT p.patient_id, p.marketing_opt_in, h.contact_channel, h.preferences FROM patients p "
            "JOIN health_preferences h ON h.patient_id = p.patient_id"
        )
        if opt_in and channel != "none" and '"run_5k"' in prefs and walked[int(pid)] > 0
    }
    assert got == expected and got  # the seeded world has such patients


def _run_workloads_at_the_clock(my: Any, pg: Any, client: Any, tables: Any) -> None:
    """What `lakehouse workload` does after `lakehouse world`: both workloads, stamped with the clock."""
    import threading

    from pipelines.world import DeviceWorkload, DeviceWorkloadConfig, Workload
    from pipelines.world.runs import WorkloadPart, run_parts

    sql = Workload(my, pg, seed=11)
    device = DeviceWorkload(client, tables, DeviceWorkloadConfig(seed=11, patient_ids=(1, 60)))
    run_parts(
        [
            WorkloadPart("database", lambda stop: sql.run(operations=300, stop=stop)),
            WorkloadPart("device", lambda stop: device.run(operations=150, stop=stop)),
        ],
        threading.Event(),
    )


def test_every_use_case_answers_something_meaningful_on_the_sample_world(
    mysql_db: Any, pg_db: Any, tmp_path: Path, aws_client_kwargs: dict[str, str]
) -> None:
    w = _devices_world(
        mysql_db, pg_db, tmp_path, aws_client_kwargs, seed=7, patients=60, prepare=_run_workloads_at_the_clock
    )
    for name in load_use_cases():
        rows = w.run(name)
        assert rows, f"{name} answers nothing on the sample world"
        for column in rows[0]:
            values = [r[column] for r in rows]
            assert any(v is not None for v in values), f"{name}.{column} is NULL in every row"
            if all(isinstance(v, int | float | Decimal) for v in values):
                assert any(v != 0 for v in values), f"{name}.{column} is 0 in every row"
    # Coaching everyone is coaching no one: some active members keep to their plan.
    active = w.rows("SELECT count(*) FROM plan_enrollments WHERE status = 'active'")[0][0]
    assert 0 < len(w.run("coach_patients_off_plan")) < active
