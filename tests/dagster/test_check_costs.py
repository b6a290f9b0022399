"""What the per-minute checks cost the sources, and what the reconciliation still catches.

`micro_batches` (every minute) must not read a source table to check it: no COUNT(*), no
DynamoDB Scan. Each test proves it on the real server with what the server itself records (MySQL's
statement digests, PostgreSQL's per-table scan counters) or with every AWS call made, and shows
with the reconciliation job that the same measure does see an exact count. The event log of
those runs holds no value of a personal-data column.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from dagster_project.resources import aws_secret_env_var, password_env_var
from pipelines.config import parse_config

# Values of personal-data columns: none may appear anywhere in a run's event log.
PERSONAL = {
    "full_name": ["Quartermaine Ylfa", "Obadiah Strunk", "Marisol Tenbury"],
    "email": ["qylfa-4411@example.invalid", "ostrunk-0932@example.invalid", "mtenb-7720@example.invalid"],
}


def _config(kind: str, db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> Any:
    name = f"dg_cost_{os.urandom(3).hex()}"  # the MySQL replica server id derives from the name
    source = {
        "kind": kind,
        "name": name,
        "host": db.host,
        "port": db.port,
        "user": db.cdc_user,
        "database": db.name,
        "tables": ["patients"],
        **extra,
    }
    monkeypatch.setenv(password_env_var(name), db.cdc_password.get_secret_value())
    return parse_config({"lake": {"root": str(tmp_path / "lake")}, "sources": [source]})


def _create_patients(db: Any) -> Any:
    conn = db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE patients (id INT PRIMARY KEY, full_name VARCHAR(80), email VARCHAR(80))")
        for i, (name, email) in enumerate(zip(PERSONAL["full_name"], PERSONAL["email"], strict=True)):
            cur.execute(f"INSERT INTO patients VALUES ({i + 1}, '{name}', '{email}')")
    if db.kind == "mysql":
        conn.commit()
    return conn


def _run(defs: dg.Definitions, job: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(job).execute_in_process(instance=instance)
    assert result.success
    return result


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _assert_no_personal_data(instance: dg.DagsterInstance) -> None:
    """Nothing any run recorded (materializations, check results, logs) holds a personal value."""
    runs = instance.get_runs()
    assert runs
    for run in runs:
        for entry in instance.all_logs(run.run_id):
            text = dg.serialize_value(entry)
            for value in PERSONAL["full_name"] + PERSONAL["email"]:
                assert value not in text, f"{value!r} in the event log of run {run.job_name}"


# --- MySQL (the MySQL 9.7 server: performance_schema records every statement's digest) -----------


def _count_digests(db: Any) -> dict[str, int]:
    """Executions per normalised statement that counted rows, run with the test database as default."""
    conn = db.admin_connect()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT DIGEST_TEXT, COUNT_STAR FROM performance_schema.events_statements_summary_by_digest"
            " WHERE SCHEMA_NAME = %s",
            (db.name,),
        )
        rows = cur.fetchall()
    return {text: int(n) for text, n in rows if text and re.search(r"\bCOUNT\s*\(", text, re.IGNORECASE)}


def test_mysql_per_minute_checks_count_nothing_and_reconciliation_catches_a_lost_row(
    mysql8_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = _create_patients(mysql8_db)
    with admin.cursor() as cur:
        cur.execute("ANALYZE TABLE patients")  # fresh InnoDB statistics for the estimate
    config = _config("mysql", mysql8_db, tmp_path, monkeypatch)
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    before = _count_digests(mysql8_db)

    minute = _run(defs, "micro_batches", instance)  # snapshot, merge and the per-minute checks
    checks = _evaluations(minute)
    assert set(checks) == {"lag_behind_source", "rows_near_source_estimate"}
    assert all(e.passed for e in checks.values())
    estimate = checks["rows_near_source_estimate"].metadata
    assert estimate["lake_rows"].value == 3 and estimate["source_rows_estimate"].value == 3
    assert estimate["estimate_from"].value == "information_schema.TABLES.TABLE_ROWS"
    assert _count_digests(mysql8_db) == before, "the per-minute job counted rows on the source"

    exact = _evaluations(_run(defs, "reconcile_sources", instance))
    assert set(exact) == {"no_duplicate_keys", "rows_match_source"}
    assert exact["rows_match_source"].passed and exact["rows_match_source"].metadata["source_rows"].value == 3
    counted = _count_digests(mysql8_db)
    assert counted != before and any("patients" in text for text in counted)  # the measure sees counts

    # A row lost without a trace in the binlog: capture cannot see it, the estimate's tolerance
    # hides it, only the exact reconciliation catches it.
    with admin.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute("DELETE FROM patients WHERE id = 2")
    admin.commit()
    assert all(e.passed for e in _evaluations(_run(defs, "micro_batches", instance)).values())
    mismatch = _evaluations(_run(defs, "reconcile_sources", instance))["rows_match_source"]
    assert not mismatch.passed and mismatch.severity == dg.AssetCheckSeverity.WARN
    assert (mismatch.metadata["lake_rows"].value, mismatch.metadata["source_rows"].value) == (3, 2)
    _assert_no_personal_data(instance)


def test_exact_counts_run_on_the_reader_endpoint(
    mysql_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `reader_host` set, the reconciliation never touches `host` (here, after capture: a
    name that does not resolve)."""
    _create_patients(mysql_db)
    config = _config("mysql", mysql_db, tmp_path, monkeypatch, reader_host=mysql_db.host)
    instance = dg.DagsterInstance.ephemeral()
    _run(build_definitions(config), "micro_batches", instance)
    writer_gone = config.sources[0].model_copy(update={"host": "writer.invalid"})
    defs = build_definitions(config.model_copy(update={"sources": (writer_gone,)}))
    exact = _evaluations(_run(defs, "reconcile_sources", instance))["rows_match_source"]
    assert exact.passed and exact.metadata["counted_on"].value == "reader endpoint"
    assert exact.metadata["source_rows"].value == 3


# --- PostgreSQL (pg_stat_user_tables counts every scan of the table) -----------------------------


def _table_scans(db: Any, admin: Any, table: str = "patients") -> int:
    with admin.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")  # read the counters as they are now
        cur.execute(
            "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = %s", (table,)
        )
        return int(cur.fetchone()[0])


def _wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_postgres_per_minute_checks_scan_no_table(
    pg_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = _create_patients(pg_db)
    config = _config("postgres", pg_db, tmp_path, monkeypatch)
    defs = build_definitions(config)
    instance = dg.DagsterInstance.ephemeral()
    first = _evaluations(_run(defs, "micro_batches", instance))  # the snapshot reads the table
    # Never analyzed: PostgreSQL has no estimate yet, and the check says so instead of counting.
    assert first["rows_near_source_estimate"].passed
    assert first["rows_near_source_estimate"].metadata["source_rows_estimate"].value == -1
    with admin.cursor() as cur:
        cur.execute("ANALYZE patients")
    time.sleep(1.0)  # backends report their table counters when idle or gone (at most 1 s later)
    before = _table_scans(pg_db, admin)

    minute = _evaluations(_run(defs, "micro_batches", instance))  # a stream run: reads the slot only
    assert all(e.passed for e in minute.values())
    estimate = minute["rows_near_source_estimate"].metadata
    assert (estimate["lake_rows"].value, estimate["source_rows_estimate"].value) == (3, 3)
    time.sleep(1.5)
    assert _table_scans(pg_db, admin) == before, "the per-minute job scanned the source table"

    exact = _evaluations(_run(defs, "reconcile_sources", instance))
    assert exact["rows_match_source"].passed
    assert _wait_for(lambda: _table_scans(pg_db, admin) > before), "the measure does not see a count"
    _assert_no_personal_data(instance)


# --- DynamoDB (every AWS call made in this process is recorded) ----------------------------------


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Names of the AWS operations called from now on (e.g. 'dynamodb.Scan')."""
    import botocore.client

    calls: list[str] = []
    original = botocore.client.BaseClient._make_api_call

    def recording(self: Any, operation: str, params: Any) -> Any:
        calls.append(f"{self.meta.service_model.endpoint_prefix}.{operation}")
        return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    yield calls


def test_dynamodb_per_minute_checks_never_scan(
    aws_client_kwargs: dict[str, str], aws_calls: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from tests.ddb_support import create_table

    client = boto3.client("dynamodb", **aws_client_kwargs)
    table = f"dg_cost_{os.urandom(5).hex()}"
    create_table(client, table)
    client.batch_write_item(
        RequestItems={
            table: [{"PutRequest": {"Item": {"pk": {"S": f"p{i}"}, "sk": {"N": str(i)}}}} for i in range(5)]
        }
    )
    source = {
        "kind": "dynamodb",
        "name": "dg_cost_devices",
        "tables": [table],
        "aws": {
            "endpoint_url": aws_client_kwargs["endpoint_url"],
            "access_key_id": "testing",
            "secret_access_key": "x",
        },
    }
    monkeypatch.setenv(aws_secret_env_var("dg_cost_devices"), "moto-takes-any-key")
    defs = build_definitions(parse_config({"lake": {"root": str(tmp_path / "lake")}, "sources": [source]}))
    instance = dg.DagsterInstance.ephemeral()
    _run(defs, "micro_batches", instance)  # the snapshot scans the table once
    aws_calls.clear()

    minute = _evaluations(_run(defs, "micro_batches", instance))
    assert all(e.passed for e in minute.values())
    estimate = minute["rows_near_source_estimate"].metadata
    assert (estimate["lake_rows"].value, estimate["source_rows_estimate"].value) == (5, 5)
    assert "dynamodb.Scan" not in aws_calls and "dynamodb.DescribeTable" in aws_calls

    exact = _evaluations(_run(defs, "reconcile_sources", instance))
    assert exact["rows_match_source"].passed and exact["rows_match_source"].metadata["source_rows"].value == 5
    assert "dynamodb.Scan" in aws_calls
