"""Production shape on the moto server: lake on S3, current-state tables in the Glue Data Catalog."""

from __future__ import annotations

import uuid
from typing import Any

import boto3

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from tests.lake.helpers import PATIENTS, changes, snapshot_batch, stream_batch


def test_current_state_tables_registered_in_glue(
    s3_lake: Any, moto_endpoint: str, aws_client_kwargs: dict[str, str]
) -> None:
    source = f"src_{uuid.uuid4().hex[:6]}"
    lake = Lake(
        LakeConfig(
            root=s3_lake.root,
            s3=s3_lake.options,
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
    glue = boto3.client("glue", **aws_client_kwargs)
    table = glue.get_table(DatabaseName=source, Name=PATIENTS.lake_name)["Table"]
    assert table["Parameters"]["table_type"].upper() == "ICEBERG"
    assert table["Parameters"]["metadata_location"].startswith(f"{s3_lake.root}/current/")
