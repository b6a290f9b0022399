"""Running SQL through the Redshift Data API, against the fake that validates every request.

Every request goes through a real boto3 ``redshift-data`` client to the fake, which checks it against
botocore's service model; every response the client receives is checked again here against the
operation's output shape or, for errors, its modelled error shapes. The runner's clock and sleep are
fake, so polling and timeouts take no time.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError as PydanticValidationError

from connectors.catalog.redshift_data import (
    DataApiRunner,
    RedshiftTarget,
    StatementAbortedError,
    StatementFailedError,
    StatementTimeoutError,
)
from tests.fakes.redshift_data import FakeRedshiftData, RedshiftDataServer
from tests.redshift_support import CLUSTER, FakeTime, ResponseAudit, make_client

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:redshift-admin-AbCdEf"


@pytest.fixture
def fake() -> FakeRedshiftData:
    return FakeRedshiftData(polls_to_finish=3, page_size=2)


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
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def runner(client: Any, clock: FakeTime) -> DataApiRunner:
    return DataApiRunner(
        client, CLUSTER, timeout_seconds=5, poll_seconds=0.5, sleep=clock.sleep, clock=clock.clock
    )


# -- outcomes -------------------------------------------------------------------------------------


def test_ddl_finishes_after_polling_and_is_recorded(
    runner: DataApiRunner, fake: FakeRedshiftData, clock: FakeTime, audit: ResponseAudit
) -> None:
    result = runner.execute('CREATE SCHEMA IF NOT EXISTS "Lake Views"')

    assert result.has_result_set is False
    assert result.rows == []
    assert fake.executed == ['CREATE SCHEMA IF NOT EXISTS "Lake Views"']
    assert fake.calls == ["ExecuteStatement"] + ["DescribeStatement"] * 3
    assert clock.sleeps == 2  # SUBMITTED -> PICKED -> STARTED -> FINISHED: two waits between polls
    statement = fake.statements[result.statement_id]
    assert statement.target == {"ClusterIdentifier": "analytics-1", "Database": "dev", "DbUser": "publisher"}
    assert audit.checked == 4


def test_query_returns_typed_values_and_nulls_across_pages(
    runner: DataApiRunner, fake: FakeRedshiftData
) -> None:
    rows = [
        ("mysql_live", 1, 2.5, True, 'Zoë\'s "schema"'),
        ("pg_live", None, None, None, None),
        ("lake", -(2**62), -0.125, False, ""),
        ("spare", 7, 1e300, True, "x"),
        ("last", 0, 0.0, False, "ü"),
    ]
    fake.respond(r"FROM\s+svv_external_schemas", ["schemaname", "n", "ratio", "flag", "note"], rows)

    result = runner.execute("SELECT schemaname, n, ratio, flag, note\nFROM svv_external_schemas")

    assert result.columns == ("schemaname", "n", "ratio", "flag", "note")
    assert result.records == tuple(rows)
    assert result.result_rows == 5
    assert result.rows[1] == {"schemaname": "pg_live", "n": None, "ratio": None, "flag": None, "note": None}
    assert type(result.rows[0]["n"]) is int and type(result.rows[0]["ratio"]) is float
    assert fake.calls.count("GetStatementResult") == 3  # page size 2: pages of 2, 2 and 1


def test_query_convenience_and_parameters(runner: DataApiRunner, fake: FakeRedshiftData) -> None:
    fake.respond(r"pg_views", ["viewname"], [("customer_360",)])

    rows = runner.query("SELECT viewname FROM pg_views WHERE schemaname = :schema", {"schema": "lake"})

    assert rows == [{"viewname": "customer_360"}]
    (statement,) = fake.statements.values()
    assert statement.parameters == [{"name": "schema", "value": "lake"}]


def test_failed_statement_surfaces_error_text_and_first_line(
    runner: DataApiRunner, fake: FakeRedshiftData
) -> None:
    fake.fail_when(r"FROM\s+MYSQL", 'ERROR: permission denied for database "dev"')

    with pytest.raises(StatementFailedError) as caught:
        runner.execute("\nCREATE EXTERNAL SCHEMA mysql_live\nFROM MYSQL DATABASE 'shop'")

    assert caught.value.error == 'ERROR: permission denied for database "dev"'
    assert caught.value.sql_first_line == "CREATE EXTERNAL SCHEMA mysql_live"
    assert "permission denied" in str(caught.value) and "CREATE EXTERNAL SCHEMA mysql_live" in str(
        caught.value
    )
    assert caught.value.statement_id in fake.statements


def test_aborted_statement_raises(runner: DataApiRunner, fake: FakeRedshiftData) -> None:
    fake.abort_when(r"^DROP VIEW")

    with pytest.raises(StatementAbortedError):
        runner.execute("DROP VIEW lake.customer_360")


def test_timeout_cancels_the_statement(
    runner: DataApiRunner, fake: FakeRedshiftData, clock: FakeTime, client: Any
) -> None:
    fake.stall_when(r"VACUUM")

    with pytest.raises(StatementTimeoutError) as caught:
        runner.execute("VACUUM lake.claims")

    assert caught.value.status == "STARTED"
    assert fake.calls[-1] == "CancelStatement"
    assert clock.sleeps == 10  # 5 s at 0.5 s a poll, then give up
    described = client.describe_statement(Id=caught.value.statement_id)
    assert described["Status"] == "ABORTED"


def test_batch_runs_in_order_and_stops_at_first_failure(
    runner: DataApiRunner, fake: FakeRedshiftData
) -> None:
    fake.fail_when(r"^CREATE VIEW b", "ERROR: relation does not exist")
    sqls = [
        "CREATE SCHEMA s",
        "CREATE VIEW a AS SELECT 1",
        "CREATE VIEW b AS SELECT x FROM t",
        "CREATE VIEW c",
    ]

    with pytest.raises(StatementFailedError):
        runner.execute_batch(sqls)

    assert fake.executed == sqls[:3]


def test_serverless_target_sends_workgroup(client: Any, clock: FakeTime, fake: FakeRedshiftData) -> None:
    target = RedshiftTarget(workgroup_name="lakehouse-wg", database="dev", secret_arn=SECRET_ARN)
    runner = DataApiRunner(client, target, sleep=clock.sleep, clock=clock.clock)

    result = runner.execute("SELECT 1")

    assert fake.statements[result.statement_id].target == {
        "WorkgroupName": "lakehouse-wg",
        "Database": "dev",
        "SecretArn": SECRET_ARN,
    }


def test_runner_waits_the_targets_statement_timeout(
    client: Any, clock: FakeTime, fake: FakeRedshiftData
) -> None:
    assert CLUSTER.statement_timeout_seconds == 300  # the default
    target = CLUSTER.model_copy(update={"statement_timeout_seconds": 2.5})
    runner = DataApiRunner(client, target, poll_seconds=0.5, sleep=clock.sleep, clock=clock.clock)
    fake.stall_when(r"VACUUM")

    with pytest.raises(
        StatementTimeoutError, match=r"after 2\.5s \(redshift\.target\.statement_timeout_seconds\)"
    ):
        runner.execute("VACUUM lake.claims")
    assert clock.sleeps == 5


@pytest.mark.parametrize("bad", [0, -1, "-0.5", "inf", "nan", True, "soon"])
def test_statement_timeout_must_be_a_positive_number(bad: Any) -> None:
    with pytest.raises(PydanticValidationError) as caught:
        RedshiftTarget(
            cluster_identifier="analytics", database="dev", db_user="u", statement_timeout_seconds=bad
        )
    [error] = caught.value.errors()
    assert error["loc"] == ("statement_timeout_seconds",) and error["type"] != "extra_forbidden"


# -- the fake's checks ----------------------------------------------------------------------------


def test_missing_sql_is_rejected(
    server: RedshiftDataServer, audit: ResponseAudit, fake: FakeRedshiftData
) -> None:
    raw = make_client(server, audit, parameter_validation=False)

    with pytest.raises(raw.exceptions.ValidationException, match="Sql"):
        raw.execute_statement(ClusterIdentifier="analytics-1", Database="dev", DbUser="u")
    assert fake.executed == []


def test_cluster_and_workgroup_together_are_rejected(client: Any, fake: FakeRedshiftData) -> None:
    # botocore's model allows both members; the service does not.
    with pytest.raises(client.exceptions.ValidationException, match="WorkgroupName"):
        client.execute_statement(
            Sql="SELECT 1", ClusterIdentifier="c1", WorkgroupName="wg-one", Database="dev"
        )
    assert fake.executed == []


def test_pattern_and_enum_breaks_are_rejected(client: Any) -> None:
    # Client-side validation does not check patterns or enums: the fake must.
    with pytest.raises(client.exceptions.ValidationException, match="regular expression"):
        client.execute_statement(Sql="SELECT 1", ClusterIdentifier="Analytics_1", Database="dev")
    with pytest.raises(client.exceptions.ValidationException, match="regular expression"):
        client.describe_statement(Id="not-a-uuid")


def test_unknown_statement_is_resource_not_found(client: Any) -> None:
    missing = "0b0f8c8e-1111-4a4a-9b9b-123456789abc"

    with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
        client.describe_statement(Id=missing)

    assert caught.value.response["ResourceId"] == missing


def test_result_before_finish_or_without_rows_is_a_validation_error(
    client: Any, fake: FakeRedshiftData
) -> None:
    fake.respond("SELECT", ["one"], [(1,)])
    query = client.execute_statement(Sql="SELECT 1", ClusterIdentifier="c1", Database="dev", DbUser="u")["Id"]
    ddl = client.execute_statement(Sql="CREATE SCHEMA s", ClusterIdentifier="c1", Database="dev", DbUser="u")[
        "Id"
    ]

    with pytest.raises(client.exceptions.ValidationException, match="not finished"):
        client.get_statement_result(Id=query)
    for _ in range(3):
        client.describe_statement(Id=ddl)
    with pytest.raises(client.exceptions.ValidationException, match="does not have a result set"):
        client.get_statement_result(Id=ddl)


def test_cancelling_a_finished_statement_is_refused(client: Any, fake: FakeRedshiftData) -> None:
    fake.polls_to_finish = 1
    statement_id = client.execute_statement(
        Sql="SELECT 1", ClusterIdentifier="c1", Database="dev", DbUser="u"
    )["Id"]
    assert client.describe_statement(Id=statement_id)["Status"] == "FINISHED"

    with pytest.raises(ClientError, match="FINISHED"):
        client.cancel_statement(Id=statement_id)


def test_unsigned_request_is_refused(server: RedshiftDataServer) -> None:
    request = urllib.request.Request(
        server.endpoint_url,
        data=b'{"Sql": "SELECT 1"}',
        headers={
            "X-Amz-Target": "RedshiftData.ExecuteStatement",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 403
    assert json.loads(caught.value.read())["__type"].endswith("#MissingAuthenticationTokenException")


# -- target validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"database": "dev"}, "cluster_identifier"),
        (
            {"cluster_identifier": "c1", "workgroup_name": "wg-one", "database": "dev", "db_user": "u"},
            "workgroup_name",
        ),
        ({"cluster_identifier": "c1", "database": "dev"}, "db_user"),
        ({"workgroup_name": "wg-one", "database": "dev", "db_user": "u"}, "db_user"),
        (
            {"cluster_identifier": "c1", "database": "dev", "db_user": "u", "secret_arn": SECRET_ARN},
            "secret_arn",
        ),
        ({"cluster_identifier": "c1", "database": "dev", "secret_arn": "hunter2"}, "secret_arn"),
        ({"cluster_identifier": "Bad_Cluster", "database": "dev", "db_user": "u"}, "cluster_identifier"),
        ({"cluster_identifier": "c1", "db_user": "u"}, "database"),
        ({"cluster_identifier": "c1", "database": "dev", "db_user": "u", "password": "x"}, "password"),
    ],
)
def test_target_validation_names_the_field(fields: dict[str, str], named: str) -> None:
    with pytest.raises(PydanticValidationError, match=named):
        RedshiftTarget(**fields)


def test_valid_targets() -> None:
    assert RedshiftTarget(
        cluster_identifier="c1", database="dev", secret_arn=SECRET_ARN
    ).request_params() == {
        "ClusterIdentifier": "c1",
        "Database": "dev",
        "SecretArn": SECRET_ARN,
    }
    assert RedshiftTarget(workgroup_name="wg-one", database="dev").request_params() == {
        "WorkgroupName": "wg-one",
        "Database": "dev",
    }
