"""Bulk writes through an overloaded cluster: 429 and 5xx are retried with backoff, nothing is lost.

A small HTTP proxy in front of the real local node answers the first bulk requests with 429 or
503 (as an overloaded cluster does), then forwards everything; another variant rewrites some
items of a real bulk response to per-item 429s. The documents must all arrive, exactly once.
"""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from connectors.config import RetryConfig
from connectors.opensearch.bulk import BulkError, BulkIndexer, Document
from connectors.opensearch.client import open_client
from connectors.opensearch.config import OpenSearchConfig

Rewrite = Callable[[int, bytes], tuple[int, bytes] | None]


class Proxy:
    """Forwards to the node; `rewrite(n, body)` may replace the n-th bulk response (called with an
    empty body first: a reply then stands for the whole request), `rewrite_request` its request."""

    def __init__(
        self, upstream: str, rewrite: Rewrite, rewrite_request: Callable[[int, bytes], bytes] | None = None
    ) -> None:
        self.upstream, self.rewrite, self.bulk_calls = upstream, rewrite, 0
        self.rewrite_request = rewrite_request
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length) if length else None
                is_bulk = self.path.split("?")[0].endswith("/_bulk")
                if is_bulk:
                    proxy.bulk_calls += 1
                    early = proxy.rewrite(proxy.bulk_calls, b"") if body is not None else None
                    if early is not None and early[1] == b"":
                        return self._reply(early[0], b'{"error":"overloaded","status":%d}' % early[0])
                    if proxy.rewrite_request is not None and body is not None:
                        body = proxy.rewrite_request(proxy.bulk_calls, body)
                request = urllib.request.Request(
                    proxy.upstream + self.path, data=body, method=self.command,
                    headers={k: v for k, v in self.headers.items() if k.lower() in ("content-type",)},
                )  # fmt: skip
                try:
                    with urllib.request.urlopen(request) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as err:
                    status, payload = err.code, err.read()
                if is_bulk:
                    changed = proxy.rewrite(proxy.bulk_calls, payload)
                    if changed is not None:
                        status, payload = changed
                self._reply(status, payload)

            def _reply(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def index(stack: Any) -> Iterator[tuple[str, Any]]:
    client = open_client(OpenSearchConfig(url=stack.opensearch_endpoint))
    name = f"retry-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=name, body={"settings": {"number_of_replicas": 0}})
    yield name, client
    client.indices.delete(index=name)


def _docs(n: int) -> list[Document]:
    return [Document(str(i), 1, {"n": i}) for i in range(n)]


def _count(client: Any, name: str) -> int:
    client.indices.refresh(index=name)
    return int(client.count(index=name)["count"])


def test_whole_request_429_and_503_are_retried(stack: Any, index: tuple[str, Any]) -> None:
    name, client = index
    answers = {1: 429, 2: 503}
    proxy = Proxy(
        stack.opensearch_endpoint, lambda n, body: (answers[n], b"") if n in answers and not body else None
    )
    try:
        pauses: list[float] = []
        bulk = BulkIndexer(
            open_client(OpenSearchConfig(url=proxy.url)),
            name,
            retry=RetryConfig(attempts=5),
            sleep=pauses.append,
        )
        result = bulk.write(_docs(50))
    finally:
        proxy.close()
    assert result.indexed == 50 and result.retries == 2 and len(pauses) == 2
    assert pauses[1] > 0 and _count(client, name) == 50


def test_per_item_429_are_retried_alone(stack: Any, index: tuple[str, Any]) -> None:
    """The first bulk call: every third document is "rejected" (not forwarded, answered 429)."""
    name, client = index
    rejected: list[str] = []
    bodies: list[list[str]] = []

    def rewrite_request(n: int, body: bytes) -> bytes:
        lines = body.decode().splitlines()
        pairs = [lines[i : i + 2] for i in range(0, len(lines), 2)]
        bodies.append([json.loads(p[0])["index"]["_id"] for p in pairs])
        if n != 1:
            return body
        kept = []
        for k, pair in enumerate(pairs):
            if k % 3 == 0:
                rejected.append(json.loads(pair[0])["index"]["_id"])
            else:
                kept.extend(pair)
        return ("\n".join(kept) + "\n").encode()

    def rewrite_response(n: int, body: bytes) -> tuple[int, bytes] | None:
        if n != 1 or not body:
            return None
        response = json.loads(body)
        items = iter(response["items"])
        merged = []
        for doc_id in bodies[0]:
            if doc_id in rejected:
                merged.append({"index": {"_index": name, "_id": doc_id, "status": 429,
                                         "error": {"type": "rejected_execution_exception", "reason": "queue full"}}})  # fmt: skip
            else:
                merged.append(next(items))
        return 200, json.dumps({**response, "errors": True, "items": merged}).encode()

    proxy = Proxy(stack.opensearch_endpoint, rewrite_response, rewrite_request)
    try:
        result = BulkIndexer(open_client(OpenSearchConfig(url=proxy.url)), name, sleep=lambda s: None).write(
            _docs(30)
        )
    finally:
        proxy.close()
    assert len(rejected) == 10 and bodies[1] == rejected  # only the rejected ones were sent again
    assert result.indexed == 30 and result.retries == 1 and not result.failures
    assert _count(client, name) == 30


def test_a_cluster_that_stays_overloaded_is_a_clear_error(stack: Any, index: tuple[str, Any]) -> None:
    name, _ = index
    proxy = Proxy(stack.opensearch_endpoint, lambda n, body: (429, b"") if not body else None)
    try:
        bulk = BulkIndexer(
            open_client(OpenSearchConfig(url=proxy.url)),
            name,
            retry=RetryConfig(attempts=3),
            sleep=lambda s: None,
        )
        with pytest.raises(BulkError, match="gave up after 3 attempts"):
            bulk.write(_docs(5))
    finally:
        proxy.close()
