"""Current-state Iceberg tables in the Glue Data Catalog (moto): registered, drift repaired,
orphans reported, readable through the registered metadata."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest

from connectors.catalog.glue_current import CurrentStateCatalog, iceberg_columns
from connectors.catalog.glue_plan import CatalogError
from connectors.catalog.warehouse import connect
from connectors.events import TableId
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from tests.lake.helpers import changes, schema, snapshot_batch, stream_batch


@pytest.fixture
def setup(aws_client_kwargs: dict[str, str], tmp_path: Path) -> tuple[Lake, Any, str]:
    source = f"src{uuid.uuid4().hex[:6]}"
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    return lake, boto3.client("glue", **aws_client_kwargs), source


def _table(source: str, name: str) -> TableId:
    return TableId(source, "health", name)


def _glue_table(glue: Any, database: str, name: str) -> dict[str, Any]:
    table: dict[str, Any] = glue.get_table(DatabaseName=database, Name=name)["Table"]
    return table


def _metadata_location(lake: Lake, source: str, lake_table: str) -> str:
    table = lake.current(source).load(lake_table)
    assert table is not None
    return table.metadata_location


def _count(metadata_location: str) -> int:
    con = connect()
    try:
        [(count,)] = con.sql(f"SELECT count(*) FROM iceberg_scan('{metadata_location}')").fetchall()
    finally:
        con.close()
    return int(count)


def test_register_drift_and_orphans(setup: tuple[Lake, Any, str]) -> None:
    lake, glue, source = setup
    patients, visits = _table(source, "patients"), _table(source, "visits")
    base = schema(table=patients)
    visit_schema = schema((("id", pa.int64()), ("note", pa.string())), table=visits)
    writer = lake.writer(source)
    writer.write(
        snapshot_batch(
            10,
            changes([("I", 10, {"id": i, "name": f"p{i}"}) for i in range(3)], base),
            changes([("I", 10, {"id": 7, "note": "x"})], visit_schema),
            tables=(patients, visits),
        )
    )
    lake.current(source).merge()
    catalog = CurrentStateCatalog(glue, lake)
    database = catalog.database(source)
    assert database == source

    dry = catalog.publish([source], dry_run=True)
    assert [(a.kind, a.table) for a in dry.actions] == [
        ("create_database", ""),
        ("create_table", patients.lake_name),
        ("create_table", visits.lake_name),
    ]
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_database(Name=database)  # a dry run changes nothing

    catalog.publish([source])
    table = _glue_table(glue, database, patients.lake_name)
    location = _metadata_location(lake, source, patients.lake_name)
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["Parameters"]["table_type"] == "ICEBERG"
    assert table["Parameters"]["metadata_location"] == location
    assert table["Parameters"]["lakehouse.source"] == source
    assert "previous_metadata_location" not in table["Parameters"]
    iceberg = lake.current(source).load(patients.lake_name)
    assert iceberg is not None and table["StorageDescriptor"]["Location"] == iceberg.location()
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns["id"] == "bigint" and columns["name"] == "string"
    assert columns["_commit_ts"] == "timestamp"
    assert _count(table["Parameters"]["metadata_location"]) == 3  # readable as registered
    assert not catalog.plan([source]).actions  # a second publish plans nothing

    # The lake commits again, with a new column: Glue points at stale metadata until published.
    wider = schema((("id", pa.int64()), ("name", pa.string()), ("email", pa.string())), table=patients)
    writer.write(stream_batch(10, 11, changes([("I", 11, {"id": 9, "name": "n", "email": "n@x"})], wider)))
    lake.current(source).merge()
    newer = _metadata_location(lake, source, patients.lake_name)
    assert newer != location
    dry = catalog.publish([source], dry_run=True)
    assert [(a.kind, a.table) for a in dry.actions] == [("update_table", patients.lake_name)]
    assert "email" in dry.actions[0].detail and Path(newer).name in dry.actions[0].detail
    assert _glue_table(glue, database, patients.lake_name)["Parameters"]["metadata_location"] == location

    catalog.publish([source])
    table = _glue_table(glue, database, patients.lake_name)
    assert table["Parameters"]["metadata_location"] == newer
    assert table["Parameters"]["previous_metadata_location"] == location
    names = [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    assert "email" in names and "name" in names
    assert _count(table["Parameters"]["metadata_location"]) == 4
    assert str(catalog.publish([source])) == "nothing to change"

    # Ours but gone from the lake: reported, left in place. Not ours: ignored.
    glue.create_table(
        DatabaseName=database,
        TableInput={"Name": "old_table", "Parameters": {"lakehouse.source": source}},
    )
    glue.create_table(DatabaseName=database, TableInput={"Name": "someone_elses"})
    plan = catalog.publish([source])
    assert [(a.kind, a.table) for a in plan.actions] == [("orphan_table", "old_table")]
    assert _glue_table(glue, database, "old_table")


def test_a_table_of_the_same_name_not_ours_is_left_alone(setup: tuple[Lake, Any, str]) -> None:
    lake, glue, source = setup
    patients = _table(source, "patients")
    lake.writer(source).write(
        snapshot_batch(
            5, changes([("I", 5, {"id": 1, "name": "a"})], schema(table=patients)), tables=(patients,)
        )
    )
    lake.current(source).merge()
    glue.create_database(DatabaseInput={"Name": source})
    glue.create_table(DatabaseName=source, TableInput={"Name": patients.lake_name, "Parameters": {"x": "y"}})
    catalog = CurrentStateCatalog(glue, lake)
    assert not catalog.publish([source]).actions
    assert _glue_table(glue, source, patients.lake_name)["Parameters"] == {"x": "y"}


def test_unmerged_tables_are_skipped(setup: tuple[Lake, Any, str]) -> None:
    lake, glue, source = setup
    patients = _table(source, "patients")
    lake.writer(source).write(
        snapshot_batch(
            5, changes([("I", 5, {"id": 1, "name": "a"})], schema(table=patients)), tables=(patients,)
        )
    )
    plan = CurrentStateCatalog(glue, lake).plan([source])
    assert [a.kind for a in plan.actions] == ["create_database"]  # no metadata to point at yet


def test_errors_name_the_database_and_table(setup: tuple[Lake, Any, str]) -> None:
    lake, glue, source = setup
    patients = _table(source, "patients")
    lake.writer(source).write(
        snapshot_batch(
            5, changes([("I", 5, {"id": 1, "name": "a"})], schema(table=patients)), tables=(patients,)
        )
    )
    lake.current(source).merge()
    catalog = CurrentStateCatalog(glue, lake)
    plan = catalog.plan([source])
    plan.actions.pop(0)  # skip creating the database, so creating the table fails
    with pytest.raises(CatalogError, match=f"{source}.{patients.lake_name}"):
        catalog.apply(plan)


def test_nothing_to_do_with_the_glue_catalog(
    s3_lake: Any, moto_endpoint: str, aws_client_kwargs: dict[str, str]
) -> None:
    source = f"src{uuid.uuid4().hex[:6]}"
    lake = Lake(
        LakeConfig(root=s3_lake.root, s3=s3_lake.options, catalog="glue", glue_endpoint_url=moto_endpoint)
    )
    patients = _table(source, "patients")
    lake.writer(source).write(
        snapshot_batch(
            5, changes([("I", 5, {"id": 1, "name": "a"})], schema(table=patients)), tables=(patients,)
        )
    )
    lake.current(source).merge()
    glue = boto3.client("glue", **aws_client_kwargs)
    before = _glue_table(glue, source, patients.lake_name)
    assert before["Parameters"]["metadata_location"]  # pyiceberg registered it natively
    plan = CurrentStateCatalog(glue, lake).publish([source])
    assert not plan.actions
    assert _glue_table(glue, source, patients.lake_name)["Parameters"] == before["Parameters"]


def test_columns_match_what_pyicebergs_glue_catalog_writes(tmp_path: Path) -> None:
    from pyiceberg.catalog.glue import _to_columns  # the oracle: pyiceberg's own Glue mapping
    from pyiceberg.schema import Schema
    from pyiceberg.types import (
        DecimalType,
        FixedType,
        ListType,
        LongType,
        MapType,
        NestedField,
        StringType,
        StructType,
        TimestamptzType,
        TimeType,
        UUIDType,
    )

    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    lake.catalog.create_namespace("types")
    table = lake.catalog.create_table(
        "types.every",
        schema=Schema(
            NestedField(1, "id", LongType(), required=True, doc="key"),
            NestedField(2, "amount", DecimalType(38, 6)),
            NestedField(3, "at", TimestamptzType()),
            NestedField(4, "clock", TimeType()),
            NestedField(5, "ref", UUIDType()),
            NestedField(6, "raw", FixedType(4)),
            NestedField(7, "tags", ListType(8, StringType())),
            NestedField(9, "attrs", MapType(10, StringType(), 11, LongType())),
            NestedField(12, "address", StructType(NestedField(13, "city", StringType()))),
        ),
    )
    with table.update_schema() as update:
        update.delete_column("raw")  # dropped columns stay listed, marked not current
    assert iceberg_columns(table) == _to_columns(table.metadata)
