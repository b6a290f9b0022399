"""The fake Redshift catalog behind the Data API: our rendered DDL changes it, catalog reads see it.

Every statement goes through a real boto3 ``redshift-data`` client to the fake server (requests and
responses checked against botocore's model, as in ``test_redshift_data``), and the DDL is what
``connectors.catalog.redshift_ddl`` renders, so these tests also pin that the renderer's output is
what the fake catalog (written from Redshift's grammar, not from the renderer) accepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.catalog.redshift_config import FederatedSchema, SpectrumSchema, UnionView
from connectors.catalog.redshift_data import DataApiRunner, StatementFailedError
from connectors.catalog.redshift_ddl import (
    create_external_schema,
    create_spectrum_schema,
    create_view,
    drop_external_schema,
    drop_view,
    local_schema,
)
from tests.fakes.redshift_data import FakeRedshiftCatalog, FakeRedshiftData, RedshiftDataServer
from tests.redshift_support import CLUSTER, FakeTime, ResponseAudit, make_client

ROLE = "arn:aws:iam::123456789012:role/redshift-federated"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:aurora-reader-AbCdEf"
SCHEMAS_SQL = "SELECT esoid, eskind, schemaname, esowner, databasename, esoptions FROM svv_external_schemas"


def mysql_schema(name: str = "mysql_live", **changes: Any) -> FederatedSchema:
    fields = {
        "name": name,
        "engine": "MYSQL",
        "database": "shop",
        "uri": "shop.cluster-abc.us-east-1.rds.amazonaws.com",
        "iam_role_arn": ROLE,
        "secret_arn": SECRET,
        **changes,
    }
    return FederatedSchema(**fields)


def postgres_schema(name: str = "pg_live") -> FederatedSchema:
    return FederatedSchema(
        name=name,
        engine="POSTGRES",
        database="claims",
        schema_name="public",
        uri="claims.cluster-def.us-east-1.rds.amazonaws.com",
        port=6432,
        iam_role_arn=ROLE,
        secret_arn=SECRET,
    )


def union_view(columns: tuple[str, ...] = ("id", "Name"), name: str = "Customer 360") -> UnionView:
    return UnionView.model_validate(
        {
            "schema": "Views",
            "name": name,
            "columns": columns,
            "sources": [
                {"schema": "mysql_live", "table": "customers", "label": "mysql"},
                {"schema": "lake", "table": "customers", "label": "lake"},
            ],
        }
    )


@pytest.fixture
def fake() -> FakeRedshiftData:
    return FakeRedshiftData(polls_to_finish=2, page_size=2, catalog=FakeRedshiftCatalog())


@pytest.fixture
def server(fake: FakeRedshiftData) -> Iterator[RedshiftDataServer]:
    with RedshiftDataServer(fake) as server:
        yield server
    assert server.response_problems == []


@pytest.fixture
def audit() -> Iterator[ResponseAudit]:
    audit = ResponseAudit()
    yield audit
    assert audit.problems == []


@pytest.fixture
def client(server: RedshiftDataServer, audit: ResponseAudit) -> Any:
    return make_client(server, audit)


@pytest.fixture
def runner(client: Any) -> DataApiRunner:
    clock = FakeTime()
    return DataApiRunner(
        client, CLUSTER, timeout_seconds=5, poll_seconds=0.5, sleep=clock.sleep, clock=clock.clock
    )


def schema_rows(runner: DataApiRunner) -> dict[str, dict[str, Any]]:
    return {row["schemaname"]: row for row in runner.query(SCHEMAS_SQL)}


def failure(runner: DataApiRunner, sql: str) -> str:
    with pytest.raises(StatementFailedError) as caught:
        runner.execute(sql)
    return caught.value.error


# -- external schemas -----------------------------------------------------------------------------


def test_rendered_external_schemas_appear_in_svv_external_schemas(runner: DataApiRunner) -> None:
    spectrum = SpectrumSchema(
        name="lake",
        glue_database="lake_db",
        iam_role_arn=ROLE,
        region="eu-west-1",
        create_external_database=True,
    )
    runner.execute_batch(
        [
            create_external_schema(mysql_schema()),
            create_external_schema(postgres_schema()),
            create_spectrum_schema(spectrum),
        ]
    )

    rows = schema_rows(runner)

    assert [(r["schemaname"], r["esoid"], r["eskind"], r["esowner"]) for r in rows.values()] == [
        ("mysql_live", 100100, 8, 100),
        ("pg_live", 100101, 3, 100),
        ("lake", 100102, 1, 100),
    ]
    assert [r["databasename"] for r in rows.values()] == ["shop", "claims", "lake_db"]
    assert json.loads(rows["mysql_live"]["esoptions"]) == {
        "URI": "shop.cluster-abc.us-east-1.rds.amazonaws.com",
        "PORT": "3306",
        "IAM_ROLE": ROLE,
        "SECRET_ARN": SECRET,
    }
    assert json.loads(rows["pg_live"]["esoptions"]) == {
        "SCHEMA": "public",
        "URI": "claims.cluster-def.us-east-1.rds.amazonaws.com",
        "PORT": "6432",
        "IAM_ROLE": ROLE,
        "SECRET_ARN": SECRET,
    }
    # CREATE EXTERNAL DATABASE is an action, not an option Redshift keeps.
    assert json.loads(rows["lake"]["esoptions"]) == {"REGION": "eu-west-1", "IAM_ROLE": ROLE}


def test_create_if_not_exists_is_idempotent_and_recreate_gets_a_new_oid(
    runner: DataApiRunner, fake: FakeRedshiftData
) -> None:
    ddl = create_external_schema(mysql_schema())
    runner.execute(ddl)
    runner.execute(ddl)
    assert [r["esoid"] for r in schema_rows(runner).values()] == [100100]

    # A drifted declaration re-created after a drop: the row carries the new options.
    runner.execute_batch(
        [drop_external_schema("mysql_live"), create_external_schema(mysql_schema(port=3307))]
    )

    (row,) = schema_rows(runner).values()
    assert row["esoid"] == 100101
    assert json.loads(row["esoptions"])["PORT"] == "3307"
    assert fake.catalog is not None and list(fake.catalog.external_schemas) == ["mysql_live"]


@pytest.mark.parametrize(
    "name",
    ["Mixed_Case", "with space", 'quote "q"', "apos'trophe", "Zoë ünïcode", "select", "UPPER"],
)
def test_awkward_names_round_trip_folded_to_lower_case(runner: DataApiRunner, name: str) -> None:
    runner.execute(create_external_schema(mysql_schema(name, database=f"db {name}")))

    rows = runner.query(
        "SELECT schemaname, databasename FROM svv_external_schemas WHERE schemaname = :name",
        {"name": name.lower()},
    )

    assert rows == [{"schemaname": name.lower(), "databasename": f"db {name}"}]
    runner.execute(drop_external_schema(name))
    assert schema_rows(runner) == {}


def test_schema_errors_read_like_redshift(runner: DataApiRunner) -> None:
    runner.execute(create_external_schema(mysql_schema("Dup")))
    plain = create_external_schema(mysql_schema("Dup")).replace(" IF NOT EXISTS", "", 1)

    assert failure(runner, plain) == 'ERROR: schema "dup" already exists'
    assert failure(runner, 'DROP SCHEMA "Missing"') == 'ERROR: schema "missing" does not exist'
    runner.execute('DROP SCHEMA IF EXISTS "Missing"')
    no_uri = (
        "CREATE EXTERNAL SCHEMA p FROM POSTGRES DATABASE 'd' SCHEMA 'public' IAM_ROLE default SECRET_ARN 's'"
    )
    assert "URI" in failure(runner, no_uri)
    no_secret = "CREATE EXTERNAL SCHEMA m FROM MYSQL DATABASE 'd' URI 'h' IAM_ROLE 'r'"
    assert "SECRET_ARN" in failure(runner, no_secret)
    assert failure(runner, "CREATE EXTERNAL SCHEMA m FROM MYSQL DATABASE 'd' SPORT 1") == (
        'ERROR: syntax error at or near "SPORT"'
    )
    assert list(schema_rows(runner)) == ["dup"]


def test_hand_written_ddl_with_bare_names_and_doubled_quotes(runner: DataApiRunner) -> None:
    runner.execute(
        "create external schema if not exists Spectrum_Lake from data catalog "
        "database 'o''brien' iam_role default create external database if not exists;"
    )

    (row,) = schema_rows(runner).values()
    assert (row["schemaname"], row["eskind"], row["databasename"]) == ("spectrum_lake", 1, "o'brien")
    assert json.loads(row["esoptions"]) == {"IAM_ROLE": "default"}


# -- views ----------------------------------------------------------------------------------------


def test_view_is_kept_in_pg_views_with_its_statement_text(runner: DataApiRunner) -> None:
    view = union_view()
    runner.execute_batch(
        [create_external_schema(mysql_schema()), local_schema(view.schema_), create_view(view)]
    )

    rows = runner.query("SELECT * FROM pg_catalog.pg_views WHERE schemaname IN ('views', 'other')")

    assert rows == [
        {
            "schemaname": "views",
            "viewname": "customer 360",
            "viewowner": "publisher",
            "definition": create_view(view),
        }
    ]
    runner.execute(create_view(view))  # OR REPLACE: the same view again changes nothing
    assert len(runner.query("SELECT viewname FROM pg_views")) == 1


def test_view_errors_read_like_redshift(runner: DataApiRunner) -> None:
    view = union_view()
    assert failure(runner, create_view(view)) == 'ERROR: schema "views" does not exist'

    runner.execute_batch([create_external_schema(mysql_schema()), local_schema("Views")])
    bound = create_view(view).removesuffix(" WITH NO SCHEMA BINDING")
    assert "External tables are not supported in views" in failure(runner, bound)

    runner.execute(create_view(view))
    plain = create_view(view).replace("CREATE OR REPLACE VIEW", "CREATE VIEW", 1)
    assert failure(runner, plain) == 'ERROR: relation "customer 360" already exists'
    assert failure(runner, 'DROP VIEW "Views"."Nope"') == 'ERROR: view "nope" does not exist'
    runner.execute(drop_view("Views", "Nope"))


def test_schema_bound_view_keeps_its_columns_on_replace(runner: DataApiRunner) -> None:
    runner.execute("CREATE SCHEMA reporting")
    runner.execute("CREATE VIEW reporting.totals AS SELECT id, amount AS total FROM public.orders")

    renamed = "CREATE OR REPLACE VIEW reporting.totals AS SELECT id, amount AS sum FROM public.orders"
    assert failure(runner, renamed) == 'ERROR: cannot change name of view column "total" to "sum"'
    wider = "CREATE OR REPLACE VIEW reporting.totals AS SELECT id, amount AS total, 1 FROM public.orders"
    assert failure(runner, wider) == "ERROR: cannot change number of columns in view"
    runner.execute(
        "CREATE OR REPLACE VIEW reporting.totals AS SELECT id, amount + 1 AS total FROM public.orders"
    )

    (row,) = runner.query("SELECT definition FROM pg_views WHERE viewname = 'totals'")
    assert "amount + 1" in row["definition"] and not row["definition"].lower().startswith("create")


def test_late_binding_view_may_change_its_columns(runner: DataApiRunner, fake: FakeRedshiftData) -> None:
    runner.execute_batch([create_external_schema(mysql_schema()), local_schema("Views")])
    runner.execute(create_view(union_view()))

    runner.execute(create_view(union_view(("id", "Name", "email"))))

    assert fake.catalog is not None
    assert fake.catalog.views[("views", "customer 360")].columns == ("id", "name", "email", "source")


def test_dropping_a_schema_with_views_needs_cascade(runner: DataApiRunner) -> None:
    runner.execute_batch([local_schema("Views"), create_view(union_view())])

    assert "because other objects depend on it" in failure(runner, 'DROP SCHEMA "Views"')
    runner.execute('DROP SCHEMA "Views" CASCADE')

    assert runner.query("SELECT viewname FROM pg_views") == []
    assert "does not exist" in failure(runner, create_view(union_view()))


# -- the Data API around the catalog --------------------------------------------------------------


def test_catalog_results_are_paged_and_typed(
    runner: DataApiRunner, client: Any, fake: FakeRedshiftData
) -> None:
    runner.execute_batch([create_external_schema(mysql_schema(f"s{i}")) for i in range(5)])

    result = runner.execute(SCHEMAS_SQL + " WHERE eskind = 8 ORDER BY esoid DESC")

    assert [r["schemaname"] for r in result.rows] == ["s4", "s3", "s2", "s1", "s0"]
    assert fake.calls.count("GetStatementResult") == 3  # page size 2
    page = client.get_statement_result(Id=result.statement_id)
    assert [c["typeName"] for c in page["ColumnMetadata"]] == ["oid", "int4", "name", "int4", "text", "text"]
    assert page["TotalNumRows"] == 5


def test_empty_catalog_read_has_a_result_set_without_rows(runner: DataApiRunner) -> None:
    result = runner.execute("SELECT schemaname FROM svv_external_schemas")

    assert result.has_result_set is True
    assert result.columns == ("schemaname",)
    assert result.rows == []


def test_scripted_rules_win_and_other_statements_just_finish(
    runner: DataApiRunner, fake: FakeRedshiftData
) -> None:
    fake.fail_when(r"FROM\s+MYSQL", 'ERROR: permission denied for database "dev"')

    with pytest.raises(StatementFailedError):
        runner.execute(create_external_schema(mysql_schema()))
    plain = runner.execute("CREATE TABLE public.t (id int)")

    assert plain.has_result_set is False
    assert fake.catalog is not None and fake.catalog.external_schemas == {}


def test_parameters_are_substituted_as_literals(runner: DataApiRunner) -> None:
    runner.execute(create_external_schema(mysql_schema("o'brien")))

    assert runner.query("SELECT esoid FROM svv_external_schemas WHERE schemaname = :n", {"n": "o'brien"}) == [
        {"esoid": 100100}
    ]
    assert (
        runner.query("SELECT esoid FROM svv_external_schemas WHERE schemaname = :n", {"n": "x' OR 'a'='a"})
        == []
    )
