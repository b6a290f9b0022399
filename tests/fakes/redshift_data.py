"""Fake Amazon Redshift Data API for tests (moto's redshift-data never finishes a statement).

The statement model (lifecycle, scripted outcomes and result sets) lives in
``redshift_data_model``, the JSON 1.1 front end that checks every request and response against
botocore's ``redshift-data`` model in ``redshift_data_server``; this module re-exports them:

    fake = FakeRedshiftData(polls_to_finish=2)
    fake.fail_when(r"^CREATE EXTERNAL SCHEMA", "permission denied for database dev")
    with RedshiftDataServer(fake) as server:
        client = boto3.client("redshift-data", endpoint_url=server.endpoint_url, ...)

For a stateful catalog (external schemas, views, and SELECTs over ``svv_external_schemas`` and
``pg_views``) give the model one, ``FakeRedshiftData(catalog=FakeRedshiftCatalog())``; its state
stays readable in ``fake.catalog`` (see ``redshift_catalog``).
"""

from __future__ import annotations

from tests.fakes.redshift_catalog import ExternalSchema, FakeRedshiftCatalog, Outcome, View
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
    "ExternalSchema",
    "FakeRedshiftCatalog",
    "FakeRedshiftData",
    "Outcome",
    "RedshiftDataError",
    "RedshiftDataServer",
    "ResourceNotFoundError",
    "Statement",
    "ValidationError",
    "View",
    "service_model",
    "validate_request",
    "wire_errors",
]
