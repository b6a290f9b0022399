"""Fake Amazon OpenSearch Service custom-package API for tests (moto does not implement it).

The model (packages, versions, domains, associations, failure injection) lives in
``opensearch_packages_model`` (its records and errors in ``opensearch_packages_records``), the
REST-JSON front end in ``opensearch_packages_server``, and the checks of every request and response
against botocore's ``opensearch`` model in ``opensearch_packages_wire``; this module re-exports them:

    fake = FakeOpenSearchPackages()
    fake.add_domain("search")
    with OpenSearchPackagesServer(fake) as server:
        client = boto3.client("opensearch", endpoint_url=server.endpoint_url, ...)
"""

from __future__ import annotations

from tests.fakes.opensearch_packages_model import (
    ConflictError,
    FakeOpenSearchPackages,
    FakeUsageError,
    PackagesError,
    ResourceAlreadyExistsError,
    ResourceNotFoundError,
    ValidationError,
)
from tests.fakes.opensearch_packages_server import OpenSearchPackagesServer
from tests.fakes.opensearch_packages_wire import request_params, service_model, validate_request
from tests.fakes.wire_shape import wire_errors

__all__ = [
    "ConflictError",
    "FakeOpenSearchPackages",
    "FakeUsageError",
    "OpenSearchPackagesServer",
    "PackagesError",
    "ResourceAlreadyExistsError",
    "ResourceNotFoundError",
    "ValidationError",
    "request_params",
    "service_model",
    "validate_request",
    "wire_errors",
]
