"""Bulk indexing with external versions: sized by bytes, retried with backoff, nothing lost.

Every document carries an external version derived from the lake's commit positions, so
OpenSearch itself refuses a write older than what it holds (HTTP 409 on that item): a late or
replayed change can never overwrite a newer one. The version type is ``external_gte``: a write of
the version the index already holds is applied (the same lake state builds the same document, so
a replayed batch is harmless, and a rebuild with new document code takes effect). Deletes carry
versions too; the index keeps delete tombstones for `index.gc_deletes` (1 day in our templates) so
a late upsert cannot resurrect a deleted document either.

Requests are cut at `max_bytes` of NDJSON. A whole request that fails with 429/5xx or a
connection error is retried with exponential backoff; so are the items of a response that failed
with 429/5xx. Items that fail otherwise (a mapping error, say) are returned as `Failure`s for the
caller's dead-letter table, with the reason.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import TransportError

from connectors.config import RetryConfig
from connectors.usage import METER

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Document:
    """One document write: `source` None means delete. `version` is external (monotonic)."""

    doc_id: str
    version: int
    source: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Failure:
    """A document OpenSearch refused for good, with the reason (for the dead-letter table)."""

    doc_id: str
    version: int
    status: int
    reason: str
    source: dict[str, Any] | None


@dataclass
class BulkResult:
    indexed: int = 0
    deleted: int = 0
    stale: int = 0  # refused because the index already holds a newer version
    requests: int = 0
    retries: int = 0
    failures: list[Failure] = field(default_factory=list)

    def add(self, other: BulkResult) -> None:
        self.indexed += other.indexed
        self.deleted += other.deleted
        self.stale += other.stale
        self.requests += other.requests
        self.retries += other.retries
        self.failures.extend(other.failures)


class BulkError(Exception):
    """OpenSearch stayed unavailable through every retry; nothing after the last success was written."""


class BulkIndexer:
    """Writes `Document`s to an index (or alias) with external versions."""

    def __init__(
        self,
        client: OpenSearch,
        index: str,
        *,
        max_bytes: int = 5 * 1024 * 1024,
        max_docs: int = 5_000,
        retry: RetryConfig | None = None,
        refresh: bool | str = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.index = index
        self.max_bytes = max_bytes
        self.max_docs = max_docs
        self.retry = retry or RetryConfig()
        self.refresh = refresh
        self._sleep = sleep

    def write(self, documents: Iterable[Document]) -> BulkResult:
        result = BulkResult()
        for chunk in self._chunks(documents):
            result.add(self._send(chunk))
        return result

    def _chunks(self, documents: Iterable[Document]) -> Iterator[list[tuple[Document, bytes]]]:
        chunk: list[tuple[Document, bytes]] = []
        size = 0
        for doc in documents:
            lines = _ndjson(self.index, doc)
            if chunk and (size + len(lines) > self.max_bytes or len(chunk) >= self.max_docs):
                yield chunk
                chunk, size = [], 0
            chunk.append((doc, lines))
            size += len(lines)
        if chunk:
            yield chunk

    def _send(self, chunk: Sequence[tuple[Document, bytes]]) -> BulkResult:
        result = BulkResult()
        pending = list(chunk)
        attempt = 0
        while pending:
            body = b"".join(lines for _, lines in pending)
            try:
                METER.record("opensearch", "Bulk", self.index, requests=1, sent=len(body))
                response = self.client.bulk(body=body, refresh=self.refresh)
                result.requests += 1
            except (OpenSearchConnectionError, TransportError) as exc:
                status = getattr(exc, "status_code", None)
                connection_lost = isinstance(exc, OpenSearchConnectionError)
                if not connection_lost and (not isinstance(status, int) or status not in RETRYABLE_STATUS):
                    raise BulkError(f"bulk request to {self.index} failed: {exc}") from None
                attempt = self._backoff(attempt, f"bulk request to {self.index} failed ({exc})")
                result.retries += 1
                continue
            retry: list[tuple[Document, bytes]] = []
            for (doc, lines), item in zip(pending, response["items"], strict=True):
                ((_, outcome),) = item.items()
                status = int(outcome.get("status", 500))
                if 200 <= status < 300:
                    if doc.source is None:
                        result.deleted += 1
                    else:
                        result.indexed += 1
                elif status == 409:
                    result.stale += 1
                elif status == 404 and doc.source is None:
                    result.deleted += 1  # deleting what is not there (yet): the tombstone is written
                elif status in RETRYABLE_STATUS:
                    retry.append((doc, lines))
                else:
                    result.failures.append(
                        Failure(doc.doc_id, doc.version, status, _reason(outcome), doc.source)
                    )
            if retry:
                attempt = self._backoff(attempt, f"{len(retry)} documents were refused with 429/5xx")
                result.retries += 1
            pending = retry
        return result

    def _backoff(self, attempt: int, what: str) -> int:
        attempt += 1
        if attempt >= self.retry.attempts:
            raise BulkError(f"{what}; gave up after {attempt} attempts")
        pause = min(self.retry.max_seconds, self.retry.initial_seconds * 2 ** (attempt - 1))
        pause *= random.uniform(0.5, 1.0)  # jitter: many writers should not retry in step
        log.warning(
            "%s; retrying in %.1f s (attempt %d of %d)", what, pause, attempt + 1, self.retry.attempts
        )
        self._sleep(pause)
        return attempt


def _ndjson(index: str, doc: Document) -> bytes:
    meta = {"_index": index, "_id": doc.doc_id, "version": doc.version, "version_type": "external_gte"}
    if doc.source is None:
        return orjson.dumps({"delete": meta}) + b"\n"
    return orjson.dumps({"index": meta}) + b"\n" + orjson.dumps(doc.source, default=str) + b"\n"


def _reason(outcome: dict[str, Any]) -> str:
    error = outcome.get("error")
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}"[:2000]
    return str(error)[:2000]
