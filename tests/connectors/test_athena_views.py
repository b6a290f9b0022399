"""Cross-source views as Athena (Presto) views in the Glue Data Catalog (moto)."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import sqlglot
from sqlglot import exp

from connectors.catalog.athena_views import (
    PRESTO_VIEW_PREFIX,
    PRESTO_VIEW_SUFFIX,
    VIEW_SHA256,
    AthenaNameError,
    AthenaViewCatalog,
    athena_view_sql,
    presto_type,
)
from connectors.catalog.glue_plan import CatalogError
from connectors.catalog.redshift_config import SpectrumSchema, UnionView

ROLE = "arn:aws:iam::123456789012:role/spectrum"
FEDERATED = ("live_pg",)


@dataclass
class World:
    glue: Any
    db_a: str
    db_b: str
    view_db: str
    spectrum: tuple[SpectrumSchema, ...]


def _external_table(glue: Any, database: str, name: str, columns: list[tuple[str, str]]) -> None:
    glue.create_table(
        DatabaseName=database,
        TableInput={
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "StorageDescriptor": {
                "Columns": [{"Name": n, "Type": t} for n, t in columns],
                "Location": f"s3://lake/{database}/{name}/",
            },
        },
    )


@pytest.fixture
def world(aws_client_kwargs: dict[str, str]) -> World:
    glue = boto3.client("glue", **aws_client_kwargs)
    suffix = uuid.uuid4().hex[:8]
    db_a, db_b = f"lake_a_{suffix}", f"lake_b_{suffix}"
    for database in (db_a, db_b):
        glue.create_database(DatabaseInput={"Name": database})
    _external_table(
        glue, db_a, "patients", [("id", "bigint"), ("name", "string"), ("amount", "decimal(10,2)")]
    )
    # Glue keeps names in lower case; the declaration below spells them in mixed case.
    _external_table(
        glue,
        db_b,
        "patient list",
        [
            ("patient id", "int"),
            ('full "name"', "string"),
            ("amt", "decimal(12,4)"),
            ("tags", "array<string>"),
        ],
    )
    spectrum = (
        SpectrumSchema(name="Lake A", glue_database=db_a, iam_role_arn=ROLE),
        SpectrumSchema(name="lake_b", glue_database=db_b, iam_role_arn=ROLE),
    )
    return World(glue, db_a, db_b, f"analytics_{suffix}", spectrum)


def _view(world: World, *, label_b: str = "b's rows", name: str = "all_patients") -> UnionView:
    # The view's own names are ones Athena can query (see test_names_athena_cannot_query_...); its
    # sources are read, not created, so they stay awkward: mixed case, spaces, quotes.
    return UnionView.model_validate(
        {
            "schema": world.view_db,
            "name": name,
            "columns": ["id", "name", "amount"],
            "source_column": "source",
            "sources": [
                {"schema": "Lake A", "table": "patients", "label": "a"},
                {
                    "schema": "LAKE_B",
                    "table": "Patient List",
                    "columns": ["Patient ID", 'Full "Name"', "amt"],
                    "label": label_b,
                },
            ],
        }
    )


def _federated_view(world: World) -> UnionView:
    return UnionView.model_validate(
        {
            "schema": world.view_db,
            "name": "live_and_lake",
            "columns": ["id"],
            "sources": [
                {"schema": "Lake A", "table": "patients", "label": "lake"},
                {"schema": "live_pg", "table": "patients", "label": "live"},
            ],
        }
    )


def _decode(table: dict[str, Any]) -> dict[str, Any]:
    text = table["ViewOriginalText"]
    assert text.startswith(PRESTO_VIEW_PREFIX) and text.endswith(PRESTO_VIEW_SUFFIX)
    decoded: dict[str, Any] = json.loads(
        base64.b64decode(text[len(PRESTO_VIEW_PREFIX) : -len(PRESTO_VIEW_SUFFIX)])
    )
    return decoded


def test_publish_creates_a_view_athena_can_decode(world: World) -> None:
    catalog = AthenaViewCatalog(world.glue)
    views = [_view(world), _federated_view(world)]

    dry = catalog.publish(views, world.spectrum, FEDERATED, dry_run=True)
    assert [(a.kind, a.table) for a in dry.actions] == [
        ("create_database", ""),
        ("create_view", "all_patients"),
        ("skip_view", "live_and_lake"),
    ]
    with pytest.raises(world.glue.exceptions.EntityNotFoundException):
        world.glue.get_database(Name=world.view_db)  # a dry run changes nothing

    catalog.publish(views, world.spectrum, FEDERATED)
    table = world.glue.get_table(DatabaseName=world.view_db, Name="all_patients")["Table"]
    assert table["TableType"] == "VIRTUAL_VIEW"
    assert table["Parameters"]["presto_view"] == "true"
    assert table["Parameters"]["comment"] == "Presto View"
    assert table["ViewExpandedText"] == "/* Presto View */"

    definition = _decode(table)
    assert definition["catalog"] == "awsdatacatalog" and definition["schema"] == world.view_db
    # bigint+int widens to bigint, decimal(10,2)+decimal(12,4) to decimal(12,4) (8 integer digits).
    assert definition["columns"] == [
        {"name": "id", "type": "bigint"},
        {"name": "name", "type": "varchar"},
        {"name": "amount", "type": "decimal(12,4)"},
        {"name": "source", "type": "varchar"},
    ]
    assert table["StorageDescriptor"]["Columns"] == [
        {"Name": "id", "Type": "bigint"},
        {"Name": "name", "Type": "string"},
        {"Name": "amount", "Type": "decimal(12,4)"},
        {"Name": "source", "Type": "string"},
    ]

    query = sqlglot.parse_one(definition["originalSql"], read="trino")
    assert {(t.db, t.name) for t in query.find_all(exp.Table)} == {
        (world.db_a, "patients"),
        (world.db_b, "Patient List"),
    }
    assert {lit.this for lit in query.find_all(exp.Literal)} == {"a", "b's rows"}
    assert 'Full "Name"' in {c.name for c in query.find_all(exp.Column)}
    assert table["Parameters"][VIEW_SHA256] != ""

    again = catalog.plan(views, world.spectrum, FEDERATED)
    assert [a.kind for a in again.actions] == ["skip_view"]  # the view itself: nothing to change


def test_label_or_source_type_change_updates_the_view(world: World) -> None:
    catalog = AthenaViewCatalog(world.glue)
    catalog.publish([_view(world)], world.spectrum, FEDERATED)
    before = world.glue.get_table(DatabaseName=world.view_db, Name="all_patients")["Table"]

    relabelled = [_view(world, label_b="b, renamed")]
    plan = catalog.publish(relabelled, world.spectrum, FEDERATED)
    assert [(a.kind, a.detail) for a in plan.actions] == [("update_view", "SQL changed")]
    after = world.glue.get_table(DatabaseName=world.view_db, Name="all_patients")["Table"]
    assert after["Parameters"][VIEW_SHA256] != before["Parameters"][VIEW_SHA256]
    assert "'b, renamed'" in _decode(after)["originalSql"]
    assert not catalog.plan(relabelled, world.spectrum, FEDERATED).actions

    # A wider source column changes the view's columns, not its SQL.
    world.glue.update_table(
        DatabaseName=world.db_b,
        TableInput={
            "Name": "patient list",
            "TableType": "EXTERNAL_TABLE",
            "StorageDescriptor": {
                "Columns": [
                    {"Name": "patient id", "Type": "int"},
                    {"Name": 'full "name"', "Type": "string"},
                    {"Name": "amt", "Type": "decimal(20,4)"},
                ],
                "Location": f"s3://lake/{world.db_b}/patient list/",
            },
        },
    )
    plan = catalog.publish(relabelled, world.spectrum, FEDERATED)
    assert [(a.kind, a.detail) for a in plan.actions] == [("update_view", "columns changed")]
    stored = world.glue.get_table(DatabaseName=world.view_db, Name="all_patients")["Table"]
    assert {"name": "amount", "type": "decimal(20,4)"} in _decode(stored)["columns"]


def test_federated_view_is_skipped_with_the_schema_named(world: World) -> None:
    plan = AthenaViewCatalog(world.glue).publish([_federated_view(world)], world.spectrum, FEDERATED)
    (skip,) = plan.skipped
    assert skip.table == "live_and_lake" and "live_pg" in skip.detail and "federated" in skip.detail
    with pytest.raises(world.glue.exceptions.EntityNotFoundException):
        world.glue.get_database(Name=world.view_db)  # nothing else to do, so no database either


def test_type_clash_names_the_column_and_both_types(world: World) -> None:
    view = UnionView.model_validate(
        {
            "schema": world.view_db,
            "name": "clash",
            "columns": ["id", "label"],
            "sources": [
                {"schema": "Lake A", "table": "patients", "columns": ["id", "name"], "label": "a"},
                {
                    "schema": "lake_b",
                    "table": "patient list",
                    "columns": ["patient id", "tags"],
                    "label": "b",
                },
            ],
        }
    )
    with pytest.raises(CatalogError, match=r"column 'label' is string .* but array<string>"):
        AthenaViewCatalog(world.glue).plan([view], world.spectrum, FEDERATED)


def test_missing_source_table_is_named(world: World) -> None:
    view = UnionView.model_validate(
        {
            "schema": world.view_db,
            "name": "v",
            "columns": ["id"],
            "sources": [{"schema": "lake_b", "table": "visits", "label": "b"}],
        }
    )
    with pytest.raises(CatalogError, match=rf"{world.db_b}\.visits is not in Glue"):
        AthenaViewCatalog(world.glue).plan([view], world.spectrum, FEDERATED)


def test_foreign_table_with_the_view_name_is_left_alone(world: World) -> None:
    world.glue.create_database(DatabaseInput={"Name": world.view_db})
    _external_table(world.glue, world.view_db, "all_patients", [("x", "string")])
    plan = AthenaViewCatalog(world.glue).publish([_view(world)], world.spectrum, FEDERATED)
    assert [a.kind for a in plan.actions] == ["skip_view"]
    assert "not published by lakehouse" in plan.actions[0].detail
    table = world.glue.get_table(DatabaseName=world.view_db, Name="all_patients")["Table"]
    assert table["TableType"] == "EXTERNAL_TABLE"


def test_names_athena_cannot_query_are_refused_naming_each_field(world: World) -> None:
    bad_db = world.view_db.replace("analytics", "Analytics")
    view = UnionView.model_validate(
        {
            "schema": bad_db,
            "name": "All Patients",
            "columns": ["id", "e-mail"],
            "source_column": "Source",
            "sources": [{"schema": "Lake A", "table": "patients", "label": "a"}],
        }
    )
    # The same names in a view over a live schema are fine: Athena never gets that view.
    live = _federated_view(world).model_copy(update={"name": "Live And Lake"})
    spectrum = (world.spectrum[0].model_copy(update={"glue_database": "Lake_A"}), world.spectrum[1])
    catalog = AthenaViewCatalog(world.glue)
    for dry_run in (True, False):
        with pytest.raises(AthenaNameError) as caught:
            catalog.publish([live, view], spectrum, FEDERATED, dry_run=dry_run)
        message = str(caught.value)
        assert "lower-case letters, digits and underscores" in message
        for line in (
            f"redshift.views[1].schema: {bad_db!r} is not a name Athena can query (use {world.view_db!r})",
            "redshift.views[1].name: 'All Patients' is not a name Athena can query (use 'all_patients')",
            "redshift.views[1].columns[1]: 'e-mail' is not a name Athena can query (use 'e_mail')",
            "redshift.views[1].source_column: 'Source' is not a name Athena can query (use 'source')",
            "redshift.spectrum[0].glue_database: 'Lake_A' is not a name Athena can query (use 'lake_a')",
        ):
            assert f"  {line}" in message.splitlines()
        assert "views[0]" not in message and "columns[0]" not in message
        for database in (bad_db, world.view_db):  # nothing was created, in a dry run or not
            with pytest.raises(world.glue.exceptions.EntityNotFoundException):
                world.glue.get_database(Name=database)


def test_view_sql_quotes_awkward_identifiers() -> None:
    view = UnionView.model_validate(
        {
            "schema": "v",
            "name": "w",
            "columns": ['Col "A"', "select", "two words"],
            "source_column": "Src's",
            "sources": [
                {"schema": "Mixed Case", "table": 'T "1"', "label": "it's"},
                {"schema": "plain", "table": "t2", "columns": ["x", "y", "z"], "label": "ü ' \" --"},
            ],
        }
    )
    sql = athena_view_sql(view, {"mixed case": 'glue "db"', "plain": "glue_plain"})
    query = sqlglot.parse_one(sql, read="trino")
    assert isinstance(query, exp.Union)
    assert {(t.db, t.name) for t in query.find_all(exp.Table)} == {
        ('glue "db"', 'T "1"'),
        ("glue_plain", "t2"),
    }
    assert query.named_selects == ['Col "A"', "select", "two words", "Src's"]
    assert {lit.this for lit in query.find_all(exp.Literal)} == {"it's", "ü ' \" --"}
    with pytest.raises(CatalogError, match="'plain' is not a Spectrum schema"):
        athena_view_sql(view, {"Mixed Case": "glue_db"})


@pytest.mark.parametrize(
    ("hive", "presto"),
    [
        ("string", "varchar"),
        ("int", "integer"),
        ("float", "real"),
        ("decimal", "decimal(10,0)"),
        ("decimal(38, 9)", "decimal(38,9)"),
        ("varchar(12)", "varchar(12)"),
        ("binary", "varbinary"),
        (
            "array<map<string,struct<a:int,b b:array<double>>>>",
            'array(map(varchar,row("a" integer,"b b" array(double))))',
        ),
    ],
)
def test_presto_type(hive: str, presto: str) -> None:
    assert presto_type(hive) == presto


def test_presto_type_refuses_unknown() -> None:
    with pytest.raises(CatalogError, match="uniontype"):
        presto_type("uniontype<int,string>")
