"""HTTP front end of the fake DynamoDB Streams: the real JSON 1.0 protocol, checked against botocore.

Each request is checked as the service would before the model sees it: a SigV4 ``Authorization``
header, a known ``X-Amz-Target`` operation, and a body that satisfies the operation's input shape in
botocore's ``dynamodbstreams`` model. botocore's ``ParamValidator`` checks types, required members,
unknown members and minimums; ``wire_errors`` adds what it leaves to the server (maximums, enums,
patterns, JSON wire types) and is also what tests use to check every response against its output
shape. Errors are JSON-protocol error bodies, which botocore turns into
``client.exceptions.<Code>`` because it keeps the part of ``__type`` after ``#``.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import botocore.session
from botocore.model import OperationModel, ServiceModel
from botocore.utils import parse_to_aware_datetime
from botocore.validate import ParamValidator

from tests.fakes.ddb_streams_model import FakeStreams, RequestValidationError, StreamsError
from tests.fakes.wire_shape import wire_errors

log = logging.getLogger(__name__)

TARGET_PREFIX = "DynamoDBStreams_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
SERVICE_NAMESPACE = "com.amazonaws.dynamodb.v20120810"
# Errors raised by the AWS request framework rather than the service carry its namespaces.
FRAMEWORK_NAMESPACES = {
    "ValidationException": "com.amazon.coral.validate",
    "UnknownOperationException": "com.amazon.coral.service",
    "MissingAuthenticationTokenException": "com.amazon.coral.service",
    "SerializationException": "com.amazon.coral.service",
}


class UnknownOperationError(StreamsError):
    code = "UnknownOperationException"


class MissingAuthenticationTokenError(StreamsError):
    code = "MissingAuthenticationTokenException"


class SerializationError(StreamsError):
    code = "SerializationException"


@functools.cache
def service_model() -> ServiceModel:
    """botocore's model of DynamoDB Streams (loading it takes a while, so once per process)."""
    return botocore.session.get_session().get_service_model("dynamodbstreams")


def validate_request(operation: OperationModel, params: Any) -> None:
    """Raise RequestValidationError naming every way ``params`` breaks the operation's input shape."""
    shape = operation.input_shape
    assert shape is not None  # every DynamoDB Streams operation has an input
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise RequestValidationError(report.generate_report())
    errors = wire_errors(params, shape, "")
    if errors:
        raise RequestValidationError(f"{len(errors)} validation error(s) detected: " + "; ".join(errors))


def _invoke(model: FakeStreams, operation: str, p: dict[str, Any]) -> bytes:
    if operation == "GetRecords":
        return model.get_records(p["ShardIterator"], p.get("Limit"))
    if operation == "GetShardIterator":
        ts = p.get("Timestamp")
        result = model.get_shard_iterator(
            p["StreamArn"],
            p["ShardId"],
            p["ShardIteratorType"],
            p.get("SequenceNumber"),
            None if ts is None else parse_to_aware_datetime(ts).timestamp(),
        )
    elif operation == "DescribeStream":
        result = model.describe_stream(
            p["StreamArn"], p.get("Limit"), p.get("ExclusiveStartShardId"), p.get("ShardFilter")
        )
    else:
        result = model.list_streams(p.get("TableName"), p.get("Limit"), p.get("ExclusiveStartStreamArn"))
    return json.dumps(result, separators=(",", ":")).encode()


def _error_body(code: str, message: str) -> bytes:
    namespace = FRAMEWORK_NAMESPACES.get(code, SERVICE_NAMESPACE)
    return json.dumps({"__type": f"{namespace}#{code}", "message": message}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms per call.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            status, payload = 200, self._handle(body)
        except StreamsError as exc:
            status = 500 if exc.code == "InternalServerError" else 400
            payload = _error_body(exc.code, str(exc))
        except Exception as exc:  # a bug in the fake must reach the client as the 500 the service would send
            log.exception("fake DynamoDB Streams failed")
            status, payload = 500, _error_body("InternalServerError", repr(exc))
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", uuid.uuid4().hex.upper())
        self.send_header("x-amz-crc32", str(zlib.crc32(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self, body: bytes) -> bytes:
        if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
            raise MissingAuthenticationTokenError("Request is missing Authentication Token")
        target = self.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(TARGET_PREFIX)
        if (
            self.path != "/"
            or not target.startswith(TARGET_PREFIX)
            or operation not in self.server.operations
        ):
            raise UnknownOperationError(f"Unknown operation {target!r}")
        if self.headers.get("Content-Type", "").split(";")[0].strip() != CONTENT_TYPE:
            raise SerializationError(f"Content-Type must be {CONTENT_TYPE}")
        try:
            params = json.loads(body or b"{}")
        except ValueError as exc:
            raise SerializationError(f"Request body is not JSON: {exc}") from exc
        validate_request(self.server.operations[operation], params)
        return _invoke(self.server.model, operation, params)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        pass  # one line per request would swamp test output and slow benchmarks


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # daemon handler threads; stop() must not wait for idle keep-alive clients

    def __init__(self, address: tuple[str, int], model: FakeStreams) -> None:
        super().__init__(address, _Handler)
        self.model = model
        service = service_model()
        self.operations = {name: service.operation_model(name) for name in service.operation_names}


class FakeStreamsServer:
    """Serve ``model`` on ``host:port`` (port 0 picks a free one) in a background thread.

    Use as a context manager; ``endpoint_url`` is known as soon as the object exists.
    """

    def __init__(self, model: FakeStreams, host: str = "127.0.0.1", port: int = 0) -> None:
        self.model = model
        self._httpd = _HTTPServer((host, port), model)
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def endpoint_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._serving = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-ddb-streams", daemon=True
        )
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``stop`` is called from another thread."""
        self._serving = True
        self._httpd.serve_forever()

    def stop(self) -> None:
        if self._serving:  # shutdown() blocks forever unless serve_forever runs or is about to
            self._httpd.shutdown()
            self._serving = False
        if self._thread is not None:
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
