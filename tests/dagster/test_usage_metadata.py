"""Each run's requests, bytes and estimated cost per table are in its Dagster metadata (S3 lake on moto)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from dagster_project.resources import password_env_var
from pipelines.config import parse_config
from tests.dagster.test_definitions import _setup, _source_job


def test_runs_report_their_s3_requests_bytes_and_cost_per_table(
    mysql_db: Any, s3_lake: Any, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup("mysql", mysql_db)
    name = "dg_usage"
    source = {"kind": "mysql", "name": name, "host": mysql_db.host, "port": mysql_db.port,
              "user": mysql_db.cdc_user, "database": mysql_db.name, "tables": ["items"]}  # fmt: skip
    lake = {
        "root": s3_lake.root,
        "catalog_uri": f"sqlite:///{tmp_path}/catalog.db",
        "s3": {"endpoint_url": moto_endpoint, "access_key_id": "testing", "secret_access_key": "testing"},
    }
    costs = {"worker": {"region": "eu-west-1"}, "endpoints": {"lake": {"region": "us-east-1"}}}
    config = parse_config({"lake": lake, "sources": [source], "costs": costs})
    monkeypatch.setenv(password_env_var(name), mysql_db.cdc_password.get_secret_value())
    monkeypatch.setenv("LAKEHOUSE_LAKE_AWS_SECRET_ACCESS_KEY", "testing")  # the secret travels as an EnvVar
    result = _source_job(build_definitions(config), name).execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    for node, key in ((f"{name}_changelog", "items_changelog"), (f"{name}_current", "items_current")):
        [meta] = [
            m.metadata for m in result.asset_materializations_for_node(node) if m.asset_key.path[-1] == key
        ]
        assert meta["s3_requests"].value > 0 and meta["s3_bytes_sent"].value > 0, (key, meta)
        # Cross-Region bytes and the requests, priced: more than the requests alone.
        requests_only = meta["s3_requests"].value * 0.005 / 1000
        assert meta["estimated_cost_usd"].value > requests_only / 10
        assert not any("items" in str(v.value) and k.startswith("s3") for k, v in meta.items())
    # A run that streams changes reads the binlog: its bytes (handshake included) are counted. (The
    # snapshot above read the table through the Arrow reader, whose native driver is not metered.)
    conn = mysql_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items VALUES (3, 'danish', 3.20)")
    conn.commit()
    job = _source_job(build_definitions(config), name)
    again = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    [meta] = [
        m.metadata
        for m in again.asset_materializations_for_node(f"{name}_changelog")
        if m.asset_key.path[-1] == "items_changelog"
    ]
    assert meta["rows_committed"].value == 1 and meta["source_bytes_read_by_run"].value > 0
