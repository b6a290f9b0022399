"""The lake's current-state tables as Glue Data Catalog Iceberg tables, so Athena and Redshift
Spectrum read them when the lake's own Iceberg catalog is SQLite.

One Glue database per source, `<source>` (the database pyiceberg's Glue catalog uses when
`lake.catalog = "glue"`); one Glue table per current-state table, in the shape pyiceberg's Glue
catalog writes: an `EXTERNAL_TABLE` with `table_type = ICEBERG` and `metadata_location` pointing at
the table's current metadata file. Readers plan their scans from that file, so the Glue columns
only describe the table to tools that browse the catalog. With `lake.catalog = "glue"` the tables
are native Glue Iceberg tables already and nothing is planned.

Publishing is a plan, then its application, so a dry run can print what would change:
* a missing database or table is created;
* a table whose `metadata_location` (or columns, or location) differs from the lake's is updated,
  the old location kept as `previous_metadata_location`, as Iceberg's Glue catalogs do;
* a table in the database marked `lakehouse.source = <source>` that the lake no longer has is
  reported, never dropped. Tables without that mark belong to someone else and are left alone.
Running it again with nothing new plans nothing.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pyarrow as pa
from pyiceberg.table import Table as IcebergTable

from connectors.catalog.glue_changelog import NOT_CONFIGURED, hive_type
from connectors.catalog.glue_plan import SOURCE_PARAMETER, Action, CatalogError, Plan, apply_plan, list_tables
from connectors.lake.lake import Lake

log = logging.getLogger(__name__)

# Parameter and column-parameter names Iceberg's Glue catalogs (Java and pyiceberg) write.
TABLE_TYPE = "table_type"
METADATA_LOCATION = "metadata_location"
PREVIOUS_METADATA_LOCATION = "previous_metadata_location"
FIELD_ID = "iceberg.field.id"
FIELD_OPTIONAL = "iceberg.field.optional"
FIELD_CURRENT = "iceberg.field.current"


class CurrentStateCatalog:
    """Keeps `<source>` Glue databases in step with the lake's current-state Iceberg tables."""

    def __init__(self, glue: Any, lake: Lake) -> None:
        self.glue = glue
        self.lake = lake

    @staticmethod
    def database(source: str) -> str:
        return source

    def plan(self, sources: Sequence[str], configured: Mapping[str, Collection[str]] | None = None) -> Plan:
        """What publishing `sources` would change; `configured` as in `ChangelogCatalog.plan`."""
        plan = Plan()
        if self.lake.config.catalog == "glue":
            return plan  # pyiceberg's Glue catalog registers and updates the tables itself
        for source in sources:
            wanted_tables = (configured or {}).get(source)
            database = self.database(source)
            existing = self._tables(database)
            if existing is None:
                plan.actions.append(
                    Action("create_database", database, detail=f"current state of source {source}")
                )
                existing = {}
            current = self.lake.current(source)
            in_lake: set[str] = set()
            for lake_table in self.lake.changelog_tables(source):
                if wanted_tables is not None and lake_table not in wanted_tables:
                    in_lake.add(lake_table)
                    if lake_table in existing:
                        plan.actions.append(Action("orphan_table", database, lake_table, NOT_CONFIGURED))
                    continue
                table = current.load(lake_table)
                if table is None:
                    continue  # not merged yet: there is no metadata to point at
                in_lake.add(lake_table)
                try:
                    action = self._table_action(database, source, lake_table, table, existing.get(lake_table))
                except CatalogError as exc:
                    raise CatalogError(f"{database}.{lake_table}: {exc}") from None
                if action is not None:
                    plan.actions.append(action)
            for name in sorted(set(existing) - in_lake):
                if _source_of(existing[name]) == source:
                    plan.actions.append(
                        Action(
                            "orphan_table",
                            database,
                            name,
                            "in Glue but not in the lake's current state; left in place",
                        )
                    )
        return plan

    def apply(self, plan: Plan) -> None:
        apply_plan(self.glue, plan)

    def publish(
        self,
        sources: Sequence[str],
        *,
        dry_run: bool = False,
        configured: Mapping[str, Collection[str]] | None = None,
    ) -> Plan:
        plan = self.plan(sources, configured)
        if not dry_run:
            self.apply(plan)
        return plan

    # --- helpers -------------------------------------------------------------------------------
    def _table_action(
        self,
        database: str,
        source: str,
        lake_table: str,
        table: IcebergTable,
        have: dict[str, Any] | None,
    ) -> Action | None:
        wanted = _table_input(source, lake_table, table)
        if have is None:
            columns = len(wanted["StorageDescriptor"]["Columns"])
            return Action(
                "create_table", database, lake_table, f"{columns} columns, {_snapshot(table)}", wanted
            )
        if _source_of(have) != source:
            # Same name, but not registered by this publisher (e.g. written by pyiceberg's Glue
            # catalog before the lake switched to SQLite): overwriting it could break its owner.
            log.warning(
                "%s.%s: Glue table exists without %s=%s; not ours, left alone",
                database,
                lake_table,
                SOURCE_PARAMETER,
                source,
            )
            return None
        parameters = have.get("Parameters", {})
        old_location = parameters.get(METADATA_LOCATION, "")
        changes = []
        if old_location != table.metadata_location:
            changes.append(
                f"metadata {posixpath.basename(old_location) or '(none)'} -> "
                f"{posixpath.basename(table.metadata_location)} ({_snapshot(table)})"
            )
        have_columns = _columns(have)
        if have_columns != wanted["StorageDescriptor"]["Columns"]:
            known = {c["Name"] for c in have_columns}
            added = [c["Name"] for c in wanted["StorageDescriptor"]["Columns"] if c["Name"] not in known]
            changes.append(f"columns added {added}" if added else "columns changed")
        if have.get("StorageDescriptor", {}).get("Location") != table.location():
            changes.append(f"location -> {table.location()}")
        if not changes:
            return None
        # Keep parameters others added (Lake Formation, crawlers); ours replace theirs.
        wanted["Parameters"] = {**parameters, **wanted["Parameters"]}
        if old_location:
            wanted["Parameters"][PREVIOUS_METADATA_LOCATION] = old_location
        # The version read makes the update conditional: Glue rejects it if the table changed since.
        return Action(
            "update_table", database, lake_table, "; ".join(changes), wanted, version=have.get("VersionId")
        )

    def _tables(self, database: str) -> dict[str, dict[str, Any]] | None:
        return list_tables(self.glue, database)


def _table_input(source: str, lake_table: str, table: IcebergTable) -> dict[str, Any]:
    """The Glue TableInput pyiceberg's Glue catalog would write for `table`, marked as ours."""
    return {
        "Name": lake_table,
        "Description": f"Current state of {source}.{lake_table} (Apache Iceberg)",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            TABLE_TYPE: "ICEBERG",
            METADATA_LOCATION: table.metadata_location,
            SOURCE_PARAMETER: source,
        },
        "StorageDescriptor": {"Columns": iceberg_columns(table), "Location": table.location()},
    }


def iceberg_columns(table: IcebergTable) -> list[dict[str, Any]]:
    """Glue columns for an Iceberg table: the current schema's, then columns only older schemas
    had (marked not current), as Iceberg's Glue catalogs list them."""
    metadata = table.metadata
    schemas = sorted(metadata.schemas, key=lambda s: s.schema_id != metadata.current_schema_id)
    columns: dict[str, dict[str, Any]] = {}
    for schema in schemas:
        current = schema.schema_id == metadata.current_schema_id
        # Arrow fields come out in the schema's column order, so they pair with its fields.
        for field, arrow in zip(schema.columns, schema.as_arrow(), strict=True):
            if field.name in columns:
                continue
            columns[field.name] = {
                "Name": field.name,
                "Type": _glue_type(arrow.type),
                "Parameters": {
                    FIELD_ID: str(field.field_id),
                    FIELD_OPTIONAL: str(field.optional).lower(),
                    FIELD_CURRENT: str(current).lower(),
                },
            }
            if field.doc:
                columns[field.name]["Comment"] = field.doc
    return list(columns.values())


def _glue_type(t: pa.DataType) -> str:
    """`hive_type`, plus the nested and Iceberg-specific types a current-state table may hold."""
    if isinstance(t, pa.BaseExtensionType):
        if t.extension_name == "arrow.uuid":
            return "string"  # Iceberg's Glue catalogs map uuid to string
        t = t.storage_type
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{f.name}:{_glue_type(f.type)}" for f in t) + ">"
    if pa.types.is_map(t):
        return f"map<{_glue_type(t.key_type)},{_glue_type(t.item_type)}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"array<{_glue_type(t.value_type)}>"
    return hive_type(t)


def _snapshot(table: IcebergTable) -> str:
    snapshot = table.current_snapshot()
    return f"snapshot {snapshot.snapshot_id}" if snapshot is not None else "no snapshot"


def _source_of(table: dict[str, Any]) -> str | None:
    source = table.get("Parameters", {}).get(SOURCE_PARAMETER)
    return str(source) if source is not None else None


def _columns(table: dict[str, Any]) -> list[dict[str, Any]]:
    keep = ("Name", "Type", "Parameters", "Comment")
    return [{k: c[k] for k in keep if k in c} for c in table.get("StorageDescriptor", {}).get("Columns", [])]
