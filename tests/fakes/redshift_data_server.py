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
import re
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import botocore.session
from botocore.model import OperationModel, ServiceModel
from botocore.validate import ParamValidator

from tests.fakes.redshift_data_model import FakeRedshiftData, RedshiftDataError, ValidationError
from tests.fakes.wire_shape import wire_errors

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
    shape = operation.input_shape
    assert shape is not None  # every Data API operation has an input
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise ValidationError(report.generate_report())
    errors = wire_errors(params, shape, "")
    if errors:
        raise ValidationError(f"{len(errors)} validation error(s) detected: " + "; ".join(errors))


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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms per call.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            status, payload = 200, self._handle(body)
        except RedshiftDataError as exc:
            status, payload = _error(exc, self.server.error_status)
        except Exception as exc:  # a bug in the fake must reach the client as the 500 the service would send
            log.exception("fake Redshift Data API failed")
            status, payload = _error(RedshiftDataError(repr(exc)), {"InternalServerException": 500})
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("x-amz-crc32", str(zlib.crc32(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self, body: bytes) -> bytes:
        authorization = self.headers.get("Authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            raise FrameworkError("MissingAuthenticationTokenException", "Missing Authentication Token")
        scope = re.search(r"Credential=[^/,]+/[0-9]{8}/[^/,]+/([^/,]+)/aws4_request", authorization)
        if scope is None or scope.group(1) != SIGNING_NAME:
            raise FrameworkError(
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{SIGNING_NAME}'.",
            )
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
        assert operation.output_shape is not None
        problems = wire_errors(result, operation.output_shape, "")
        if problems:  # never hand a client a response the real service could not send
            self.server.response_problems += [f"{name}: {p}" for p in problems]
            raise RuntimeError(f"the fake built an invalid {name} response: {problems}")
        return json.dumps(result, separators=(",", ":")).encode()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        pass  # one line per request would swamp test output


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # daemon handler threads; stop() must not wait for idle keep-alive clients

    def __init__(self, address: tuple[str, int], model: FakeRedshiftData) -> None:
        super().__init__(address, _Handler)
        self.model = model
        service = service_model()
        self.operations = {name: service.operation_model(name) for name in service.operation_names}
        self.error_status = {
            s.name: int(s.metadata.get("error", {}).get("httpStatusCode", 400)) for s in service.error_shapes
        }
        self.error_status.setdefault("InternalServerException", 500)
        self.response_problems: list[str] = []


class RedshiftDataServer:
    """Serve ``model`` on ``host:port`` (port 0 picks a free one) in a background thread.

    Use as a context manager; ``endpoint_url`` is known as soon as the object exists.
    """

    def __init__(self, model: FakeRedshiftData, host: str = "127.0.0.1", port: int = 0) -> None:
        self.model = model
        self._httpd = _HTTPServer((host, port), model)
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def response_problems(self) -> list[str]:
        """Responses the fake refused to send because they broke the output shape (should be empty)."""
        return list(self._httpd.response_problems)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-redshift-data", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
