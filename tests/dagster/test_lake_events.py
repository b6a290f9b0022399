"""Commits made outside Dagster reach a Dagster instance through the `lake_commits` sensor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_project.assets import changelog_key, current_key
from dagster_project.definitions import build_definitions
from dagster_project.lake_events import SENSOR_NAME
from dagster_project.resources import password_env_var
from pipelines.cli import main as lakehouse
from pipelines.config import load_config

SOURCE = "dg_cli"


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[Any]:
    """One sensor tick, its events recorded the way the sensor daemon records them."""
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    result = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
    assert isinstance(result, dg.SensorResult) and not result.run_requests
    events = list(result.asset_events or [])
    for event in events:
        instance.report_runless_asset_event(event)
    return events


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, Any]:
    entry = instance.get_latest_materialization_event(key)
    assert entry is not None and entry.asset_materialization is not None, f"{key} never materialized"
    return {k: v.value for k, v in entry.asset_materialization.metadata.items()}


def test_cli_commits_become_materializations_and_dagster_runs_are_not_reported_twice(
    mysql_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = mysql_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50), price DECIMAL(8,2))")
        cur.execute("INSERT INTO items VALUES (1, 'tennis shoe', 59.90), (2, 'croissant', 2.10)")
    conn.commit()
    config_file = tmp_path / "lakehouse.toml"
    config_file.write_text(
        f'[lake]\nroot = "{tmp_path / "lake"}"\n\n'
        f'[[sources]]\nname = "{SOURCE}"\nkind = "mysql"\nhost = "{mysql_db.host}"\nport = {mysql_db.port}\n'
        f'user = "{mysql_db.cdc_user}"\npassword = "${{{password_env_var(SOURCE)}}}"\n'
        f'database = "{mysql_db.name}"\ntables = ["items"]\n'
    )
    monkeypatch.setenv(password_env_var(SOURCE), mysql_db.cdc_password.get_secret_value())
    defs = build_definitions(load_config(str(config_file)))
    instance = dg.DagsterInstance.ephemeral()
    assert _tick(defs, instance) == []  # an empty lake: nothing to report

    assert lakehouse(["--config", str(config_file), "sync", "--once"]) == 0  # snapshot + merge
    events = _tick(defs, instance)
    assert {e.asset_key for e in events} == {changelog_key(SOURCE, "items"), current_key(SOURCE, "items")}
    log = _latest(instance, changelog_key(SOURCE, "items"))
    assert log["rows_committed"] == 2 and log["snapshot"] is True
    assert log["dagster/row_count"] == 2
    assert {"id", "name", "price", "Op"} <= {c.name for c in log["dagster/column_schema"].columns}
    assert log["dagster/uri"].endswith(f"changelog/{SOURCE}/{mysql_db.name.lower()}__items")
    current = _latest(instance, current_key(SOURCE, "items"))
    assert current["dagster/row_count"] == 2 and current["changed"] is True
    assert _tick(defs, instance) == []  # reported once

    # A Dagster run reports its own commits: the sensor does not report them again.
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items VALUES (3, 'baguette', 1.20)")
    conn.commit()
    job = defs.resolve_job_def("micro_batches")
    assert job.execute_in_process(instance=instance).success
    assert _tick(defs, instance) == []

    # The next outside commit is reported with its own rows, on top of what the lake holds.
    with conn.cursor() as cur:
        cur.execute("UPDATE items SET price = 2.30 WHERE id = 2")
    conn.commit()
    assert lakehouse(["--config", str(config_file), "sync", "--once"]) == 0
    events = _tick(defs, instance)
    assert {e.asset_key for e in events} == {changelog_key(SOURCE, "items"), current_key(SOURCE, "items")}
    log = _latest(instance, changelog_key(SOURCE, "items"))
    assert log["rows_committed"] == 1 and log["snapshot"] is False
    assert log["dagster/row_count"] == 4  # 2 snapshot rows, an insert, an update
    assert _latest(instance, current_key(SOURCE, "items"))["dagster/row_count"] == 3


def test_a_reconciliation_in_progress_does_not_hold_back_outside_commits(
    mysql_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exact checks run for long on large tables, and report no materialization: commits made
    meanwhile outside Dagster are reported as usual, unlike during a run that writes."""
    conn = mysql_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO items VALUES (1), (2)")
    conn.commit()
    config_file = tmp_path / "lakehouse.toml"
    config_file.write_text(
        f'[lake]\nroot = "{tmp_path / "lake"}"\n\n'
        f'[[sources]]\nname = "{SOURCE}"\nkind = "mysql"\nhost = "{mysql_db.host}"\nport = {mysql_db.port}\n'
        f'user = "{mysql_db.cdc_user}"\npassword = "${{{password_env_var(SOURCE)}}}"\n'
        f'database = "{mysql_db.name}"\ntables = ["items"]\n'
    )
    monkeypatch.setenv(password_env_var(SOURCE), mysql_db.cdc_password.get_secret_value())
    defs = build_definitions(load_config(str(config_file)))
    instance = dg.DagsterInstance.ephemeral()
    started = dg.DagsterRunStatus.STARTED
    reconciling = instance.create_run_for_job(defs.resolve_job_def("reconcile_sources"), status=started)
    assert lakehouse(["--config", str(config_file), "sync", "--once"]) == 0
    assert {e.asset_key for e in _tick(defs, instance)} == {
        changelog_key(SOURCE, "items"),
        current_key(SOURCE, "items"),
    }
    instance.delete_run(reconciling.run_id)
    # A writing run in progress reports its own commits: the sensor leaves the source to it.
    instance.create_run_for_job(defs.resolve_job_def("micro_batches"), status=started)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items VALUES (3)")
    conn.commit()
    assert lakehouse(["--config", str(config_file), "sync", "--once"]) == 0
    assert _tick(defs, instance) == []
