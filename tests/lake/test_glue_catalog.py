"""Production shape on the moto server: lake on S3, current-state tables in the Glue Data Catalog."""

from __future__ import annotations

import uuid

import boto3

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.lake.storage import S3Options
from tests.lake.helpers import PATIENTS, changes, snapshot_batch, stream_batch


def test_current_state_tables_registered_in_glue(moto_endpoint: str) -> None:
    kw = dict(
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", **kw).create_bucket(Bucket=bucket)
    source = f"src_{uuid.uuid4().hex[:6]}"
    lake = Lake(
        LakeConfig(
            root=f"s3://{bucket}/cdc",
            s3=S3Options(endpoint_url=moto_endpoint, access_key_id="testing", secret_access_key="testing"),
            catalog="glue",
            glue_endpoint_url=moto_endpoint,
        )
    )
    w = lake.writer(source)
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": f"p{i}"}) for i in range(5)])))
    w.write(
        stream_batch(
            10, 20, changes([("U", 11, {"id": 1, "name": "glue"}), ("D", 12, {"id": 2, "name": None})])
        )
    )
    lake.current(source).merge()
    rows = {r["id"]: r["name"] for r in lake.current(source).read(PATIENTS.lake_name).to_pylist()}
    assert rows == {0: "p0", 1: "glue", 3: "p3", 4: "p4"}
    glue = boto3.client("glue", **kw)
    table = glue.get_table(DatabaseName=source, Name=PATIENTS.lake_name)["Table"]
    assert table["Parameters"]["table_type"].upper() == "ICEBERG"
    assert table["Parameters"]["metadata_location"].startswith(f"s3://{bucket}/cdc/current/")
