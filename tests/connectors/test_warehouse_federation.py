"""The Redshift declarations executed in the local DuckDB warehouse: live MariaDB and PostgreSQL
attached as federated schemas with credentials from Secrets Manager (moto), the lake as a Spectrum
schema, and a cross-source view, checked against counts taken from the sources directly."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.catalog.redshift_config import FederatedSchema, RedshiftConfig, SpectrumSchema, UnionView
from connectors.catalog.warehouse import WarehouseError, connect, register_lake
from connectors.catalog.warehouse_federation import (
    apply_declarations,
    attach_federated,
    create_spectrum_schema,
)
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from pipelines.capture.runner import sync_source
from pipelines.capture.sources import open_source

ROLE = "arn:aws:iam::123456789012:role/federated"


def _secret_arn(name: str) -> str:
    # A partial ARN (no random suffix), as operators often write it; Secrets Manager resolves it.
    return f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}"


@pytest.fixture
def secrets(aws_client_kwargs: dict[str, str]) -> Any:
    return boto3.client("secretsmanager", **aws_client_kwargs)


def _store(secrets: Any, value: str) -> str:
    name = f"lakehouse-test/{uuid.uuid4().hex[:8]}"
    secrets.create_secret(Name=name, SecretString=value)
    return _secret_arn(name)


def _credentials(db: Any) -> str:
    return json.dumps({"username": db.cdc_user, "password": db.cdc_password.get_secret_value()})


@pytest.fixture
def world(mysql_db: Any, pg_db: Any, secrets: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Contacts in MariaDB (also synced into a lake) and tenants in PostgreSQL, plus declarations."""
    my = mysql_db.admin_connect()
    with my.cursor() as cur:
        cur.execute(
            "CREATE TABLE patients (patient_id BIGINT PRIMARY KEY, tenant_id VARCHAR(20), email VARCHAR(100))"
        )
        cur.executemany(
            "INSERT INTO patients VALUES (%s, %s, %s)",
            [(i, f"t{i % 3}", f"p{i}@example.com" if i % 4 else None) for i in range(1, 26)],
        )
    pg = pg_db.admin_connect()
    with pg.cursor() as cur:
        cur.execute("CREATE TABLE tenant_metadata (tenant_id text PRIMARY KEY, email text NOT NULL)")
        cur.executemany(
            "INSERT INTO tenant_metadata VALUES (%s, %s)",
            [(f"t{i}", f"ops{i}@tenant.example") for i in range(3)],
        )
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    source_config = MySQLSourceConfig(
        name="aurora_mysql", host=mysql_db.host, port=mysql_db.port, user=mysql_db.cdc_user,
        password=mysql_db.cdc_password, database=mysql_db.name, tables=("patients",), server_id=0,
    )  # fmt: skip
    source = open_source(source_config)
    try:
        sync_source(lake, source)
    finally:
        source.close()
    health = FederatedSchema(
        name="health_live", engine="MYSQL", database=mysql_db.name, uri=mysql_db.host, port=mysql_db.port,
        iam_role_arn=ROLE, secret_arn=_store(secrets, _credentials(mysql_db)),
    )  # fmt: skip
    tenants = FederatedSchema(
        name="tenants_live", engine="POSTGRES", database=pg_db.name, schema_name="public", uri=pg_db.host,
        port=pg_db.port, iam_role_arn=ROLE, secret_arn=_store(secrets, _credentials(pg_db)),
    )  # fmt: skip
    lake_table = f"{mysql_db.name}__patients"
    view = UnionView.model_validate(
        {
            "schema": "analytics",
            "name": "customer_contacts",
            "columns": ["tenant_id", "email"],
            "sources": [
                {"schema": "health_live", "table": "patients", "label": "mysql_live"},
                {"schema": "tenants_live", "table": "tenant_metadata", "label": "postgres_live"},
                {"schema": "lake_health", "table": lake_table, "label": "lake"},
            ],
        }
    )
    config = RedshiftConfig(
        federated=(health, tenants),
        spectrum=(SpectrumSchema(name="lake_health", glue_database="aurora_mysql", iam_role_arn=ROLE),),
        views=(view,),
    )
    con = connect(str(tmp_path / "warehouse.duckdb"), federation=True)
    register_lake(con, lake, ["aurora_mysql"])
    yield {"con": con, "config": config, "my": my, "pg": pg, "lake_table": lake_table, "mysql_db": mysql_db}
    con.close()


def _counts(con: Any) -> dict[str, int]:
    rows = con.sql("SELECT source, count(*) FROM analytics.customer_contacts GROUP BY 1").fetchall()
    return dict(rows)


def _source_count(conn: Any, sql: str) -> int:
    with conn.cursor() as cur:
        cur.execute(sql)
        return int(cur.fetchone()[0])


def test_view_unions_live_mysql_live_postgres_and_the_lake(world: dict[str, Any], secrets: Any) -> None:
    con, my, pg = world["con"], world["my"], world["pg"]
    done = apply_declarations(con, world["config"], secrets)
    assert done == {
        "federated": ["health_live", "tenants_live"],
        "spectrum": ["lake_health"],
        "views": ["analytics.customer_contacts"],
    }
    expected = {
        "mysql_live": _source_count(my, "SELECT count(*) FROM patients"),
        "postgres_live": _source_count(pg, "SELECT count(*) FROM tenant_metadata"),
        "lake": _source_count(my, "SELECT count(*) FROM patients"),
    }
    assert _counts(con) == expected

    # Row values, not only counts: the NULL e-mails and the tenants come through as in the sources.
    live = con.sql(
        "SELECT tenant_id, email FROM analytics.customer_contacts WHERE source = 'mysql_live' ORDER BY email NULLS FIRST, tenant_id"
    ).fetchall()
    with my.cursor() as cur:
        cur.execute("SELECT tenant_id, email FROM patients ORDER BY email IS NOT NULL, email, tenant_id")
        assert live == [tuple(r) for r in cur.fetchall()]

    # The federated branches are live; the lake branch moves only when the lake does.
    with my.cursor() as cur:
        cur.execute("INSERT INTO patients VALUES (1000, 't9', 'new@example.com')")
    after = _counts(con)
    assert after["mysql_live"] == expected["mysql_live"] + 1
    assert after["lake"] == expected["lake"]


def test_passwords_stay_out_of_the_warehouse_file(
    world: dict[str, Any], secrets: Any, tmp_path: Path
) -> None:
    """The credentials live in a temporary DuckDB secret; the file keeps the views, not them."""
    con = world["con"]
    apply_declarations(con, world["config"], secrets)
    con.sql("CHECKPOINT")
    password = world["mysql_db"].cdc_password.get_secret_value()
    assert password.encode() not in (tmp_path / "warehouse.duckdb").read_bytes()
    listed = con.sql("SELECT name, persistent, secret_string FROM duckdb_secrets()").fetchall()
    assert listed and all(not persistent for _, persistent, _ in listed)
    assert all(password not in text for _, _, text in listed)


def test_federated_schemas_are_read_only(world: dict[str, Any], secrets: Any) -> None:
    con = world["con"]
    apply_declarations(con, world["config"], secrets, views=False)
    with pytest.raises(Exception, match="(?i)read.only"):
        con.sql("INSERT INTO health_live.patients VALUES (2000, 'x', 'y')")


def test_reapplying_is_idempotent(world: dict[str, Any], secrets: Any) -> None:
    con = world["con"]
    apply_declarations(con, world["config"], secrets)
    first = _counts(con)
    apply_declarations(con, world["config"], secrets)
    assert _counts(con) == first


def test_wrong_password_names_the_schema_never_the_password(world: dict[str, Any], secrets: Any) -> None:
    mysql_db = world["mysql_db"]
    wrong = "Wr0ng-pass-7f3e"
    arn = _store(secrets, json.dumps({"username": mysql_db.cdc_user, "password": wrong}))
    schema = world["config"].federated[0].model_copy(update={"secret_arn": arn})
    with pytest.raises(WarehouseError) as info:
        attach_federated(world["con"], schema, secrets)
    message = str(info.value)
    assert "health_live" in message and "Access denied" in message
    assert wrong not in message


def test_missing_or_malformed_secret_is_named(world: dict[str, Any], secrets: Any) -> None:
    schema = world["config"].federated[0]
    missing = schema.model_copy(update={"secret_arn": _secret_arn(f"nope-{uuid.uuid4().hex[:6]}")})
    with pytest.raises(WarehouseError, match="ResourceNotFoundException") as info:
        attach_federated(world["con"], missing, secrets)
    assert missing.secret_arn in str(info.value)

    malformed = "user=cdc;password=hunter2-not-json"
    bad = schema.model_copy(update={"secret_arn": _store(secrets, malformed)})
    with pytest.raises(WarehouseError, match="expected JSON") as info:
        attach_federated(world["con"], bad, secrets)
    assert "hunter2" not in str(info.value)


def test_spectrum_schema_over_an_unknown_glue_database_is_refused(world: dict[str, Any]) -> None:
    schema = SpectrumSchema(name="lake_x", glue_database="no_such_source", iam_role_arn=ROLE)
    with pytest.raises(WarehouseError, match="no_such_source.*aurora_mysql"):
        create_spectrum_schema(world["con"], schema)
