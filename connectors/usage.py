"""What a run costs in requests and bytes, per service and per table, and what that may cost in money.

Every hop is paid for: S3 requests, Glue catalog calls, bytes crossing an Availability Zone or a
Region (from the source databases, to OpenSearch and Redshift). One process-wide `METER` counts
them as they happen:

- boto3 traffic, counted by botocore's ``before-send`` event on each client we make (`instrument`):
  one request per HTTP attempt (retries included, as the service bills them), the bytes of its
  body, and for S3 the response bytes of GetObject. The table is read off the request: the S3 key
  (`lake_table_of_key`) or the Glue call's database and table.
- pyarrow's own S3 reads (data files opened by pyiceberg and DuckDB-free readers): pyarrow makes
  its HTTP requests in C++, out of botocore's sight, so each file opened counts as one GetObject and
  one HeadObject; the ranged GETs a large file takes are not seen (a lower bound, said so in reports).
- bytes read from a source, recorded by its connector (binlog event sizes, logical replication
  payloads, Streams response bodies), and bytes sent to OpenSearch, by their callers (`record`).

A run takes a `snapshot()` before and after and reports the difference (`Usage`); `estimate`
prices it with the configured price table (`Prices`, `[costs]` in lakehouse.toml).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import Field

from connectors.config import FrozenModel

# What the keys of a `Usage` mean: (service, operation, table). `table` is "source.lake_table", a
# source name alone (its commit log, leases), or "-" when the request names none.
UsageKey = tuple[str, str, str]

# The services of sources: their bytes received are what crossing from a source costs.
SOURCE_SERVICES = frozenset({"mysql", "postgres", "dynamodb", "dynamodbstreams"})

S3_WRITES = frozenset(
    {"PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}
)


@dataclass(frozen=True)
class Usage:
    """Requests, bytes sent and bytes received per (service, operation, table)."""

    requests: Mapping[UsageKey, int] = field(default_factory=dict)
    bytes_sent: Mapping[UsageKey, int] = field(default_factory=dict)
    bytes_received: Mapping[UsageKey, int] = field(default_factory=dict)

    def minus(self, earlier: Usage) -> Usage:
        """What happened between `earlier` and this snapshot."""

        def diff(a: Mapping[UsageKey, int], b: Mapping[UsageKey, int]) -> dict[UsageKey, int]:
            return {k: v - b.get(k, 0) for k, v in a.items() if v - b.get(k, 0)}

        return Usage(
            diff(self.requests, earlier.requests),
            diff(self.bytes_sent, earlier.bytes_sent),
            diff(self.bytes_received, earlier.bytes_received),
        )

    def plus(self, other: Usage) -> Usage:
        def add(a: Mapping[UsageKey, int], b: Mapping[UsageKey, int]) -> dict[UsageKey, int]:
            return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}

        return Usage(
            add(self.requests, other.requests),
            add(self.bytes_sent, other.bytes_sent),
            add(self.bytes_received, other.bytes_received),
        )

    def where(self, keep: Callable[[UsageKey], bool]) -> Usage:
        """The part of this usage whose (service, operation, table) keys `keep` accepts."""
        return Usage(
            {k: v for k, v in self.requests.items() if keep(k)},
            {k: v for k, v in self.bytes_sent.items() if keep(k)},
            {k: v for k, v in self.bytes_received.items() if keep(k)},
        )

    def of_source(self, source: str) -> Usage:
        """The part of this usage on `source`'s tables and commit log (and its search index)."""
        return self.where(lambda k: k[2] == source or k[2].startswith(f"{source}."))

    def of_table(self, table: str) -> Usage:
        """The part of this usage on one table ("source.lake_table")."""
        return self.where(lambda k: k[2] == table)

    def only(self, *, service: str | None = None, table_prefix: str | None = None) -> Usage:
        """The part of this usage of one service and/or of the tables starting with a prefix."""
        return self.where(
            lambda k: (
                (service is None or k[0] == service)
                and (table_prefix is None or k[2].startswith(table_prefix))
            )
        )

    def source_bytes(self) -> int:
        """Bytes received from the sources' own servers and services (binlog, replication, Streams)."""
        return sum(v for k, v in self.bytes_received.items() if k[0] in SOURCE_SERVICES)

    def total(self, what: str = "requests", *, operations: Iterable[str] | None = None) -> int:
        counts: Mapping[UsageKey, int] = getattr(self, what)
        ops = set(operations) if operations is not None else None
        return sum(v for k, v in counts.items() if ops is None or k[1] in ops)

    def by_table(self) -> dict[str, dict[str, int]]:
        """Per table: requests and bytes per service ("s3 requests", "s3 bytes sent", ...)."""
        out: dict[str, Counter[str]] = {}
        for name in ("requests", "bytes_sent", "bytes_received"):
            for (service, _op, table), v in getattr(self, name).items():
                out.setdefault(table, Counter())[f"{service} {name.replace('_', ' ')}"] += v
        return {t: dict(c) for t, c in sorted(out.items())}


class Meter:
    """Process-wide counters; thread-safe (capture, maintenance and worker threads all count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[UsageKey] = Counter()
        self._sent: Counter[UsageKey] = Counter()
        self._received: Counter[UsageKey] = Counter()

    def record(
        self,
        service: str,
        operation: str,
        table: str = "-",
        *,
        requests: int = 0,
        sent: int = 0,
        received: int = 0,
    ) -> None:
        key = (service, operation, table)
        with self._lock:
            if requests:
                self._requests[key] += requests
            if sent:
                self._sent[key] += sent
            if received:
                self._received[key] += received

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(dict(self._requests), dict(self._sent), dict(self._received))


METER = Meter()


def lake_table_of_key(key: str) -> str:
    """The table an object of the lake belongs to, from its key (any prefix before the layout).

    ``.../changelog/<source>/<table>/...`` and ``.../current/<source>[.db]/<table>/...`` (Iceberg
    data, deletes and metadata) give "source.table"; ``_staging/<source>/<unit>/<n>.<table>.parquet``
    (a change-log file before its commit moves it) too; ``.../_commits/<source>/...``,
    ``_usage/<source>/`` and
    ``.../_leases/<source>.json`` give the source; anything else "-".
    """
    parts = key.split("/")
    for i, part in enumerate(parts[:-1]):
        rest = parts[i + 1 :]
        if part == "changelog" and len(rest) >= 3:
            return f"{rest[0]}.{rest[1]}"
        if part == "current" and len(rest) >= 3:  # Glue: <source>.db/; SQLite catalog: <source>/
            return f"{rest[0].removesuffix('.db')}.{rest[1]}"
        if part == "_staging" and len(rest) == 3 and rest[2].count(".") == 2:
            return f"{rest[0]}.{rest[2].split('.')[1]}"  # <source>/<unit>/<n>.<table>.parquet
        if part in ("_commits", "_staging", "_usage") and len(rest) >= 2:
            return rest[0]
        if part == "_leases" and rest:
            return rest[0].removesuffix(".json")
    return "-"


def _glue_body_table(body: bytes) -> str:
    """`_glue_table` of a Glue request's JSON body."""
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        return "-"
    return _glue_table(params) if isinstance(params, dict) else "-"


def _glue_table(params: Mapping[str, Any]) -> str:
    """ "database.table" of a Glue call's parameters (the lake's database is its source), or the database."""
    database = params.get("DatabaseName") or (params.get("DatabaseInput") or {}).get("Name")
    table = params.get("TableName") or (params.get("TableInput") or {}).get("Name")
    if database is None:
        database, table = params.get("Name"), None  # GetDatabase, DeleteDatabase
    elif table is None:
        table = params.get("Name")  # GetTable, DeleteTable
    if not isinstance(database, str):
        return "-"
    return f"{database}.{table}" if isinstance(table, str) else database


def _body_size(request: Any) -> int:
    length = request.headers.get("Content-Length")
    if length is not None:
        return int(length)
    body = request.body
    return len(body) if isinstance(body, bytes | bytearray) else 0


def instrument(client: Any, meter: Meter = METER, *, owner: str = "-") -> Any:
    """Count every HTTP request `client` sends (retries too), its body bytes, and the bytes of
    each answer. The table is read off S3 keys and Glue calls; other services' calls count to
    `owner` (a DynamoDB source's clients: the source)."""
    if getattr(client.meta, "lakehouse_metered", False):
        return client
    service = client.meta.service_model.service_name
    event = client.meta.service_model.service_id.hyphenize()

    def on_send(request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        if service == "s3":
            path = urlsplit(request.url).path.lstrip("/")
            key = unquote(path.split("/", 1)[1]) if "/" in path else ""
            table = lake_table_of_key(key)
        elif service == "glue":
            table = _glue_body_table(request.body if isinstance(request.body, bytes) else b"")
        else:
            table = owner
        meter.record(service, operation, table, requests=1, sent=_body_size(request))

    def note_table(params: Any, context: Any, **_: Any) -> None:
        if service == "s3":
            context["lakehouse_table"] = lake_table_of_key(params.get("Key", ""))
        elif service == "glue":
            context["lakehouse_table"] = _glue_table(params)
        else:
            context["lakehouse_table"] = owner

    def on_answer(http_response: Any, context: Any, event_name: str, **_: Any) -> None:
        length = http_response.headers.get("Content-Length") if http_response is not None else None
        if length:
            operation = event_name.rsplit(".", 1)[-1]
            meter.record(service, operation, context.get("lakehouse_table", owner), received=int(length))

    client.meta.events.register(f"before-send.{event}", on_send)
    client.meta.events.register(f"before-call.{event}", note_table)
    client.meta.events.register(f"after-call.{event}", on_answer)
    client.meta.lakehouse_metered = True
    return client


def record_pyarrow_read(key: str, size: int | None, *, found: bool = True, meter: Meter = METER) -> None:
    """A file opened by pyarrow's own S3 client: a HeadObject (its size) and, when it exists, at
    least one ranged GetObject. Bytes: the object's size when known (random access), an upper bound."""
    table = lake_table_of_key(key)
    meter.record("s3", "HeadObject (pyarrow)", table, requests=1)
    if found:
        meter.record("s3", "GetObject (pyarrow)", table, requests=1, received=size or 0)


def record_pyarrow_info(key: str, *, found: bool, meter: Meter = METER) -> None:
    """pyarrow asked whether an object exists: a HeadObject, and when there is none a
    ListObjectsV2 as well (to see whether the key is a "directory")."""
    table = lake_table_of_key(key)
    meter.record("s3", "HeadObject (pyarrow)", table, requests=1)
    if not found:
        meter.record("s3", "ListObjectsV2 (pyarrow)", table, requests=1)


def record_pyarrow_list(prefix: str, entries: int, meter: Meter = METER) -> None:
    """pyarrow listed a prefix: one ListObjectsV2 per 1,000 entries."""
    meter.record(
        "s3",
        "ListObjectsV2 (pyarrow)",
        lake_table_of_key(prefix + "/x"),
        requests=max(1, -(-entries // 1000)),
    )


# -- prices ---------------------------------------------------------------------------------------
class Placement(FrozenModel):
    """Where an endpoint runs, for transfer prices: its Region and, within it, its Availability Zone id."""

    region: str = Field(..., description="AWS Region, e.g. us-east-1.")
    az: str | None = Field(None, description="Availability Zone id (use1-az1); unset: same AZ as the worker.")


class Prices(FrozenModel):
    """A small price table (USD); the defaults are us-east-1 list prices, edit them for your account."""

    s3_write_requests_per_1000: float = Field(0.005, ge=0, description="PUT, COPY, POST, LIST per 1,000.")
    s3_read_requests_per_1000: float = Field(0.0004, ge=0, description="GET, HEAD and others per 1,000.")
    glue_requests_per_million: float = Field(1.0, ge=0, description="Data Catalog requests per million.")
    cross_az_per_gb: float = Field(0.02, ge=0, description="Bytes between AZs (0.01 out + 0.01 in) per GB.")
    cross_region_per_gb: float = Field(0.02, ge=0, description="Bytes between Regions per GB.")
    worker: Placement | None = Field(None, description="Where lakehouse itself runs.")
    endpoints: dict[str, Placement] = Field(
        default_factory=dict,
        description="Where each endpoint runs: 'lake', 'opensearch', 'redshift', or a source's name.",
    )


_S3_WRITE_CLASS = S3_WRITES | {"ListObjectsV2", "ListObjects", "DeleteObjects", "AbortMultipartUpload"}


# Whose endpoint the bytes of a service's calls cross to: the lake's bucket, the search domain, the
# warehouse, or (for a source's services) the source named by the table key.
_ENDPOINT_OF_SERVICE = {"s3": "lake", "opensearch": "opensearch", "redshift-data": "redshift"}


def estimate(usage: Usage, prices: Prices) -> dict[str, float]:
    """Estimated USD per cost line: S3 requests, Glue requests, and the bytes to and from each
    endpoint placed in another AZ or Region than the worker (`prices.endpoints`)."""
    s3 = usage.only(service="s3")
    writes = s3.total(operations=_S3_WRITE_CLASS)
    reads = s3.total() - writes
    out = {
        "s3 write requests": writes / 1000 * prices.s3_write_requests_per_1000,
        "s3 read requests": reads / 1000 * prices.s3_read_requests_per_1000,
        "glue requests": usage.only(service="glue").total() / 1e6 * prices.glue_requests_per_million,
    }
    moved: Counter[str] = Counter()
    for counts in (usage.bytes_sent, usage.bytes_received):
        for (service, _op, table), n in counts.items():
            endpoint = (
                table.split(".", 1)[0] if service in SOURCE_SERVICES else _ENDPOINT_OF_SERVICE.get(service)
            )
            if endpoint is not None:
                moved[endpoint] += n
    for endpoint, n in sorted(moved.items()):
        rate = _transfer_rate(prices, endpoint)
        if rate and n:
            out[f"transfer {endpoint}"] = n / 1e9 * rate
    return out


def _transfer_rate(prices: Prices, endpoint: str) -> float:
    where, worker = prices.endpoints.get(endpoint), prices.worker
    if where is None or worker is None:
        return 0.0
    if where.region != worker.region:
        return prices.cross_region_per_gb
    # S3 is regional: no AZ charge between it and a worker in its Region.
    if endpoint != "lake" and where.az and worker.az and where.az != worker.az:
        return prices.cross_az_per_gb
    return 0.0
