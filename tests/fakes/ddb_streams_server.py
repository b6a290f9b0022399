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
import re
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape
from botocore.utils import parse_to_aware_datetime
from botocore.validate import ParamValidator

from tests.fakes.ddb_streams_model import FakeStreams, RequestValidationError, StreamsError

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


def wire_errors(value: Any, shape: Shape, path: str = "") -> list[str]:
    """Everything about the decoded JSON ``value`` that breaks ``shape`` in the JSON 1.0 protocol."""
    where, t, meta = path or shape.name, shape.type_name, shape.metadata
    bad = f"Value {value!r:.60} at '{where}' failed to satisfy constraint: Member must"
    if t == "structure":
        if not isinstance(value, dict):
            return [f"{bad} be an object"]
        members: dict[str, Shape] = shape.members  # type: ignore[attr-defined]
        errors = [f"'{where}.{n}' is required" for n in meta.get("required", []) if n not in value]
        errors += [f"'{where}.{k}' is not a member of {shape.name}" for k in value if k not in members]
        if shape.name == "AttributeValue" and len(value) != 1:  # a union, though the model does not say so
            errors.append(f"{bad} set exactly one of {sorted(members)}")
        for k, v in value.items():
            if k in members:
                errors += wire_errors(v, members[k], f"{path}.{k}" if path else k)
        return errors
    if t == "list":
        if not isinstance(value, list):
            return [f"{bad} be a list"]
        errors = _range_errors(len(value), meta, bad, "have length")
        for i, v in enumerate(value):
            errors += wire_errors(v, shape.member, f"{where}[{i}]")  # type: ignore[attr-defined]
        return errors
    if t == "map":
        if not isinstance(value, dict):
            return [f"{bad} be an object"]
        errors = []
        for k, v in value.items():
            errors += wire_errors(k, shape.key, f"{where} key")  # type: ignore[attr-defined]
            errors += wire_errors(v, shape.value, f"{where}.{k}")  # type: ignore[attr-defined]
        return errors
    if t == "string":
        if not isinstance(value, str):
            return [f"{bad} be a string"]
        errors = _range_errors(len(value), meta, bad, "have length")
        if shape.enum and value not in shape.enum:  # type: ignore[attr-defined]
            errors.append(f"{bad} satisfy enum value set: {shape.enum}")  # type: ignore[attr-defined]
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            errors.append(f"{bad} satisfy regular expression pattern: {meta['pattern']}")
        return errors
    if t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{bad} be an integer"]
        return _range_errors(value, meta, bad, "have value")
    if t == "boolean":
        return [] if isinstance(value, bool) else [f"{bad} be a boolean"]
    if t == "timestamp":  # JSON 1.0 sends epoch seconds as a number
        return (
            []
            if isinstance(value, int | float) and not isinstance(value, bool)
            else [f"{bad} be epoch seconds"]
        )
    if t == "blob":
        return [] if isinstance(value, str) else [f"{bad} be base64 text"]
    return [f"'{where}' has shape type {t}, which this checker does not know"]


def _range_errors(n: int, meta: dict[str, Any], bad: str, what: str) -> list[str]:
    errors = []
    if "min" in meta and n < meta["min"]:
        errors.append(f"{bad} {what} greater than or equal to {meta['min']}")
    if "max" in meta and n > meta["max"]:
        errors.append(f"{bad} {what} less than or equal to {meta['max']}")
    return errors


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
