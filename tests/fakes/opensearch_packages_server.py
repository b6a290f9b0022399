"""HTTP front end of the fake OpenSearch Service packages API: REST-JSON as botocore's model says.

Each request is routed and checked the way the service would before the model sees it: a SigV4
``Authorization`` header scoped to the ``es`` signing name; an operation found by matching the method
and path against every operation's ``http.requestUri`` template in botocore's ``opensearch`` model
(all 100-odd operations, so a request for one the fake does not implement is named, not misrouted);
parameters rebuilt from URI labels, query string and JSON body by each input member's ``location``;
then botocore's ``ParamValidator`` (types, required, unknown members, minimums) and ``wire_errors``
(maximums, enums, patterns, wire types) on the result (all in ``opensearch_packages_wire``). Responses are checked against the output
shape before they leave: a fake that answers wrongly fails loudly (500, and ``response_problems``).

Errors carry the code in ``x-amzn-ErrorType`` (``Code:<namespace>``, as AWS's REST services send it)
and ``{"message": ...}``; botocore's rest-json parser takes the code from that header, so clients
raise ``client.exceptions.<Code>``. HTTP statuses are the model's (``ResourceNotFoundException`` is 409).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from tests.fakes.opensearch_packages_model import FakeOpenSearchPackages, PackagesError
from tests.fakes.opensearch_packages_wire import (
    FrameworkError,
    request_params,
    routes,
    service_model,
    validate_request,
    wire_errors,
)

log = logging.getLogger(__name__)

SIGNING_NAME = "es"  # the service model's signingName/endpointPrefix: SigV4 scopes must name it
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazonaws.es/"
# Errors raised by the request framework rather than the service (not in the model's error shapes).
FRAMEWORK_STATUS = {
    "MissingAuthenticationTokenException": 403,
    "InvalidSignatureException": 403,
    "UnknownOperationException": 404,
    "SerializationException": 400,
    "NotImplementedInFake": 501,
}


def _invoke(model: FakeOpenSearchPackages, operation: str, p: dict[str, Any]) -> dict[str, Any]:
    handlers: dict[str, Callable[[], dict[str, Any]]] = {
        "CreatePackage": lambda: model.create_package(p),
        "UpdatePackage": lambda: model.update_package(p),
        "DescribePackages": lambda: model.describe_packages(p),
        "AssociatePackage": lambda: model.associate_package(p["PackageID"], p["DomainName"]),
        "DissociatePackage": lambda: model.dissociate_package(p["PackageID"], p["DomainName"]),
        "ListDomainsForPackage": lambda: model.list_domains_for_package(p),
        "ListPackagesForDomain": lambda: model.list_packages_for_domain(p),
        "GetPackageVersionHistory": lambda: model.get_package_version_history(p),
        "DeletePackage": lambda: model.delete_package(p["PackageID"]),
    }
    if operation not in handlers:
        raise FrameworkError("NotImplementedInFake", f"The fake does not implement {operation}")
    return handlers[operation]()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms per call.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers: dict[str, str] = {}
        try:
            status, payload = 200, self._handle(method, body)
        except PackagesError as exc:
            status = FRAMEWORK_STATUS.get(exc.code) or self.server.error_status.get(exc.code, 400)
            headers["x-amzn-ErrorType"] = f"{exc.code}:{ERROR_NAMESPACE}"
            payload = json.dumps({"message": str(exc)}).encode()
        except Exception as exc:  # a bug in the fake must reach the client as the 500 the service would send
            log.exception("fake OpenSearch packages API failed")
            status, headers["x-amzn-ErrorType"] = 500, f"InternalException:{ERROR_NAMESPACE}"
            payload = json.dumps({"message": repr(exc)}).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(payload)

    def _handle(self, method: str, body: bytes) -> bytes:
        authorization = self.headers.get("Authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            raise FrameworkError("MissingAuthenticationTokenException", "Missing Authentication Token")
        scope = re.search(r"Credential=[^/,]+/[0-9]{8}/[^/,]+/([^/,]+)/aws4_request", authorization)
        if scope is None or scope.group(1) != SIGNING_NAME:
            raise FrameworkError(
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{SIGNING_NAME}'.",
            )
        path, _, query = self.path.partition("?")
        for route in self.server.routes:
            match = route.path.fullmatch(path)
            if match is not None and route.method == method:
                break
        else:
            raise FrameworkError("UnknownOperationException", f"No operation matches {method} {path}")
        operation = route.operation
        params = request_params(operation, match.groupdict(), query, self.headers, body)
        validate_request(operation, params)
        self.server.model.calls.append(operation.name)
        result = _invoke(self.server.model, operation.name, params)
        assert operation.output_shape is not None
        problems = wire_errors(result, operation.output_shape, "")
        if problems:  # never hand a client a response the real service could not send
            self.server.response_problems += [f"{operation.name}: {p}" for p in problems]
            raise RuntimeError(f"the fake built an invalid {operation.name} response: {problems}")
        return json.dumps(result, separators=(",", ":")).encode()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        pass  # one line per request would swamp test output


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # daemon handler threads; stop() must not wait for idle keep-alive clients

    def __init__(self, address: tuple[str, int], model: FakeOpenSearchPackages) -> None:
        super().__init__(address, _Handler)
        self.model = model
        service = service_model()
        self.routes = routes(service)
        self.error_status = {
            s.name: int(s.metadata.get("error", {}).get("httpStatusCode", 400)) for s in service.error_shapes
        }
        self.response_problems: list[str] = []


class OpenSearchPackagesServer:
    """Serve ``model`` on ``host:port`` (port 0 picks a free one) in a background thread.

    Use as a context manager; ``endpoint_url`` is known as soon as the object exists.
    """

    def __init__(self, model: FakeOpenSearchPackages, host: str = "127.0.0.1", port: int = 0) -> None:
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
            target=self._httpd.serve_forever, args=(0.05,), name="fake-opensearch-packages", daemon=True
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
