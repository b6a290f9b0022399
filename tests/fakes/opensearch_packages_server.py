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
from collections.abc import Callable
from typing import Any

from tests.fakes.fake_server import FakeHandler, FakeHTTPServer, FakeServer, check_sigv4, error_statuses
from tests.fakes.opensearch_packages_model import FakeOpenSearchPackages, PackagesError
from tests.fakes.opensearch_packages_wire import (
    FrameworkError,
    request_params,
    routes,
    service_model,
    validate_request,
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


class _Handler(FakeHandler):
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
        self.reply(status, payload, "application/json", headers, crc32=False)

    def _handle(self, method: str, body: bytes) -> bytes:
        check_sigv4(self.headers.get("Authorization", ""), SIGNING_NAME, FrameworkError)
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
        self.server.check_response(operation, result)
        return json.dumps(result, separators=(",", ":")).encode()


class _HTTPServer(FakeHTTPServer):
    model: FakeOpenSearchPackages

    def __init__(self, address: tuple[str, int], model: FakeOpenSearchPackages) -> None:
        super().__init__(address, _Handler, model)
        service = service_model()
        self.routes = routes(service)
        self.error_status = error_statuses(service)


class OpenSearchPackagesServer(FakeServer):
    """Serve ``model`` on ``host:port`` (port 0 picks a free one) in a background thread."""

    thread_name = "fake-opensearch-packages"
    model: FakeOpenSearchPackages

    def __init__(self, model: FakeOpenSearchPackages, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(_HTTPServer((host, port), model))
