"""The lake's change logs as Glue Data Catalog tables, so Athena and Redshift Spectrum read them.

One Glue database per source, `<source>_changelog`; one external Parquet table per lake table at
`<lake root>/changelog/<source>/<table>/`, partitioned by `commit_date` (the directories the lake
writes); a tenant-owned table (`[tenancy]`) by the tenant first (`<tag_key>`, then `commit_date`),
as its files lie under `<tag_key>=<tenant>/commit_date=<day>/` (docs/decisions.md §25), so a `via`
table shows its tenant as a column too. Current-state tables need nothing here: with `lake.catalog = "glue"` they are Iceberg
tables in Glue already (database `<source>`).

Publishing is a plan, then its application, so a dry run can print what would change:
* a missing database or table is created; a table whose columns differ from the lake's newest
  change-log schema is updated (a column added in the lake appears; nothing is dropped);
* partitions the lake has and Glue lacks are added;
* a table in our Glue database that the lake no longer has is reported, never dropped.
Running it again with nothing new plans nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pyarrow as pa

from connectors.catalog.glue_plan import (
    SOURCE_PARAMETER,
    Action,
    CatalogError,
    Plan,
    apply_action,
    apply_plan,
    list_tables,
)
from connectors.lake.lake import Lake

log = logging.getLogger(__name__)

PARTITION = "commit_date"
NOT_CONFIGURED = "the source table is no longer in the configuration; left in place, no longer updated"
PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}


def hive_type(t: pa.DataType) -> str:
    """The Hive/Glue type Athena and Spectrum read a Parquet column of Arrow type `t` as."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t):
        return "tinyint"
    if pa.types.is_int16(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint8(t) or pa.types.is_uint16(t):
        return "int"
    if pa.types.is_integer(t):
        return "bigint"
    if pa.types.is_float32(t):
        return "float"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"  # type: ignore[attr-defined]
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"array<{hive_type(t.value_type)}>"  # type: ignore[attr-defined]
    if pa.types.is_time(t):
        return "string"  # times of day are kept as exact text in the lake
    raise CatalogError(f"no Glue type for Arrow type {t}")


class ChangelogCatalog:
    """Keeps `<source>_changelog` Glue databases in step with the lake's change logs."""

    def __init__(self, glue: Any, lake: Lake) -> None:
        self.glue = glue
        self.lake = lake

    @staticmethod
    def database(source: str) -> str:
        return f"{source}_changelog"

    def plan(self, sources: Sequence[str], configured: Mapping[str, Collection[str]] | None = None) -> Plan:
        """What publishing `sources` would change. `configured` lists, per source, the lake tables
        the configuration still captures (absent: all of them); a table dropped from it is not
        created or updated any more, and if it is in Glue it is reported, never dropped."""
        plan = Plan()
        for source in sources:
            wanted_tables = (configured or {}).get(source)
            database = self.database(source)
            existing = self._tables(database)
            if existing is None:
                plan.actions.append(
                    Action("create_database", database, detail=f"change logs of source {source}")
                )
                existing = {}
            table_ids = self.lake.changelog_schemas(source)
            schemas = {t.lake_name: s for t, s in table_ids.items()}
            keys = {t.lake_name: self._partition_keys(source, t.name) for t in table_ids}
            for lake_table, schema in sorted(schemas.items()):
                have = existing.get(lake_table)
                if wanted_tables is not None and lake_table not in wanted_tables:
                    if have is not None:
                        plan.actions.append(Action("orphan_table", database, lake_table, NOT_CONFIGURED))
                    continue
                wanted = self._table_input(source, lake_table, schema, keys[lake_table])
                if (
                    have is not None
                    and [k["Name"] for k in have.get("PartitionKeys", [])] != keys[lake_table]
                ):
                    plan.actions.append(
                        Action(
                            "orphan_table",
                            database,
                            lake_table,
                            f"partitioned by {[k['Name'] for k in have.get('PartitionKeys', [])]} in Glue but "
                            f"{keys[lake_table]} in the lake (tenancy changed); drop it and publish again",
                        )
                    )
                    continue
                if have is None:
                    plan.actions.append(
                        Action("create_table", database, lake_table, f"{len(schema)} columns", wanted)
                    )
                else:
                    merged = _merge_columns(_columns(have), wanted["StorageDescriptor"]["Columns"])
                    if merged != _columns(have):
                        changed = [c["Name"] for c in merged if c not in _columns(have)]
                        wanted["StorageDescriptor"]["Columns"] = merged
                        plan.actions.append(
                            Action("update_table", database, lake_table, f"columns {changed}", wanted)
                        )
                missing = sorted(
                    self._lake_partitions(source, lake_table, keys[lake_table])
                    - self._glue_partitions(database, lake_table, have)
                )
                if missing:
                    plan.actions.append(
                        Action(
                            "add_partitions",
                            database,
                            lake_table,
                            f"{len(missing)} partition(s)",
                            (wanted, missing),
                        )
                    )
            for name in sorted(set(existing) - set(schemas)):
                plan.actions.append(
                    Action(
                        "orphan_table",
                        database,
                        name,
                        "in Glue but not in the lake's change logs; left in place",
                    )
                )
        return plan

    def apply(self, plan: Plan) -> None:
        apply_plan(self.glue, plan, self._apply)

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
    def _apply(self, action: Action) -> None:
        if action.kind != "add_partitions":
            apply_action(self.glue, action)
        else:
            wanted, values = action.payload
            for start in range(0, len(values), 100):  # BatchCreatePartition takes at most 100
                inputs = [self._partition_input(wanted, v) for v in values[start : start + 100]]
                result = self.glue.batch_create_partition(
                    DatabaseName=action.database, TableName=action.table, PartitionInputList=inputs
                )
                errors = [
                    e
                    for e in result.get("Errors", [])
                    if e["ErrorDetail"]["ErrorCode"] != "AlreadyExistsException"
                ]
                if errors:
                    raise CatalogError(f"{action}: {errors[:3]}")

    def _tables(self, database: str) -> dict[str, dict[str, Any]] | None:
        return list_tables(self.glue, database)

    def _partition_keys(self, source: str, table: str) -> list[str]:
        """The table's Hive partition keys, outermost first: the tenant for a tenant-owned table."""
        tenancy = self.lake.tenancy
        if tenancy is not None and tenancy.table(source, table) is not None:
            return [tenancy.tag_key.lower(), PARTITION]
        return [PARTITION]

    def _table_input(
        self, source: str, lake_table: str, schema: pa.Schema, keys: Sequence[str] = (PARTITION,)
    ) -> dict[str, Any]:
        # A data column named like a partition key would clash in Hive; the partition wins.
        columns = [
            {"Name": f.name.lower(), "Type": hive_type(f.type)} for f in schema if f.name.lower() not in keys
        ]
        return {
            "Name": lake_table,
            "Description": f"Change log of {source}.{lake_table} (Op I/U/D, _commit_ts, _position, _txid, row, _seq)",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", SOURCE_PARAMETER: source},
            "PartitionKeys": [{"Name": k, "Type": "string"} for k in keys],
            "StorageDescriptor": {
                "Columns": columns,
                "Location": self._location(source, lake_table),
                **PARQUET,
            },
        }

    def _partition_input(self, table_input: dict[str, Any], values: tuple[str, ...]) -> dict[str, Any]:
        descriptor = dict(table_input["StorageDescriptor"])
        keys = [k["Name"] for k in table_input["PartitionKeys"]]
        folders = "".join(f"{k}={v}/" for k, v in zip(keys, values, strict=True))
        descriptor["Location"] = f"{descriptor['Location']}{folders}"
        return {"Values": list(values), "StorageDescriptor": descriptor}

    def _location(self, source: str, lake_table: str) -> str:
        return self.lake.storage.uri(f"changelog/{source}/{lake_table}").rstrip("/") + "/"

    def _lake_partitions(
        self, source: str, lake_table: str, keys: Sequence[str] = (PARTITION,)
    ) -> set[tuple[str, ...]]:
        """The partition values of the lake's directories (`k1=v1/k2=v2/`, in `keys` order); files
        elsewhere (a tenant table's zero-row schema files under `_schema/`) are no partition."""
        root = f"changelog/{source}/{lake_table}/"
        found: set[tuple[str, ...]] = set()
        for e in self.lake.storage.list_files(root.rstrip("/")):
            folders = e.path[len(root) :].split("/")[:-1]
            if len(folders) != len(keys):
                continue
            pairs = [f.partition("=") for f in folders]
            if all(k == name and sep for (name, sep, _), k in zip(pairs, keys, strict=True)):
                found.add(tuple(v for _, _, v in pairs))
        return found

    def _glue_partitions(
        self, database: str, table: str, have: dict[str, Any] | None
    ) -> set[tuple[str, ...]]:
        if have is None:
            return set()
        values: set[tuple[str, ...]] = set()
        for page in self.glue.get_paginator("get_partitions").paginate(
            DatabaseName=database, TableName=table
        ):
            values.update(tuple(p["Values"]) for p in page["Partitions"])
        return values


def _merge_columns(have: list[dict[str, str]], lake: list[dict[str, str]]) -> list[dict[str, str]]:
    """Glue's columns with the lake's types and new columns; columns the lake's newest files no
    longer have (dropped at the source) stay: older partitions still hold them."""
    lake_types = {c["Name"]: c["Type"] for c in lake}
    merged = [{"Name": c["Name"], "Type": lake_types.get(c["Name"], c["Type"])} for c in have]
    known = {c["Name"] for c in have}
    merged += [c for c in lake if c["Name"] not in known]
    return merged


def _columns(table: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"Name": c["Name"], "Type": c["Type"]} for c in table.get("StorageDescriptor", {}).get("Columns", [])
    ]
