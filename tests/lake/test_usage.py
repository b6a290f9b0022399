"""The request and byte counters of a run equal what the moto server received.

moto's request recorder (``/moto-api/recorder/``) logs every request the server gets, with its
headers and body. A sync and a merge into an S3 lake with Iceberg tables in Glue then compare:
per S3 operation and per Glue operation, the requests botocore sent as our meter counted them,
the bytes of every object written, and the HEAD requests pyarrow's own S3 client made for the
files it opened (its GETs: at least as many as counted). Requests are told apart by User-Agent
(botocore's against pyarrow's AWS SDK for C++) and by bucket and Glue database, so traffic of
anything else on the shared server is left out.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.lake.storage import S3Options
from connectors.usage import METER, Placement, Prices, Usage, estimate, lake_table_of_key
from tests.lake.helpers import PATIENTS, changes, snapshot_batch, stream_batch


class Recording:
    """moto's request recorder, started on entry and read back on exit."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.entries: list[dict[str, Any]] = []

    def __enter__(self) -> Recording:
        requests.post(f"{self.endpoint}/moto-api/recorder/reset-recording", timeout=10).raise_for_status()
        requests.post(f"{self.endpoint}/moto-api/recorder/start-recording", timeout=10).raise_for_status()
        return self

    def __exit__(self, *exc: object) -> None:
        requests.post(f"{self.endpoint}/moto-api/recorder/stop-recording", timeout=10).raise_for_status()
        text = requests.get(f"{self.endpoint}/moto-api/recorder/download-recording", timeout=30).text
        self.entries = [json.loads(line) for line in text.splitlines() if line.strip()]


def s3_operation(entry: dict[str, Any]) -> str:
    """The S3 operation of a recorded request (the few the lake uses)."""
    method, query = entry["method"], parse_qs(urlsplit(entry["url"]).query, keep_blank_values=True)
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPart"
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        return "DeleteObjects" if "delete" in query else "POST"
    if method == "GET":
        if "list-type" in query:
            return "ListObjectsV2"
        return "GetBucketLocation" if "location" in query else "GetObject"
    return {"HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method)


def glue_body(entry: dict[str, Any]) -> bytes:
    body = entry.get("body") or ""
    return base64.b64decode(body) if entry.get("body_encoded") else body.encode()


def body_size(entry: dict[str, Any]) -> int:
    body = entry.get("body") or ""
    return len(base64.b64decode(body)) if entry.get("body_encoded") else len(body.encode())


@pytest.fixture
def glue_lake(tmp_path: Path, s3_lake: Any, moto_endpoint: str) -> Lake:
    return Lake(
        LakeConfig(
            root=s3_lake.root,
            s3=S3Options(endpoint_url=moto_endpoint, access_key_id="testing", secret_access_key="testing"),
            catalog="glue",
            glue_endpoint_url=moto_endpoint,
        )
    )


def test_counted_requests_and_bytes_equal_what_the_server_received(
    glue_lake: Lake, s3_lake: Any, moto_endpoint: str
) -> None:
    source = f"src_{uuid.uuid4().hex[:6]}"
    before = METER.snapshot()
    with Recording(moto_endpoint) as seen:
        writer = glue_lake.writer(source)
        writer.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": f"p{i}"}) for i in range(50)])))
        writer.write(stream_batch(10, 20, changes([("U", 11, {"id": 1, "name": "x"}), ("D", 12, {"id": 2})])))
        glue_lake.current(source).merge()
        assert len(glue_lake.current(source).read(PATIENTS.lake_name)) == 49
    used = METER.snapshot().minus(before)

    bucket = f"/{s3_lake.bucket}"
    s3 = [e for e in seen.entries if (urlsplit(e["url"]).path + "/").startswith(bucket + "/")]
    boto = [
        e
        for e in s3
        if "Boto3" in e["headers"].get("User-Agent", "") or "Botocore" in e["headers"].get("User-Agent", "")
    ]
    native = [e for e in s3 if e not in boto]
    assert boto and native, "both clients reached the server"

    counted: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    for (_svc, op, _t), n in used.only(service="s3").requests.items():
        counted[op] += n
        if "(pyarrow)" not in op:
            ours[op] += n
    server: Counter[str] = Counter(s3_operation(e) for e in boto)
    assert ours == server, (ours, server)

    writes = ("PutObject", "UploadPart")
    written = sum(body_size(e) for e in boto if s3_operation(e) in writes)
    assert used.only(service="s3").total("bytes_sent", operations=writes) == written > 0
    assert used.only(service="s3").total("bytes_sent") == sum(body_size(e) for e in boto)

    pyarrow: Counter[str] = Counter(s3_operation(e) + " (pyarrow)" for e in native)
    for op in ("HeadObject (pyarrow)", "ListObjectsV2 (pyarrow)"):
        assert counted[op] == pyarrow[op] > 0, (op, counted, pyarrow)
    # A file's ranged GETs are pyarrow's business: at least one per file opened.
    assert pyarrow["GetObject (pyarrow)"] >= counted["GetObject (pyarrow)"] > 0
    assert set(pyarrow) <= set(counted), (pyarrow, counted)

    glue_server: Counter[str] = Counter(
        e["headers"]["X-Amz-Target"].split(".", 1)[1]
        for e in seen.entries
        if e["headers"].get("X-Amz-Target", "").startswith("AWSGlue.") and source.encode() in glue_body(e)
    )
    glue_ours: Counter[str] = Counter()
    for (_svc, op, table), n in used.only(service="glue").requests.items():
        if table.split(".")[0] == source:
            glue_ours[op] += n
    assert glue_ours == glue_server and glue_server, (glue_ours, glue_server)

    tables = used.only(service="s3").by_table()
    assert f"{source}.{PATIENTS.lake_name}" in tables, tables


def test_tables_are_read_off_the_lake_layout() -> None:
    assert lake_table_of_key("lake/changelog/crm/health__patients/commit_date=2026-12-07/1-0.parquet") == (
        "crm.health__patients"
    )
    assert lake_table_of_key("lake/current/crm.db/health__patients/data/00000-0-x.parquet") == (
        "crm.health__patients"
    )
    assert lake_table_of_key("lake/current/crm.db/health__patients/metadata/v3.metadata.json") == (
        "crm.health__patients"
    )
    assert lake_table_of_key("lake/current/crm/health__patients/data/00000-0-x.parquet") == (
        "crm.health__patients"
    )  # the SQLite catalog's layout
    assert lake_table_of_key("lake/_commits/crm/00000000000000000042.json") == "crm"
    assert (
        lake_table_of_key("lake/_staging/crm/unit/00003.health__patients.parquet") == "crm.health__patients"
    )
    assert lake_table_of_key("lake/_staging/crm/unit/00000.parquet") == "crm"  # staged before the name had it
    assert lake_table_of_key("_leases/crm.json") == "crm"
    assert lake_table_of_key("lake/_runners/x.json") == "-"


def test_an_estimate_charges_transfer_only_across_zones_and_regions() -> None:
    usage = Usage(
        requests={
            ("s3", "PutObject", "a.t"): 2000,
            ("s3", "GetObject", "a.t"): 10_000,
            ("glue", "GetTable", "a.t"): 10**6,
        },
        bytes_sent={("s3", "PutObject", "a.t"): 10**9, ("opensearch", "Bulk", "idx"): 2 * 10**9},
        bytes_received={("postgres", "replication", "crm"): 6 * 10**8, ("mysql", "binlog", "crm"): 4 * 10**8},
    )
    here = Placement(region="us-east-1", az="use1-az1")
    same = Prices(
        worker=here, endpoints={"lake": Placement(region="us-east-1", az="use1-az2"), "opensearch": here}
    )
    cost = estimate(usage, same)
    assert cost == pytest.approx({"s3 write requests": 0.01, "s3 read requests": 0.004, "glue requests": 1.0})
    apart = Prices(
        worker=here,
        endpoints={
            "lake": Placement(region="eu-west-1"),
            "opensearch": Placement(region="us-east-1", az="use1-az3"),
            "crm": Placement(region="us-east-1", az="use1-az2"),
        },
    )
    cost = estimate(usage, apart)
    assert cost["transfer lake"] == pytest.approx(0.02)
    assert cost["transfer opensearch"] == pytest.approx(0.04)
    assert cost["transfer crm"] == pytest.approx(0.02)
