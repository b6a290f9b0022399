"""HTTP front end of the fake Redshift Data API: the JSON 1.1 protocol, checked against botocore.

Each request is checked as the service would before the model sees it: a SigV4 ``Authorization``
header scoped to the ``redshift-data`` signing name, a known ``X-Amz-Target``
(``RedshiftData.<Operation>``), the ``application/x-amz-json-1.1`` content type (the model's
``jsonVersion``), and a body that satisfies the operation's input shape in botocore's
``redshift-data`` model: ``ParamValidator`` (types, required and unknown members, minimums) plus
``wire_errors`` (maximums, enums, patterns, JSON wire types). Responses are checked against the
output shape before they leave (a wrong one becomes a 500 and lands in ``response_problems``).
Errors are JSON-protocol bodies whose ``__type`` ends in ``#<Code>``, which botocore turns into
``client.exceptions.<Code>``, with the error shape's members (``Message``, ``ResourceId``).
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel

from tests.fakes.fake_server import (
    FakeHandler,
    FakeHTTPServer,
    FakeServer,
    check_sigv4,
    error_statuses,
    validate_params,
)
from tests.fakes.redshift_data_model import FakeRedshiftData, RedshiftDataError, ValidationError

log = logging.getLogger(__name__)

SIGNING_NAME = "redshift-data"
TARGET_PREFIX = "RedshiftData."
CONTENT_TYPE = "application/x-amz-json-1.1"
SERVICE_NAMESPACE = "com.amazonaws.redshiftdata"
# Errors of the AWS request framework rather than the service: their namespace and HTTP status.
FRAMEWORK = {
    "MissingAuthenticationTokenException": ("com.amazon.coral.service", 403),
    "InvalidSignatureException": ("com.amazon.coral.service", 403),
    "UnknownOperationException": ("com.amazon.coral.service", 400),
    "SerializationException": ("com.amazon.coral.service", 400),
    "NotImplementedInFake": ("com.amazon.coral.service", 501),
}


class FrameworkError(RedshiftDataError):
    """An error of AWS's request layer (signature, routing, body encoding), not a modelled one."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@functools.cache
def service_model() -> ServiceModel:
    """botocore's model of the Redshift Data API (loaded once per process)."""
    return botocore.session.get_session().get_service_model("redshift-data")


def validate_request(operation: OperationModel, params: Any) -> None:
    """Raise ValidationError naming every way ``params`` breaks the operation's input shape."""
    validate_params(operation, params, ValidationError)


def _invoke(model: FakeRedshiftData, operation: str, p: dict[str, Any]) -> dict[str, Any]:
    if operation == "ExecuteStatement":
        return model.execute_statement(p)
    if operation == "DescribeStatement":
        return model.describe_statement(p["Id"])
    if operation == "GetStatementResult":
        return model.get_statement_result(p["Id"], p.get("NextToken"))
    if operation == "CancelStatement":
        return model.cancel_statement(p["Id"])
    raise FrameworkError("NotImplementedInFake", f"The fake does not implement {operation}")


def _error(exc: RedshiftDataError, status: dict[str, int]) -> tuple[int, bytes]:
    namespace, code_status = FRAMEWORK.get(exc.code, (SERVICE_NAMESPACE, status.get(exc.code, 400)))
    body = {"__type": f"{namespace}#{exc.code}", "Message": str(exc), **exc.extra}
    return code_status, json.dumps(body).encode()


class _Handler(FakeHandler):
    server: _HTTPServer

    def do_POST(self) -> None:
        body = self.read_body()
        try:
            status, payload = 200, self._handle(body)
        except RedshiftDataError as exc:
            status, payload = _error(exc, self.server.error_status)
        except Exception as exc:  # a bug in the fake must reach the client as the 500 the service would send
            log.exception("fake Redshift Data API failed")
            status, payload = _error(RedshiftDataError(repr(exc)), {"InternalServerException": 500})
        self.reply(status, payload, CONTENT_TYPE)

    def _handle(self, body: bytes) -> bytes:
        check_sigv4(self.headers.get("Authorization", ""), SIGNING_NAME, FrameworkError)
        target = self.headers.get("X-Amz-Target", "")
        name = target.removeprefix(TARGET_PREFIX)
        if self.path != "/" or not target.startswith(TARGET_PREFIX) or name not in self.server.operations:
            raise FrameworkError("UnknownOperationException", f"Unknown operation {target!r}")
        if self.headers.get("Content-Type", "").split(";")[0].strip() != CONTENT_TYPE:
            raise FrameworkError("SerializationException", f"Content-Type must be {CONTENT_TYPE}")
        try:
            params = json.loads(body or b"{}")
        except ValueError as exc:
            raise FrameworkError("SerializationException", f"Request body is not JSON: {exc}") from exc
        operation = self.server.operations[name]
        validate_request(operation, params)
        self.server.model.calls.append(name)
        result = _invoke(self.server.model, name, params)
        self.server.check_response(operation, result)
        return json.dumps(result, separators=(",", ":")).encode()


class _HTTPServer(FakeHTTPServer):
    model: FakeRedshiftData

    def __init__(self, address: tuple[str, int], model: FakeRedshiftData) -> None:
        super().__init__(address, _Handler, model)
        service = service_model()
        self.operations = {name: service.operation_model(name) for name in service.operation_names}
        self.error_status = error_statuses(service)
        self.error_status.setdefault("InternalServerException", 500)


class RedshiftDataServer(FakeServer):
    """Serve ``model`` on ``host:port`` (port 0 picks a free one) in a background thread."""

    thread_name = "fake-redshift-data"
    model: FakeRedshiftData

    def __init__(self, model: FakeRedshiftData, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(_HTTPServer((host, port), model))
