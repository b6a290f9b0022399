"""Publishing the declared schemas and views to Redshift through the Data API (the fake with its
stateful catalog): a dry run changes nothing, a re-run changes only what differs, drift is repaired,
undeclared objects are reported and kept, and a failing statement stops the run with its error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.catalog.redshift_config import FederatedSchema, RedshiftConfig, SpectrumSchema, UnionView
from connectors.catalog.redshift_data import DataApiRunner
from connectors.catalog.redshift_publish import (
    RedshiftPublisher,
    RedshiftPublishError,
    normalized_query,
    offline_plan,
)
from tests.fakes.redshift_data import FakeRedshiftCatalog, FakeRedshiftData, RedshiftDataServer
from tests.redshift_support import CLUSTER, FakeTime, ResponseAudit, make_client

ROLE = "arn:aws:iam::123456789012:role/redshift-federated"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:aurora-reader"
DDL = ("CREATE", "DROP")


def _federated(name: str = "health_live", **changes: Any) -> FederatedSchema:
    fields: dict[str, Any] = {
        "name": name, "engine": "MYSQL", "database": "health", "iam_role_arn": ROLE, "secret_arn": SECRET,
        "uri": "health.cluster-abc.us-east-1.rds.amazonaws.com", **changes,
    }  # fmt: skip
    return FederatedSchema(**fields)


def _tenants() -> FederatedSchema:
    return FederatedSchema(
        name="tenants_live", engine="POSTGRES", database="tenants", schema_name="public",
        uri="tenants.cluster-def.us-east-1.rds.amazonaws.com", iam_role_arn=ROLE, secret_arn=SECRET,
    )  # fmt: skip


def _view(columns: tuple[str, ...] = ("tenant_id", "email"), label: str = "live") -> UnionView:
    return UnionView.model_validate(
        {
            "schema": "analytics",
            "name": "customer_contacts",
            "columns": columns,
            "sources": [
                {"schema": "health_live", "table": "patients", "label": label},
                {"schema": "lake_health", "table": "health__patients", "label": "lake"},
            ],
        }
    )


def _config(**changes: Any) -> RedshiftConfig:
    fields: dict[str, Any] = {
        "federated": (_federated(), _tenants()),
        "spectrum": (SpectrumSchema(name="lake_health", glue_database="aurora_mysql", iam_role_arn=ROLE),),
        "views": (_view(),),
        **changes,
    }
    return RedshiftConfig(**fields)


@pytest.fixture
def fake() -> FakeRedshiftData:
    return FakeRedshiftData(polls_to_finish=2, catalog=FakeRedshiftCatalog())


@pytest.fixture
def server(fake: FakeRedshiftData) -> Iterator[RedshiftDataServer]:
    with RedshiftDataServer(fake) as server:
        yield server
    assert server.response_problems == []


@pytest.fixture
def runner(server: RedshiftDataServer) -> Iterator[DataApiRunner]:
    audit = ResponseAudit()
    clock = FakeTime()
    yield DataApiRunner(make_client(server, audit), CLUSTER, sleep=clock.sleep, clock=clock.clock)
    assert audit.problems == []


def _ddl(fake: FakeRedshiftData) -> list[str]:
    return [sql for sql in fake.executed if sql.lstrip().upper().startswith(DDL)]


def test_dry_run_plans_everything_and_submits_no_ddl(runner: DataApiRunner, fake: FakeRedshiftData) -> None:
    plan = RedshiftPublisher(runner, _config()).publish(dry_run=True)
    assert [(a.kind, a.name) for a in plan.actions] == [
        ("create_schema", "health_live"),
        ("create_schema", "tenants_live"),
        ("create_schema", "lake_health"),
        ("create_view", "analytics.customer_contacts"),
    ]
    assert _ddl(fake) == []
    text = str(plan)
    assert 'CREATE EXTERNAL SCHEMA IF NOT EXISTS "tenants_live" FROM POSTGRES' in text
    assert "SCHEMA 'public'" in text and "WITH NO SCHEMA BINDING" in text


def test_publish_then_rerun_changes_nothing(runner: DataApiRunner, fake: FakeRedshiftData) -> None:
    RedshiftPublisher(runner, _config()).publish()
    catalog = fake.catalog
    assert catalog is not None
    assert set(catalog.external_schemas) == {"health_live", "tenants_live", "lake_health"}
    assert ("analytics", "customer_contacts") in catalog.views
    submitted = len(_ddl(fake))

    again = RedshiftPublisher(runner, _config()).publish()
    assert again.changes == [] and str(again) == "nothing to change"
    assert len(_ddl(fake)) == submitted  # the second run only read the catalog


def test_drift_in_options_kind_and_view_is_repaired(runner: DataApiRunner, fake: FakeRedshiftData) -> None:
    RedshiftPublisher(runner, _config()).publish()
    new_secret = SECRET + "-rotated"
    drifted = _config(
        federated=(_federated(secret_arn=new_secret), _tenants()),
        spectrum=(
            SpectrumSchema(
                name="lake_health", glue_database="aurora_mysql", iam_role_arn=ROLE, region="eu-west-1"
            ),
        ),
        views=(_view(label="aurora"),),
    )
    plan = RedshiftPublisher(runner, drifted).publish()
    details = {a.name: (a.kind, a.detail) for a in plan.changes}
    assert details["health_live"][0] == "replace_schema" and "SECRET_ARN" in details["health_live"][1]
    assert details["lake_health"][0] == "replace_schema" and "REGION" in details["lake_health"][1]
    assert details["analytics.customer_contacts"] == ("replace_view", "query differs")
    assert "tenants_live" not in details
    # Replacing a schema is DROP then CREATE, in that order, and only for the schemas that changed.
    ddl = _ddl(fake)[-5:]
    assert ddl[0].startswith('DROP SCHEMA IF EXISTS "health_live"') and ddl[1].startswith(
        "CREATE EXTERNAL SCHEMA"
    )
    options = json.loads(fake.catalog.external_schemas["health_live"].esoptions)  # type: ignore[union-attr]
    assert options["SECRET_ARN"] == new_secret
    assert RedshiftPublisher(runner, drifted).plan().changes == []

    # An engine change (MYSQL -> POSTGRES under the same name) is a kind difference.
    as_pg = _federated(engine="POSTGRES", schema_name="public")
    plan = RedshiftPublisher(runner, _config(federated=(as_pg, _tenants()))).plan()
    assert [a.detail for a in plan.changes if a.name == "health_live"][0].startswith("kind MYSQL -> POSTGRES")


def test_view_with_new_columns_is_dropped_and_created(runner: DataApiRunner, fake: FakeRedshiftData) -> None:
    RedshiftPublisher(runner, _config()).publish()
    wider = _config(views=(_view(columns=("tenant_id", "email", "phone")),))
    plan = RedshiftPublisher(runner, wider).publish()
    [action] = plan.changes
    assert action.kind == "replace_view" and "phone" in action.detail
    assert action.statements[0].startswith('DROP VIEW IF EXISTS "analytics"."customer_contacts"')
    assert RedshiftPublisher(runner, wider).plan().changes == []


def test_undeclared_objects_are_reported_and_kept(runner: DataApiRunner, fake: FakeRedshiftData) -> None:
    RedshiftPublisher(runner, _config()).publish()
    runner.execute(
        "CREATE EXTERNAL SCHEMA hand_made FROM DATA CATALOG DATABASE 'x' IAM_ROLE 'arn:aws:iam::123456789012:role/r'"
    )
    runner.execute("CREATE VIEW analytics.by_hand AS SELECT 1 AS one WITH NO SCHEMA BINDING")
    plan = RedshiftPublisher(runner, _config(federated=(_tenants(),))).publish()
    reported = {(a.kind, a.name) for a in plan.actions if not a.statements}
    assert reported == {
        ("unmanaged_schema", "hand_made"),
        ("unmanaged_schema", "health_live"),  # removed from the configuration: reported, not dropped
        ("unmanaged_view", "analytics.by_hand"),
    }
    assert plan.changes == []
    assert {"hand_made", "health_live"} <= set(fake.catalog.external_schemas)  # type: ignore[union-attr]


def test_a_view_written_differently_but_equal_is_not_replaced(
    runner: DataApiRunner, fake: FakeRedshiftData
) -> None:
    RedshiftPublisher(runner, _config(views=())).publish()
    runner.execute("CREATE SCHEMA analytics")
    runner.execute(
        "create view analytics.customer_contacts as\n"
        "  select tenant_id, email, 'live' as source from health_live.patients\n"
        "  union all select tenant_id, email, 'lake' as source from lake_health.health__patients\n"
        "with no schema binding"
    )
    assert RedshiftPublisher(runner, _config()).plan().changes == []


def test_a_failing_statement_stops_the_run_with_its_error(
    runner: DataApiRunner, fake: FakeRedshiftData
) -> None:
    fake.fail_when(
        r'CREATE EXTERNAL SCHEMA IF NOT EXISTS "tenants_live"', "permission denied for database dev"
    )
    with pytest.raises(RedshiftPublishError, match="create_schema tenants_live.*permission denied"):
        RedshiftPublisher(runner, _config()).publish()
    catalog = fake.catalog
    assert catalog is not None
    assert set(catalog.external_schemas) == {"health_live"}  # before the failure: applied; after: not
    assert not catalog.views

    # Once the cause is fixed, a re-run finishes the job and touches nothing already done.
    fake.clear_rules()
    plan = RedshiftPublisher(runner, _config()).publish()
    assert [a.name for a in plan.changes] == ["tenants_live", "lake_health", "analytics.customer_contacts"]
    assert RedshiftPublisher(runner, _config()).plan().changes == []


def test_offline_plan_is_exactly_what_a_first_publish_runs(
    runner: DataApiRunner, fake: FakeRedshiftData
) -> None:
    offline = offline_plan(_config())  # no runner: nothing is read or sent
    assert fake.executed == []
    RedshiftPublisher(runner, _config()).publish()
    assert offline.statements == _ddl(fake)
    assert [(a.kind, a.name) for a in offline.actions] == [
        ("create_schema", "health_live"),
        ("create_schema", "tenants_live"),
        ("create_schema", "lake_health"),
        ("create_view", "analytics.customer_contacts"),
    ]


def test_plan_script_ends_each_statement_and_comments_each_action() -> None:
    plan = offline_plan(_config())
    script = plan.script()
    lines = script.splitlines()
    assert (
        lines[0]
        == "-- create_schema health_live: MYSQL 'health' at health.cluster-abc.us-east-1.rds.amazonaws.com:3306"
    )
    assert [line for line in lines if not line.startswith("-- ")] == [f"{s};" for s in plan.statements]
    assert f"SECRET_ARN '{SECRET}'" in script  # the secret by its ARN, as Redshift is sent it
    assert offline_plan(RedshiftConfig()).script() == "-- nothing to change"


def test_normalized_query_ignores_layout_but_not_meaning() -> None:
    a = 'SELECT "Tenant_ID", email FROM "health_live"."patients"'
    b = "select tenant_id,\n  EMAIL from health_live.patients"
    assert normalized_query(a) == normalized_query(b)
    assert normalized_query(a) != normalized_query("SELECT tenant_id, phone FROM health_live.patients")
    assert normalized_query("CREATE VIEW v AS SELECT 1 AS x WITH NO SCHEMA BINDING;") == normalized_query(
        "SELECT 1 AS x"
    )
    assert normalized_query("not sql at all (") is None
