"""What every validating AWS fake's HTTP front end shares: the threaded server and its lifecycle,
the SigV4 check, request validation against botocore's model, the output-shape check of every
response, and writing a reply.

Each fake keeps what differs between AWS protocols (routing, error bodies, statuses) in its own
``*_server`` module; the service behaviour stays in its ``*_model`` module.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
import zlib
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from botocore.model import OperationModel, ServiceModel
from botocore.validate import ParamValidator

from tests.fakes.wire_shape import wire_errors

_SCOPE = re.compile(r"Credential=[^/,]+/[0-9]{8}/[^/,]+/([^/,]+)/aws4_request")


def check_sigv4(authorization: str, signing_name: str | None, error: Callable[[str, str], Exception]) -> None:
    """Refuse an unsigned request, or (with `signing_name`) one signed for another service."""
    if not authorization.startswith("AWS4-HMAC-SHA256"):
        raise error("MissingAuthenticationTokenException", "Missing Authentication Token")
    if signing_name is None:
        return
    scope = _SCOPE.search(authorization)
    if scope is None or scope.group(1) != signing_name:
        raise error(
            "InvalidSignatureException", f"Credential should be scoped to correct service: '{signing_name}'."
        )


def validate_params(operation: OperationModel, params: Any, error: Callable[[str], Exception]) -> None:
    """Raise `error(report)` naming every way `params` breaks the operation's input shape:
    botocore's ParamValidator (types, required and unknown members, minimums) plus `wire_errors`
    (maximums, enums, patterns, JSON wire types), which botocore leaves to the server."""
    shape = operation.input_shape
    assert shape is not None  # every operation the fakes serve has an input
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise error(report.generate_report())
    errors = wire_errors(params, shape, "")
    if errors:
        raise error(f"{len(errors)} validation error(s) detected: " + "; ".join(errors))


def error_statuses(service: ServiceModel) -> dict[str, int]:
    """Each modelled error's HTTP status (400 when the model does not say)."""
    return {s.name: int(s.metadata.get("error", {}).get("httpStatusCode", 400)) for s in service.error_shapes}


class FakeHTTPServer(ThreadingHTTPServer):
    """A threaded server holding the fake's model and the responses it refused to send."""

    daemon_threads = True
    block_on_close = False  # daemon handler threads; stop() must not wait for idle keep-alive clients

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], model: Any) -> None:
        super().__init__(address, handler)
        self.model = model
        self.response_problems: list[str] = []

    def check_response(self, operation: OperationModel, result: Mapping[str, Any]) -> None:
        """Never hand a client a response the real service could not send: record and refuse it."""
        assert operation.output_shape is not None
        problems = wire_errors(result, operation.output_shape, "")
        if problems:
            self.response_problems += [f"{operation.name}: {p}" for p in problems]
            raise RuntimeError(f"the fake built an invalid {operation.name} response: {problems}")


class FakeHandler(BaseHTTPRequestHandler):
    """Keep-alive, no Nagle, quiet; `reply` writes status, headers and body in one go."""

    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms per call.
    disable_nagle_algorithm = True

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: Mapping[str, str] = {},
        *,
        crc32: bool = True,
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if crc32:  # the JSON protocols send it and botocore checks it
            self.send_header("x-amz-crc32", str(zlib.crc32(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        pass  # one line per request would swamp test output and slow benchmarks


class FakeServer:
    """Serve a fake on ``host:port`` (port 0 picks a free one), in a background thread or the
    caller's. Use as a context manager; ``endpoint_url`` is known as soon as the object exists."""

    thread_name = "fake-aws"

    def __init__(self, httpd: FakeHTTPServer) -> None:
        self.model = httpd.model
        self._httpd = httpd
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def endpoint_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def response_problems(self) -> list[str]:
        """Responses the fake refused to send because they broke the output shape (should be empty)."""
        return list(self._httpd.response_problems)

    def start(self) -> None:
        self._serving = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name=self.thread_name, daemon=True
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


class ResponseAudit:
    """A boto3 `after-call` hook checking every response a client receives against the service
    model: a 200's raw body and parsed result against the output shape, an error's body by
    `error_problems` (the error formats differ between AWS protocols)."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checked = 0

    def __call__(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.checked += 1
        where = f"{model.name} ({http_response.status_code})"
        body = json.loads(http_response.content or b"{}")
        if http_response.status_code != 200:
            self.problems += [f"{where}: {p}" for p in self.error_problems(http_response, body, model)]
            return
        self.problems += [f"{where}: {e}" for e in wire_errors(body, model.output_shape)]
        result = {k: v for k, v in parsed.items() if k != "ResponseMetadata"}
        report = ParamValidator().validate(result, model.output_shape)
        if report.has_errors():
            self.problems.append(f"{where}: {report.generate_report()}")

    def error_problems(self, http_response: Any, body: dict[str, Any], model: Any) -> list[str]:
        """What is wrong with an error response (nothing, unless a subclass checks)."""
        return []
