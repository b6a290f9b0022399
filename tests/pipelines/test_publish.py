"""`lakehouse publish` end to end on the local stack: the lake in Glue (moto), the views in Athena's
Glue, the schemas and views on Redshift (the Data API fake with its catalog) and the local DuckDB
warehouse over live MariaDB and PostgreSQL; then the same as Dagster assets whose checks pass."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.catalog.athena_views import AthenaNameError
from connectors.catalog.redshift_publish import RedshiftPublishError, offline_plan
from pipelines.capture.runner import sync_all
from pipelines.cli import main
from pipelines.config import ConfigError, LakehouseConfig, load_config, parse_config
from pipelines.publish.catalogs import open_warehouse, publish, publish_redshift
from tests.fakes.redshift_data import FakeRedshiftCatalog, FakeRedshiftData, RedshiftDataServer

ROLE = "arn:aws:iam::123456789012:role/lakehouse"
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "lakehouse.toml"
# Every secret the shipped configuration reads from the environment.
SHIPPED_SECRET_VARS = (
    "LAKEHOUSE_LAKE_AWS_SECRET_ACCESS_KEY",
    "LAKEHOUSE_AURORA_MYSQL_PASSWORD",
    "LAKEHOUSE_AURORA_MYSQL3_PASSWORD",
    "LAKEHOUSE_AURORA_POSTGRES_PASSWORD",
    "LAKEHOUSE_DEVICES_AWS_SECRET_ACCESS_KEY",
    "LAKEHOUSE_SYNONYMS_AWS_SECRET_ACCESS_KEY",
    "LAKEHOUSE_REDSHIFT_AWS_SECRET_ACCESS_KEY",
)


@pytest.fixture
def redshift() -> Iterator[tuple[FakeRedshiftData, str]]:
    fake = FakeRedshiftData(polls_to_finish=1, catalog=FakeRedshiftCatalog())
    with RedshiftDataServer(fake) as server:
        yield fake, server.endpoint_url


@pytest.fixture
def config(
    mysql_db: Any,
    pg_db: Any,
    tmp_path: Path,
    aws_client_kwargs: dict[str, str],
    redshift: tuple[FakeRedshiftData, str],
    monkeypatch: pytest.MonkeyPatch,
) -> LakehouseConfig:
    """Two live databases captured into a lake, with every publishing target configured."""
    my = mysql_db.admin_connect()
    with my.cursor() as cur:
        cur.execute(
            "CREATE TABLE patients (patient_id BIGINT PRIMARY KEY, tenant_id VARCHAR(20), email VARCHAR(100))"
        )
        cur.executemany(
            "INSERT INTO patients VALUES (%s, %s, %s)",
            [(i, f"t{i % 3}", f"p{i}@example.com") for i in range(1, 31)],
        )
    pg = pg_db.admin_connect()
    with pg.cursor() as cur:
        cur.execute("CREATE TABLE tenant_metadata (tenant_id text PRIMARY KEY, email text NOT NULL)")
        cur.executemany(
            "INSERT INTO tenant_metadata VALUES (%s, %s)", [(f"t{i}", f"ops{i}@t.example") for i in range(3)]
        )
    secrets = boto3.client("secretsmanager", **aws_client_kwargs)
    arns = {}
    for db in (mysql_db, pg_db):
        name = f"publish-test/{uuid.uuid4().hex[:8]}"
        secrets.create_secret(
            Name=name,
            SecretString=json.dumps(
                {"username": db.cdc_user, "password": db.cdc_password.get_secret_value()}
            ),
        )
        arns[db.kind] = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}"
    suffix = uuid.uuid4().hex[:6]
    my_source, pg_source = f"my_{suffix}", f"pg_{suffix}"
    monkeypatch.setenv("PUBLISH_TEST_MY_PW", mysql_db.cdc_password.get_secret_value())
    monkeypatch.setenv("PUBLISH_TEST_PG_PW", pg_db.cdc_password.get_secret_value())
    aws = {"access_key_id": "testing", "secret_access_key": "testing"}
    raw = {
        "lake": {"root": str(tmp_path / "lake"), "glue_endpoint_url": aws_client_kwargs["endpoint_url"], "s3": aws},
        "sources": [
            {"kind": "mysql", "name": my_source, "host": mysql_db.host, "port": mysql_db.port,
             "user": mysql_db.cdc_user, "password": "${PUBLISH_TEST_MY_PW}", "database": mysql_db.name,
             "tables": ["patients"]},
            {"kind": "postgres", "name": pg_source, "host": pg_db.host, "port": pg_db.port,
             "user": pg_db.cdc_user, "password": "${PUBLISH_TEST_PG_PW}", "database": pg_db.name,
             "tables": ["tenant_metadata"]},
        ],
        "redshift": {
            "target": {"cluster_identifier": "analytics", "database": "dev", "db_user": "publisher"},
            "aws": {"endpoint_url": redshift[1], "secrets_endpoint_url": aws_client_kwargs["endpoint_url"], **aws},
            "federated": [
                {"name": "health_live", "engine": "MYSQL", "database": mysql_db.name, "uri": mysql_db.host,
                 "port": mysql_db.port, "iam_role_arn": ROLE, "secret_arn": arns["mysql"]},
                {"name": "tenants_live", "engine": "POSTGRES", "database": pg_db.name, "schema_name": "public",
                 "uri": pg_db.host, "port": pg_db.port, "iam_role_arn": ROLE, "secret_arn": arns["postgres"]},
            ],
            "spectrum": [
                {"name": "lake_health", "glue_database": my_source, "iam_role_arn": ROLE},
                {"name": "lake_tenants", "glue_database": pg_source, "iam_role_arn": ROLE},
            ],
            "views": [
                {"schema": f"analytics_{suffix}", "name": "customer_contacts", "columns": ["tenant_id", "email"],
                 "sources": [
                     {"schema": "health_live", "table": "patients", "label": "mysql_live"},
                     {"schema": "lake_health", "table": f"{mysql_db.name}__patients", "label": "lake"},
                 ]},
                {"schema": f"analytics_{suffix}", "name": "lake_contacts", "columns": ["tenant_id", "email"],
                 "sources": [
                     {"schema": "lake_health", "table": f"{mysql_db.name}__patients", "label": "patients"},
                     {"schema": "lake_tenants", "table": "public__tenant_metadata", "label": "tenants"},
                 ]},
            ],
        },
    }  # fmt: skip
    cfg = parse_config(raw)
    for report in sync_all(cfg):
        assert report is not None
    return cfg


def _sections(report: Any) -> dict[str, str]:
    return dict(report.sections)


def test_publish_registers_publishes_and_builds_the_warehouse(
    config: LakehouseConfig, redshift: tuple[FakeRedshiftData, str], aws_client_kwargs: dict[str, str]
) -> None:
    fake, _ = redshift
    dry = publish(config, dry_run=True)
    sections = _sections(dry)
    assert list(sections) == [
        "Glue: change logs",
        "Glue: current state",
        "Athena views (Glue)",
        "Redshift",
        "Local warehouse (DuckDB)",
    ]
    assert "create_schema health_live" in sections["Redshift"]
    assert fake.catalog is not None and not fake.catalog.external_schemas  # the dry run changed nothing

    first = _sections(publish(config))
    assert "create_table" in first["Glue: change logs"] and "create_table" in first["Glue: current state"]
    assert set(fake.catalog.external_schemas) == {
        "health_live",
        "tenants_live",
        "lake_health",
        "lake_tenants",
    }
    views = config.redshift.views
    assert {(v.schema_, v.name) for v in views} <= set(fake.catalog.views)
    glue = boto3.client("glue", **aws_client_kwargs)
    lake_view = glue.get_table(DatabaseName=views[1].schema_, Name="lake_contacts")["Table"]
    assert lake_view["TableType"] == "VIRTUAL_VIEW"
    assert "health_live" in first["Athena views (Glue)"]  # the view over live MySQL is skipped, with why

    second = _sections(publish(config))
    assert (
        second["Glue: change logs"]
        == second["Glue: current state"]
        == second["Redshift"]
        == "nothing to change"
    )

    schema = views[0].schema_
    con = open_warehouse(config)
    try:
        counts = dict(
            con.sql(f"SELECT source, count(*) FROM {schema}.customer_contacts GROUP BY 1").fetchall()
        )
        lake_counts = dict(
            con.sql(f"SELECT source, count(*) FROM {schema}.lake_contacts GROUP BY 1").fetchall()
        )
    finally:
        con.close()
    assert counts == {"mysql_live": 30, "lake": 30}
    assert lake_counts == {"patients": 30, "tenants": 3}


def test_cli_dry_run_prints_the_plan(
    config: LakehouseConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("pipelines.cli.load_config", lambda path: config)
    assert main(["publish", "--dry-run", "--only", "redshift", "--only", "warehouse"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan (dry run), nothing changed")
    assert 'CREATE EXTERNAL SCHEMA IF NOT EXISTS "tenants_live" FROM POSTGRES' in out
    assert "would attach MYSQL" in out and "== Glue" not in out
    for secret in (config.sources[0].password, config.sources[1].password):  # type: ignore[union-attr]
        assert secret.get_secret_value() not in out


def test_dagster_assets_publish_and_their_checks_pass(config: LakehouseConfig) -> None:
    import dagster as dg

    from dagster_project.catalog_assets import REDSHIFT_KEY, WAREHOUSE_KEY, build_catalog_definitions

    assets, checks = build_catalog_definitions(config)
    defs = dg.Definitions(assets=assets, asset_checks=checks)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {
        "glue_matches_lake": True,
        "glue_current_matches_lake": True,
        "athena_views_match_declaration": True,
        "redshift_matches_declaration": True,
        "views_answer": True,
    }
    redshift = result.asset_materializations_for_node("analytics__redshift_schemas_and_views")[0].metadata
    assert "create_schema health_live" in str(redshift["applied_plan"].value)
    assert redshift["changes_applied"].value == 6
    warehouse = result.asset_materializations_for_node("analytics__local_warehouse")[0].metadata
    schema = config.redshift.views[0].schema_
    assert warehouse["view_rows"].value == {f"{schema}.customer_contacts": 60, f"{schema}.lake_contacts": 33}
    assert REDSHIFT_KEY in {k for a in assets for k in a.keys} and WAREHOUSE_KEY in {
        k for a in assets for k in a.keys
    }


def test_tables_and_sources_dropped_from_the_config_are_reported_not_dropped(
    config: LakehouseConfig, mysql_db: Any, aws_client_kwargs: dict[str, str]
) -> None:
    my_source, pg_source = config.sources
    with mysql_db.admin_connect().cursor() as cur:
        cur.execute("CREATE TABLE visits (id BIGINT PRIMARY KEY, note VARCHAR(20))")
        cur.execute("INSERT INTO visits VALUES (1, 'a'), (2, 'b')")
    wider = config.model_copy(
        update={"sources": (my_source.model_copy(update={"tables": ("patients", "visits")}), pg_source)}
    )
    sync_all(wider)
    publish(wider, parts=["glue"])
    glue = boto3.client("glue", **aws_client_kwargs)
    visits = f"{mysql_db.name}__visits"
    assert glue.get_table(DatabaseName=f"{my_source.name}_changelog", Name=visits)
    assert glue.get_table(DatabaseName=my_source.name, Name=visits)

    # `visits` leaves the configuration, and so does the whole PostgreSQL source.
    narrower = config.model_copy(update={"sources": (my_source,)})
    sections = _sections(publish(narrower, parts=["glue"]))
    changelogs, current = sections["Glue: change logs"], sections["Glue: current state"]
    assert f"orphan_table {my_source.name}_changelog.{visits}: the source table is no longer" in changelogs
    assert f"orphan_table {my_source.name}.{visits}: the source table is no longer" in current
    assert (
        f"orphan_table {pg_source.name}_changelog.public__tenant_metadata: source '{pg_source.name}'"
        in changelogs
    )
    assert f"orphan_table {pg_source.name}.public__tenant_metadata: source '{pg_source.name}'" in changelogs
    assert "create_" not in changelogs + current and "update_" not in changelogs + current
    # Nothing was dropped.
    assert glue.get_table(DatabaseName=f"{my_source.name}_changelog", Name=visits)
    assert glue.get_table(DatabaseName=pg_source.name, Name="public__tenant_metadata")


# -- without the live stack's databases ------------------------------------------------------------


def _no_aws(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"an AWS client was made: {args}")


def test_dry_run_without_a_cluster_prints_the_whole_redshift_ddl_offline(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {var: f"s3cr3t-{uuid.uuid4().hex}" for var in SHIPPED_SECRET_VARS}
    for var, value in secrets.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr("pipelines.publish.catalogs.boto3.client", _no_aws)  # offline: no cluster, no AWS
    config = load_config(SHIPPED_CONFIG)
    redshift = config.redshift
    assert redshift.target is None and redshift.federated and redshift.spectrum and redshift.views

    caplog.set_level("DEBUG")
    assert main(["-v", "--config", str(SHIPPED_CONFIG), "publish", "--dry-run", "--only", "redshift"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan (dry run), nothing changed\n== Redshift DDL (no [redshift.target]")
    statements = [line for line in out.splitlines()[2:] if not line.startswith("-- ")]
    assert statements == [f"{sql};" for sql in offline_plan(redshift).statements]
    for schema in (*redshift.federated, *redshift.spectrum):
        assert f'CREATE EXTERNAL SCHEMA IF NOT EXISTS "{schema.name}" FROM ' in out
    for view in redshift.views:
        assert f'CREATE OR REPLACE VIEW "{view.schema_}"."{view.name}" AS SELECT' in out
    for federated in redshift.federated:
        assert f"SECRET_ARN '{federated.secret_arn}'" in out  # secrets by their ARN only
    for value in secrets.values():
        assert value not in out and value not in caplog.text

    # Publishing for real with no cluster says so instead of printing nothing.
    assert main(["--config", str(SHIPPED_CONFIG), "publish", "--only", "redshift"]) == 0
    assert "no [redshift.target]: nothing published" in capsys.readouterr().out


def _redshift_only(tmp_path: Path, **target: Any) -> dict[str, Any]:
    return {
        "lake": {"root": str(tmp_path / "lake")},
        "redshift": {
            "target": {
                "cluster_identifier": "analytics",
                "database": "dev",
                "db_user": "publisher",
                **target,
            },
            "aws": {"access_key_id": "testing", "secret_access_key": "testing"},
            "spectrum": [{"name": "lake_health", "glue_database": "aurora_mysql", "iam_role_arn": ROLE}],
        },
    }


@pytest.mark.timeout(60)  # with the old hard-coded 300 s this would wait five minutes
def test_statement_timeout_comes_from_the_redshift_target(tmp_path: Path) -> None:
    fake = FakeRedshiftData(polls_to_finish=1, catalog=FakeRedshiftCatalog())
    fake.stall_when(r"svv_external_schemas")
    raw = _redshift_only(tmp_path, statement_timeout_seconds="${PUBLISH_TEST_TIMEOUT:-0.2}")
    with RedshiftDataServer(fake) as server:
        raw["redshift"]["aws"]["endpoint_url"] = server.endpoint_url
        config = parse_config(raw)
        assert config.redshift.target is not None and config.redshift.target.statement_timeout_seconds == 0.2
        with pytest.raises(
            RedshiftPublishError, match=r"after 0\.2s \(redshift\.target\.statement_timeout_seconds\)"
        ):
            publish_redshift(config, dry_run=True)
    assert fake.calls[-1] == "CancelStatement"
    assert parse_config(_redshift_only(tmp_path)).redshift.target.statement_timeout_seconds == 300  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("bad", "why"),
    [(0, "greater than 0"), (-5, "greater than 0"), ("never", "valid number"), (True, "positive number")],
)
def test_a_bad_statement_timeout_names_the_field(tmp_path: Path, bad: Any, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"redshift\.target\.statement_timeout_seconds: .*{why}"):
        parse_config(_redshift_only(tmp_path, statement_timeout_seconds=bad))


def test_a_name_athena_cannot_query_stops_publish_before_anything_changes(
    tmp_path: Path,
    aws_client_kwargs: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = {
        "lake": {"root": str(tmp_path / "lake"), "glue_endpoint_url": aws_client_kwargs["endpoint_url"],
                 "s3": {"access_key_id": "testing", "secret_access_key": "testing"}},
        "redshift": {
            "spectrum": [{"name": "lake_health", "glue_database": "aurora_mysql", "iam_role_arn": ROLE}],
            "views": [{"schema": "Analytics", "name": "lake contacts", "columns": ["email"],
                       "sources": [{"schema": "lake_health", "table": "health__patients", "label": "lake"}]}],
        },
    }  # fmt: skip
    config = parse_config(raw)
    published: list[str] = []
    monkeypatch.setattr("pipelines.publish.catalogs.publish_changelogs", lambda *a, **k: published.append("glue"))
    with pytest.raises(AthenaNameError):
        publish(config, dry_run=False)
    assert published == []  # refused before the Glue step ran

    monkeypatch.setattr("pipelines.cli.load_config", lambda path: config)
    assert main(["publish", "--dry-run", "--only", "athena"]) == 2
    err = capsys.readouterr().err
    assert "redshift.views[0].schema: 'Analytics' is not a name Athena can query (use 'analytics')" in err
    assert (
        "redshift.views[0].name: 'lake contacts' is not a name Athena can query (use 'lake_contacts')" in err
    )
    assert "lower-case letters, digits and underscores" in err
