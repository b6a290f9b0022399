"""Fake Amazon Redshift Data API for tests (moto's redshift-data never finishes a statement).

The statement model (lifecycle, scripted outcomes and result sets) lives in
``redshift_data_model``, the JSON 1.1 front end that checks every request and response against
botocore's ``redshift-data`` model in ``redshift_data_server``; this module re-exports them:

    fake = FakeRedshiftData(polls_to_finish=2)
    fake.fail_when(r"^CREATE EXTERNAL SCHEMA", "permission denied for database dev")
    with RedshiftDataServer(fake) as server:
        client = boto3.client("redshift-data", endpoint_url=server.endpoint_url, ...)
"""

from __future__ import annotations

from tests.fakes.redshift_data_model import (
    FakeRedshiftData,
    RedshiftDataError,
    ResourceNotFoundError,
    Statement,
    ValidationError,
)
from tests.fakes.redshift_data_server import RedshiftDataServer, service_model, validate_request
from tests.fakes.wire_shape import wire_errors

__all__ = [
    "FakeRedshiftData",
    "RedshiftDataError",
    "RedshiftDataServer",
    "ResourceNotFoundError",
    "Statement",
    "ValidationError",
    "service_model",
    "validate_request",
    "wire_errors",
]
