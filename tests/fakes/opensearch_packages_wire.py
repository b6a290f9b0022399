"""The REST-JSON wire of Amazon OpenSearch Service as botocore's model describes it, for the fake.

Routing (every operation's ``http.requestUri`` template), rebuilding an operation's parameters from
URI labels, query string, headers and JSON body by each member's ``location``, and checking values
against shapes: botocore's ``ParamValidator`` checks types, required and unknown members and
minimums; ``wire_errors`` adds what it leaves to the server (maximums, enums, patterns, wire types)
and also checks responses against output shapes.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from tests.fakes.fake_server import validate_params
from tests.fakes.opensearch_packages_model import PackagesError, ValidationError


class FrameworkError(PackagesError):
    """An error of AWS's request layer (signature, routing, body encoding), not a modelled one."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@functools.cache
def service_model() -> ServiceModel:
    """botocore's model of Amazon OpenSearch Service (loaded once per process)."""
    return botocore.session.get_session().get_service_model("opensearch")


def validate_request(operation: OperationModel, params: dict[str, Any]) -> None:
    """Raise ValidationError naming every way ``params`` breaks the operation's input shape."""
    validate_params(operation, params, ValidationError)


@dataclass(frozen=True)
class Route:
    method: str
    path: re.Pattern[str]
    literal_chars: int  # more literal text wins: /packages/describe before /packages/{PackageID}
    operation: OperationModel


def routes(service: ServiceModel) -> list[Route]:
    routes = []
    for name in service.operation_names:
        operation = service.operation_model(name)
        template = operation.http["requestUri"].split("?", 1)[0]
        parts = re.split(r"(\{[^}]+\})", template)
        regex = "".join(
            (f"(?P<{p[1:-2]}>.+)" if p.endswith("+}") else f"(?P<{p[1:-1]}>[^/]+)")
            if p.startswith("{")
            else re.escape(p)
            for p in parts
        )
        literal = sum(len(p) for p in parts if not p.startswith("{"))
        routes.append(Route(operation.http["method"], re.compile(regex), literal, operation))
    return sorted(routes, key=lambda r: -r.literal_chars)


def _from_text(texts: list[str], shape: Shape, wire_name: str) -> Any:
    """A URI, query-string or header value as the member's type."""
    if shape.type_name == "list":
        return [_from_text([t], shape.member, wire_name) for t in texts]  # type: ignore[attr-defined]
    text = texts[-1]
    if shape.type_name in ("integer", "long"):
        if not re.fullmatch(r"-?[0-9]+", text):
            raise ValidationError(
                f"Value '{text}' at '{wire_name}' failed to satisfy constraint: Member must be an integer"
            )
        return int(text)
    if shape.type_name == "boolean":
        if text not in ("true", "false"):
            raise ValidationError(
                f"Value '{text}' at '{wire_name}' failed to satisfy constraint: Member must be a boolean"
            )
        return text == "true"
    return text


def request_params(
    operation: OperationModel, labels: dict[str, str], query: str, headers: Any, body: bytes
) -> dict[str, Any]:
    """The operation's input parameters rebuilt from where each member travels on the wire."""
    shape = operation.input_shape
    assert shape is not None
    params: dict[str, Any] = {}
    in_body = set()
    query_values = urllib.parse.parse_qs(query, keep_blank_values=True)
    for name, member in shape.members.items():  # type: ignore[attr-defined]
        location, wire_name = member.serialization.get("location"), member.serialization.get("name", name)
        if location == "uri":
            params[name] = urllib.parse.unquote(labels[wire_name])
        elif location == "querystring" and wire_name in query_values:
            params[name] = _from_text(query_values[wire_name], member, wire_name)
        elif location == "header" and headers.get(wire_name) is not None:
            params[name] = _from_text([headers[wire_name]], member, wire_name)
        elif location is None:
            in_body.add(name)
    if body.strip():
        if headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise FrameworkError("SerializationException", "A request body must be sent as application/json")
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise FrameworkError("SerializationException", f"Request body is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise FrameworkError("SerializationException", "Request body must be a JSON object")
        misplaced = sorted(k for k in document if k in params or (k in shape.members and k not in in_body))  # type: ignore[attr-defined]
        if misplaced:
            raise ValidationError(f"{misplaced} must not be sent in the request body")
        params.update(document)
    return params
