"""Dagster wiring: the definitions load, and each asset group materializes with passing checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from connectors.lake.lake import Lake
from dagster_project.definitions import build_definitions
from dagster_project.resources import password_env_var
from pipelines.config import load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_configuration_loads_as_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    defs = build_definitions(load_config(REPO / "lakehouse.toml"))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "aurora_mysql/patients_changelog" in keys
    assert "aurora_mysql/SynonymsTable_current" in keys
    assert "aurora_postgres/tenant_metadata_current" in keys
    # Publishing: Glue on moto, Athena views, and the local warehouse (no Redshift target locally).
    assert {"catalog/glue_changelogs", "catalog/glue_current_state", "catalog/athena_views"} <= keys
    assert "analytics/local_warehouse" in keys and "analytics/redshift_schemas_and_views" not in keys
    checks = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert ("aurora_mysql/patients_changelog", "lag_behind_source") in checks
    assert ("aurora_postgres/care_providers_current", "no_duplicate_keys") in checks
    assert ("aurora_postgres/care_providers_current", "rows_match_source") in checks
    assert ("analytics/local_warehouse", "views_answer") in checks
    assert defs.resolve_job_def("micro_batches") is not None
    assert defs.resolve_job_def("reconcile_sources") is not None
    assert [s.name for s in defs.schedules or []] == ["every_minute", "nightly_reconciliation"]
    by_table = {f"{s.name}_tables_changed" for s in load_config(REPO / "lakehouse.toml").sources}
    assert {s.name for s in defs.sensors or []} == {
        "lake_commits",
        "stream_positions",
        "synonyms_changed",
        *by_table,
    }
    # Reporting outside commits launches nothing, so it is on from the start.
    assert defs.resolve_sensor_def("lake_commits").default_status == dg.DefaultSensorStatus.RUNNING


def test_graph_nodes_name_their_table_and_every_asset_and_check_says_what_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    graph = build_definitions(load_config(REPO / "lakehouse.toml")).resolve_asset_graph()
    nodes = [graph.get(k) for k in graph.get_all_asset_keys()]
    # The lineage graph labels a node with its key's last component: unique per group, and it names
    # the table (`patients_changelog`), not only what kind of asset it is.
    labels: dict[tuple[str | None, str], str] = {}
    for node in nodes:
        label = node.key.path[-1]
        assert (node.group_name, label) not in labels, f"{node.key} and {labels[(node.group_name, label)]}"
        labels[(node.group_name, label)] = node.key.to_user_string()
    assert ("aurora_mysql", "patients_changelog") in labels and ("devices", "device_events_current") in labels
    assert not [n.key for n in nodes if not n.description]
    assert not [k for k in graph.asset_check_keys if not graph.get_check_spec(k).description]


def test_read_only_checks_run_on_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The UI offers "Execute" for a check whose execution set is the check alone."""
    monkeypatch.chdir(REPO)
    graph = build_definitions(load_config(REPO / "lakehouse.toml")).resolve_asset_graph()
    tied = {
        (k.asset_key.to_user_string(), k.name)
        for k in graph.asset_check_keys
        if len(graph.get_execution_set_asset_and_check_keys(k)) > 1
    }
    # Only the check that compares one run's reads with its commits is part of that run.
    assert {name for _, name in tied} == {"records_read_match_committed"}


def test_kinds_and_groups_tell_where_things_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    local = build_definitions(load_config(REPO / "lakehouse.toml")).resolve_asset_graph()
    log = local.get(dg.AssetKey(["aurora_mysql", "patients_changelog"]))
    assert log.kinds == {"mysql", "parquet"}  # a local lake: no `s3`
    assert local.get(dg.AssetKey(["devices", "device_events_changelog"])).kinds == {"dynamodb", "parquet"}
    assert local.get(dg.AssetKey(["aurora_mysql", "patients_current"])).kinds == {"iceberg"}
    assert local.get(dg.AssetKey(["analytics", "local_warehouse"])).group_name == "analytics"
    assert local.get(dg.AssetKey(["catalog", "glue_changelogs"])).group_name == "catalog"
    on_s3 = build_definitions(
        parse_config(
            {
                "lake": {"root": "s3://bucket/lake"},
                "sources": [
                    {
                        "kind": "postgres",
                        "name": "p",
                        "port": 1,
                        "user": "u",
                        "database": "d",
                        "tables": ["t"],
                    }
                ],
            }
        )
    ).resolve_asset_graph()
    assert on_s3.get(dg.AssetKey(["p", "t_changelog"])).kinds == {"postgres", "parquet", "s3"}
    assert on_s3.get(dg.AssetKey(["p", "t_current"])).kinds == {"iceberg", "s3"}


def test_micro_batches_runs_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    job = build_definitions(load_config(REPO / "lakehouse.toml")).resolve_job_def("micro_batches")
    assert job.executor_def is dg.in_process_executor
    assert not any(
        key.path[0] in {"catalog", "analytics", "search"} for key in job.asset_layer.executable_asset_keys
    )


def test_passwords_never_reach_resource_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(password_env_var("m"), "s3cr3t-value")
    config = parse_config(
        {
            "sources": [
                {"kind": "mysql", "name": "m", "port": 1, "user": "u", "database": "d", "tables": ["t"]}
            ]
        }
    )
    defs = build_definitions(config)
    resource = defs.resources["source_m"]  # type: ignore[index]
    assert "s3cr3t-value" not in repr(resource)


def _source_job(defs: dg.Definitions, source: str) -> dg.JobDefinition:
    """Every asset and check of a source's group (not its table partitions, in `<source>_by_table`)."""
    graph = defs.resolve_asset_graph()
    keys = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name == source}
    checks = {c for c in graph.asset_check_keys if c.asset_key in keys}
    return defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=keys, asset_check_selection=checks
    )


def _setup(kind: str, db: Any) -> None:
    conn = db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50), price DECIMAL(8,2))")
        cur.execute("INSERT INTO items VALUES (1, 'tennis shoe', 59.90), (2, 'croissant', 2.10)")
    if kind == "mysql":
        conn.commit()


@pytest.mark.parametrize("kind", ["mysql", "postgres"])
def test_each_asset_group_materializes_with_metadata_and_passing_checks(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = request.getfixturevalue("mysql_db" if kind == "mysql" else "pg_db")
    _setup(kind, db)
    name = f"dg_{kind}"
    source: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "host": db.host,
        "port": db.port,
        "user": db.cdc_user,
        "database": db.name,
        "tables": ["items"],
    }
    config = parse_config({"lake": {"root": str(tmp_path / "lake")}, "sources": [source]})
    monkeypatch.setenv(password_env_var(name), db.cdc_password.get_secret_value())
    defs = build_definitions(config)
    job = _source_job(defs, name)
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    mats = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.asset_materializations_for_node(f"{name}_changelog")
    }
    meta = mats[f"{name}/items_changelog"]
    assert meta["rows_committed"].value == 2 and meta["snapshot"].value is True
    assert meta["dagster/row_count"].value == 2
    assert {"Op", "id", "name", "price"} <= {c.name for c in meta["dagster/column_schema"].schema.columns}
    lake_table = f"{db.name if kind == 'mysql' else 'public'}__items".lower()
    assert meta["dagster/uri"].value == (tmp_path / "lake" / "changelog" / name / lake_table).as_uri()
    assert meta["position_after"].value and "{" not in meta["position_after"].value
    current = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.asset_materializations_for_node(f"{name}_current")
    }
    assert current[f"{name}/items_current"]["dagster/row_count"].value == 2
    columns = [c.name for c in current[f"{name}/items_current"]["dagster/column_schema"].schema.columns]
    assert columns[:3] == ["id", "name", "price"]
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()
    }
    assert evaluations == {
        (f"{name}/items_changelog", "lag_behind_source"): True,
        (f"{name}/items_current", "rows_near_source_estimate"): True,
        (f"{name}/items_current", "no_duplicate_keys"): True,
        (f"{name}/items_current", "rows_match_source"): True,
    }
    # Each check also runs on its own, without materializing anything.
    checks_only = job.get_subset(
        asset_selection=set(),
        asset_check_selection={dg.AssetCheckKey(dg.AssetKey([name, "items_current"]), "no_duplicate_keys")},
    ).execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert checks_only.success and not checks_only.get_asset_materialization_events()
    assert [(e.check_name, e.passed) for e in checks_only.get_asset_check_evaluations()] == [
        ("no_duplicate_keys", True)
    ]
    # While another process writes the source (a lease taken as `lakehouse stream` takes it), a
    # run is refused with a message naming it, and commits nothing.
    lake = Lake(config.lake)
    holder = lake.lease(name, "lakehouse stream")
    holder.acquire()
    try:
        before = lake.commit_log(name).latest_seq()
        refused = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        assert not refused.success
        [failure] = [e for e in refused.all_events if e.is_step_failure]
        error = failure.step_failure_data.error.to_string()  # type: ignore[union-attr]
        assert "LeaseHeldError" in error and "is being written by lakehouse stream on" in error
        assert lake.commit_log(name).latest_seq() == before
    finally:
        holder.release()
    os.environ.pop(password_env_var(name), None)


def test_the_dynamodb_asset_group_materializes_with_shard_metadata_and_checks(
    aws_client_kwargs: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from dagster_project.resources import aws_secret_env_var
    from tests.ddb_support import create_table

    client = boto3.client("dynamodb", **aws_client_kwargs)
    table = f"dg_{os.urandom(5).hex()}"
    create_table(client, table)
    for i in range(3):
        client.put_item(TableName=table, Item={"pk": {"S": f"p{i}"}, "sk": {"N": str(i)}, "bpm": {"N": "61"}})
    source = {
        "kind": "dynamodb",
        "name": "dg_devices",
        "tables": [table],
        "aws": {
            "endpoint_url": aws_client_kwargs["endpoint_url"],
            "access_key_id": "testing",
            "secret_access_key": "x",
        },
    }
    config = parse_config({"lake": {"root": str(tmp_path / "lake")}, "sources": [source]})
    monkeypatch.setenv(aws_secret_env_var("dg_devices"), "moto-takes-any-s3cr3t")
    defs = build_definitions(config)
    assert "s3cr3t" not in repr(defs.resources["source_dg_devices"])  # type: ignore[index]
    job = _source_job(defs, "dg_devices")
    for _ in range(2):  # the snapshot, then a stream run after one more change
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
        assert result.success
        client.put_item(TableName=table, Item={"pk": {"S": "p9"}, "sk": {"N": "9"}, "bpm": {"N": "99"}})
    mats = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.asset_materializations_for_node("dg_devices_changelog")
    }
    meta = mats[f"dg_devices/{table}_changelog"]
    assert meta["snapshot"].value is False and meta["open_shards"].value == 1
    assert meta["position_after"].value == "1 shard: 1 open, 0 finished"
    assert "shardId-00000001541626099285-f35f62ef" in meta["shard_positions"].value
    assert meta["source_lag_seconds_at_commit"].value >= 0
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()
    }
    assert {k: e.passed for k, e in evaluations.items()} == {
        (f"dg_devices/{table}_changelog", "records_read_match_committed"): True,
        (f"dg_devices/{table}_changelog", "shard_lag"): True,
        (f"dg_devices/{table}_current", "rows_near_source_estimate"): True,
        (f"dg_devices/{table}_current", "no_duplicate_keys"): True,
        (f"dg_devices/{table}_current", "rows_match_source"): True,
    }
    lag = evaluations[(f"dg_devices/{table}_changelog", "shard_lag")].metadata
    assert lag["max_lag_seconds_allowed"].value == 300.0 and lag["worst_shard_lag_seconds"].value >= 0
    read = evaluations[(f"dg_devices/{table}_changelog", "records_read_match_committed")].metadata
    assert (
        read["records_read"].value == read["rows_committed"].value + read["records_in_snapshot_already"].value
    )


def test_a_replay_source_gets_assets_but_no_source_count_check(tmp_path: Path) -> None:
    config = parse_config(
        {
            "lake": {"root": str(tmp_path / "lake")},
            "sources": [
                {
                    "kind": "dynamodb_replay",
                    "name": "archive",
                    "location": str(tmp_path),
                    "tables": {"device_events": "patient_id:N,event_time:S"},
                }
            ],
        }
    )
    graph = build_definitions(config).resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "archive/device_events_changelog",
        "archive/device_events_current",
        "archive/current_state",  # its table as a partition (no `snapshot`: files cannot be re-read)
        "streams/archive",
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("archive/device_events_current", "no_duplicate_keys") in checks
    assert not any(name in {"rows_match_source", "rows_near_source_estimate"} for _, name in checks)
