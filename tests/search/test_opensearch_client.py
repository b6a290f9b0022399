"""One client for every cluster: no auth (local node), basic auth (any cluster), SigV4 (AWS).

A tiny HTTP server stands in for the cluster and records what arrives; the point is what the
client sends: the Authorization header, and never the secret in clear.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.opensearch.client import open_client
from connectors.opensearch.config import OpenSearchConfig


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = b'{"name":"rec","cluster_name":"rec","version":{"number":"2.19.6","distribution":"opensearch"}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_no_auth_sends_no_authorization(recorder: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = recorder
    assert open_client(OpenSearchConfig(url=url)).info()["cluster_name"] == "rec"
    assert "authorization" not in seen[-1]


def test_basic_auth(recorder: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = recorder
    config = OpenSearchConfig(url=url, auth="basic", username="search", password=SecretStr("s3cr3t"))
    open_client(config).info()
    assert seen[-1]["authorization"] == "Basic " + base64.b64encode(b"search:s3cr3t").decode()
    assert "s3cr3t" not in repr(config)


def test_sigv4_signs_for_the_configured_region_and_service(
    recorder: tuple[str, list[dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = recorder
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    open_client(OpenSearchConfig(url=url, auth="sigv4", region="eu-west-1", service="es")).info()
    auth = seen[-1]["authorization"]
    assert (
        auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/eu-west-1/es/aws4_request" in auth
    )
    assert "wJalrXUtnFEMI" not in auth and "x-amz-date" in seen[-1]


def test_basic_auth_needs_both_fields() -> None:
    with pytest.raises(ValueError, match="needs username and password"):
        OpenSearchConfig(auth="basic", username="search")
