"""Change-log tables in the Glue Data Catalog (moto): created, partitioned, drift repaired, orphans reported."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest

from connectors.catalog.glue_changelog import ChangelogCatalog, hive_type
from connectors.events import TableId
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from tests.lake.helpers import T0, changes, schema, snapshot_batch, stream_batch


@pytest.fixture
def setup(aws_client_kwargs: dict[str, str], tmp_path: Path) -> tuple[Lake, Any, str]:
    source = f"src{uuid.uuid4().hex[:6]}"
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    return lake, boto3.client("glue", **aws_client_kwargs), source


def _table(source: str, name: str) -> TableId:
    return TableId(source, "health", name)


def test_tables_partitions_drift_and_orphans(setup: tuple[Lake, Any, str]) -> None:
    lake, glue, source = setup
    patients, visits = _table(source, "patients"), _table(source, "visits")
    writer = lake.writer(source)
    base = schema(table=patients)
    visit_schema = schema((("id", pa.int64()), ("note", pa.string())), table=visits)
    writer.write(
        snapshot_batch(
            10,
            changes([("I", 10, {"id": 1, "name": "a"})], base),
            changes([("I", 10, {"id": 7, "note": "x"})], visit_schema),
            tables=(patients, visits),
        )
    )
    catalog = ChangelogCatalog(glue, lake)
    database = catalog.database(source)

    dry = catalog.publish([source], dry_run=True)
    assert [a.kind for a in dry.actions] == [
        "create_database",
        "create_table",
        "add_partitions",
        "create_table",
        "add_partitions",
    ]
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_database(Name=database)  # a dry run changes nothing

    catalog.publish([source])
    table = glue.get_table(DatabaseName=database, Name="health__patients")["Table"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns["op"] == "string" and columns["_commit_ts"] == "timestamp" and columns["id"] == "bigint"
    assert table["PartitionKeys"] == [{"Name": "commit_date", "Type": "string"}]
    assert table["StorageDescriptor"]["Location"].endswith(f"changelog/{source}/health__patients/")
    parts = glue.get_partitions(DatabaseName=database, TableName="health__patients")["Partitions"]
    assert [p["Values"] for p in parts] == [[T0.date().isoformat()]]
    assert not catalog.plan([source]).actions  # idempotent

    # Drift: a new column in the lake, on a new day; nothing is dropped.
    wider = schema((("id", pa.int64()), ("name", pa.string()), ("email", pa.string())), table=patients)
    later = T0 + dt.timedelta(days=1)
    writer.write(
        stream_batch(10, 11, changes([("U", 11, {"id": 1, "name": "a", "email": "a@x"})], wider, ts=later))
    )
    plan = catalog.publish([source])
    assert [(a.kind, a.table) for a in plan.actions] == [
        ("update_table", "health__patients"),
        ("add_partitions", "health__patients"),
    ]
    columns = [
        c["Name"]
        for c in glue.get_table(DatabaseName=database, Name="health__patients")["Table"]["StorageDescriptor"][
            "Columns"
        ]
    ]
    assert columns[-1] == "email" and "name" in columns  # appended; nothing dropped
    days = {
        p["Values"][0]
        for p in glue.get_partitions(DatabaseName=database, TableName="health__patients")["Partitions"]
    }
    assert days == {T0.date().isoformat(), later.date().isoformat()}

    # A table Glue has but the lake does not: reported, left in place.
    glue.create_table(
        DatabaseName=database, TableInput={"Name": "old_table", "StorageDescriptor": {"Columns": []}}
    )
    plan = catalog.publish([source])
    assert [(a.kind, a.table) for a in plan.orphans] == [("orphan_table", "old_table")]
    assert glue.get_table(DatabaseName=database, Name="old_table")


def test_hive_types() -> None:
    assert hive_type(pa.decimal128(38, 6)) == "decimal(38,6)"
    assert hive_type(pa.list_(pa.string())) == "array<string>"
    assert hive_type(pa.timestamp("us", tz="UTC")) == "timestamp"
    assert hive_type(pa.large_string()) == "string" and hive_type(pa.uint64()) == "bigint"


def test_publish_from_the_configuration(
    setup: tuple[Lake, Any, str], aws_client_kwargs: dict[str, str]
) -> None:
    from pipelines.config import parse_config
    from pipelines.publish.catalogs import publish_changelogs

    lake, glue, source = setup
    patients = _table(source, "patients")
    lake.writer(source).write(
        snapshot_batch(
            5, changes([("I", 5, {"id": 1, "name": "a"})], schema(table=patients)), tables=(patients,)
        )
    )
    config = parse_config(
        {
            "lake": {
                "root": lake.config.root,
                "glue_endpoint_url": aws_client_kwargs["endpoint_url"],
                "s3": {"access_key_id": "testing", "secret_access_key": "testing"},
            },
            "sources": [{"kind": "postgres", "name": source, "port": 1, "user": "u", "database": "d"}],
        }
    )
    plan = publish_changelogs(config, dry_run=True)
    assert [a.kind for a in plan.actions] == ["create_database", "create_table", "add_partitions"]
    publish_changelogs(config)
    assert glue.get_table(DatabaseName=f"{source}_changelog", Name="health__patients")
    assert str(publish_changelogs(config)) == "nothing to change"


def test_the_dagster_catalog_asset_publishes_and_its_check_passes(
    setup: tuple[Lake, Any, str], aws_client_kwargs: dict[str, str]
) -> None:
    import dagster as dg

    from dagster_project.catalog_assets import GLUE_KEY, build_catalog_definitions
    from pipelines.config import parse_config

    lake, glue, source = setup
    patients = _table(source, "patients")
    lake.writer(source).write(
        snapshot_batch(
            5, changes([("I", 5, {"id": 1, "name": "a"})], schema(table=patients)), tables=(patients,)
        )
    )
    config = parse_config(
        {
            "lake": {"root": lake.config.root, "glue_endpoint_url": aws_client_kwargs["endpoint_url"],
                     "s3": {"access_key_id": "testing", "secret_access_key": "testing"}},
            "sources": [{"kind": "postgres", "name": source, "port": 1, "user": "u", "database": "d"}],
        }
    )  # fmt: skip
    assets, checks = build_catalog_definitions(config)
    result = dg.materialize(assets, selection=[GLUE_KEY])
    assert result.success
    metadata = result.asset_materializations_for_node("catalog__glue_changelogs")[0].metadata
    assert metadata["changes_applied"].value == 3
    defs = dg.Definitions(assets=assets, asset_checks=checks)
    check = defs.resolve_implicit_global_asset_job_def().execute_in_process()
    evaluations = {e.check_name: e.passed for e in check.get_asset_check_evaluations()}
    assert evaluations == {"glue_matches_lake": True, "glue_current_matches_lake": True}
