"""Shared by the Redshift Data API tests: the target, a fake clock, the response audit and a
boto3 client on the fake server with the audit hooked in."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from connectors.catalog.redshift_data import RedshiftTarget
from tests.fakes import fake_server
from tests.fakes.redshift_data import RedshiftDataServer, wire_errors

CLUSTER = RedshiftTarget(cluster_identifier="analytics-1", database="dev", db_user="publisher")
FRAMEWORK_CODES = {"MissingAuthenticationTokenException", "UnknownOperationException", "NotImplementedInFake"}


class FakeTime:
    """The runner's clock and sleep: sleeping advances the clock and nothing else."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1


class ResponseAudit(fake_server.ResponseAudit):
    """Responses against the Data API model; errors must be modelled (or the framework's)."""

    def error_problems(self, http_response: Any, body: dict[str, Any], model: Any) -> list[str]:
        code = body.get("__type", "").rpartition("#")[2]
        shapes = {s.name: s for s in model.error_shapes}
        if code in FRAMEWORK_CODES:
            return []
        if code not in shapes:
            return [f"error code {code!r} is not one of {sorted(shapes)}"]
        members = {k: v for k, v in body.items() if k != "__type"}
        return wire_errors(members, shapes[code])


def make_client(
    server: RedshiftDataServer, audit: ResponseAudit, *, parameter_validation: bool = True
) -> Any:
    client = boto3.client(
        "redshift-data",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # One attempt: the fake's errors must reach the test, not be retried away.
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=parameter_validation),
    )
    client.meta.events.register("after-call", audit)
    return client
