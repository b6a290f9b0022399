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
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel
from botocore.utils import parse_to_aware_datetime

from tests.fakes.ddb_streams_model import FakeStreams, RequestValidationError, StreamsError
from tests.fakes.fake_server import FakeHandler, FakeHTTPServer, FakeServer, check_sigv4, validate_params
from tests.fakes.wire_shape import wire_errors

log = logging.getLogger(__name__)

__all__ = ["FakeStreamsServer", "service_model", "validate_request", "wire_errors"]

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


_FRAMEWORK_ERRORS = {
    e.code: e for e in (UnknownOperationError, MissingAuthenticationTokenError, SerializationError)
}


def FrameworkError(code: str, message: str) -> StreamsError:  # noqa: N802 -- used like a class
    """An error of AWS's request layer (signature, routing, body encoding), not a modelled one."""
    return _FRAMEWORK_ERRORS[code](message)


@functools.cache
def service_model() -> ServiceModel:
    """botocore's model of DynamoDB Streams (loading it takes a while, so once per process)."""
    return botocore.session.get_session().get_service_model("dynamodbstreams")


def validate_request(operation: OperationModel, params: Any) -> None:
    """Raise RequestValidationError naming every way ``params`` breaks the operation's input shape."""
    validate_params(operation, params, RequestValidationError)


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


class _Handler(FakeHandler):
    server: _HTTPServer

    def do_POST(self) -> None:
        body = self.read_body()
        try:
            status, payload = 200, self._handle(body)
        except StreamsError as exc:
            status = 500 if exc.code == "InternalServerError" else 400
            payload = _error_body(exc.code, str(exc))
        except Exception as exc:  # a bug in the fake must reach the client as the 500 the service would send
            log.exception("fake DynamoDB Streams failed")
            status, payload = 500, _error_body("InternalServerError", repr(exc))
        self.reply(status, payload, CONTENT_TYPE)

    def _handle(self, body: bytes) -> bytes:
        check_sigv4(self.headers.get("Authorization", ""), None, FrameworkError)
        target = self.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(TARGET_PREFIX)
        if (
            self.path != "/"
            or not target.startswith(TARGET_PREFIX)
            or operation not in self.server.operations
        ):
            raise FrameworkError("UnknownOperationException", f"Unknown operation {target!r}")
        if self.headers.get("Content-Type", "").split(";")[0].strip() != CONTENT_TYPE:
            raise FrameworkError("SerializationException", f"Content-Type must be {CONTENT_TYPE}")
        try:
            params = json.loads(body or b"{}")
        except ValueError as exc:
            raise FrameworkError("SerializationException", f"Request body is not JSON: {exc}") from exc
        validate_request(self.server.operations[operation], params)
        return _invoke(self.server.model, operation, params)


class _HTTPServer(FakeHTTPServer):
    model: FakeStreams

    def __init__(self, address: tuple[str, int], model: FakeStreams) -> None:
        super().__init__(address, _Handler, model)
        service = service_model()
        self.operations = {name: service.operation_model(name) for name in service.operation_names}


class FakeStreamsServer(FakeServer):
    """Serve ``model`` on ``host:port`` (port 0 picks a free one), in a thread or the caller's."""

    thread_name = "fake-ddb-streams"
    model: FakeStreams

    def __init__(self, model: FakeStreams, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(_HTTPServer((host, port), model))
