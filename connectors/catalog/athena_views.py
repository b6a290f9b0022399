"""Declared cross-source views published to Athena as Glue Data Catalog views ("Presto views").

The declarations are the ones the Redshift publisher uses (`UnionView`); only views whose every
source schema is a Spectrum schema can exist in Athena, because Athena reads Glue databases and
has no counterpart of a Redshift federated (live MySQL/PostgreSQL) schema. Such views are reported
as skipped, never half-published.

A Glue table is an Athena view when it carries the encoding Athena and Trino write for
`CREATE VIEW` (Trino's `ViewReaderUtil` / `HiveMetadata.createView`, which Athena's engine is
built on): TableType VIRTUAL_VIEW, parameters `presto_view=true` and `comment=Presto View`,
ViewOriginalText `/* Presto View: <base64 JSON> */` whose JSON holds the SQL, default catalog and
schema and the view's columns with Trino types, and ViewExpandedText `/* Presto View */`. Athena
additionally lists the columns (Hive types) in the StorageDescriptor, so Glue consumers that do
not decode the JSON still see the view's shape; this module does the same.

Athena queries only names made of lower-case letters, digits and underscores, 1 to 255 bytes
(Athena user guide, "Name databases, tables, and columns" and "Considerations and limitations for
views"); Glue would store others, and the view would then exist but be unqueryable. So every name a
published view brings into Glue (its database, its name, its columns, and the Glue databases it
reads) is checked before anything is planned, and each bad one is refused with its config field.

Publishing is a plan, then its application, like `glue_changelog`: a missing database or view is
created, a view of ours whose SQL hash or columns differ is updated, anything else in the
database (tables, views without our hash parameter) is left alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlglot import exp
from sqlglot.errors import ErrorLevel

from connectors.catalog.glue_plan import Action, CatalogError, Plan, apply_plan
from connectors.catalog.redshift_config import SpectrumSchema, UnionView
from connectors.catalog.redshift_ddl import view_select

log = logging.getLogger(__name__)

VIEW_SHA256 = "lakehouse.view_sha256"
PRESTO_VIEW_PREFIX = "/* Presto View: "
PRESTO_VIEW_SUFFIX = " */"
PRESTO_VIEW_EXPANDED_TEXT = "/* Presto View */"
# Athena's name for the Glue Data Catalog; the view's SQL is resolved against it.
ATHENA_CATALOG = "awsdatacatalog"


class MissingSourceError(CatalogError):
    """A view's source table is not in Glue (the lake's tables are published first)."""


class AthenaNameError(CatalogError):
    """A name the Athena step would put in Glue is one Athena cannot query."""


_ATHENA_NAME = re.compile(r"^[a-z0-9_]+$")
_ATHENA_NAME_MAX_BYTES = 255
ATHENA_NAME_RULE = "Athena allows only lower-case letters, digits and underscores, 1 to 255 bytes"


def athena_name_problem(name: str) -> str:
    """Why Athena cannot query `name` ('' when it can), with the name to use instead."""
    if _ATHENA_NAME.match(name) and len(name.encode()) <= _ATHENA_NAME_MAX_BYTES:
        return ""
    suggestion = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")[:_ATHENA_NAME_MAX_BYTES]
    return f"{name!r} is not a name Athena can query" + (f" (use {suggestion!r})" if suggestion else "")


def check_athena_names(
    views: Sequence[UnionView],
    spectrum: Sequence[SpectrumSchema],
    federated_names: Collection[str],
    *,
    where: str = "redshift",
) -> None:
    """Raise AthenaNameError listing every name of a view publishable to Athena (see
    `_unpublishable`) that Athena cannot query, each by its config field under `where`.

    Views Athena never gets (those reading a federated schema) keep Redshift's looser rules."""
    spectrum_lower = {s.name.lower() for s in spectrum}
    federated_lower = {n.lower() for n in federated_names}
    problems: list[str] = []

    def check(field: str, name: str) -> None:
        problem = athena_name_problem(name)
        if problem:
            problems.append(f"{where}.{field}: {problem}")

    used: set[str] = set()
    for i, view in enumerate(views):
        if _unpublishable(view, spectrum_lower, federated_lower):
            continue
        check(f"views[{i}].schema", view.schema_)
        check(f"views[{i}].name", view.name)
        for j, column in enumerate(view.columns):
            check(f"views[{i}].columns[{j}]", column)
        check(f"views[{i}].source_column", view.source_column)
        used |= {s.schema_.lower() for s in view.sources}
    for i, schema in enumerate(spectrum):
        if schema.name.lower() in used:
            check(f"spectrum[{i}].glue_database", schema.glue_database)
    if problems:
        raise AthenaNameError(
            f"names for Athena ({ATHENA_NAME_RULE}):\n" + "\n".join(f"  {p}" for p in problems)
        )


def athena_view_sql(view: UnionView, databases: Mapping[str, str]) -> str:
    """The view's SELECT in Athena's (Trino) dialect, each source schema replaced by its Glue database.

    `databases` maps Spectrum schema names to Glue databases; names are compared case-insensitively,
    as Redshift folds them. A source schema missing from it raises CatalogError.
    """
    by_lower = {name.lower(): database for name, database in databases.items()}

    def to_glue(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and node.args.get("db") is not None:
            schema = node.db
            if schema.lower() not in by_lower:
                raise CatalogError(
                    f"view {view.schema_}.{view.name}: source schema {schema!r} is not a Spectrum schema"
                )
            node.set("db", exp.Identifier(this=by_lower[schema.lower()], quoted=True))
        return node

    query = view_select(view).transform(to_glue)
    return query.sql(dialect="trino", unsupported_level=ErrorLevel.RAISE)


# --- types --------------------------------------------------------------------------------------
_INTEGERS = ("tinyint", "smallint", "int", "bigint")
# Digits of each integer type, as Trino widens it to a decimal in a UNION (decimal(3|5|10|19, 0)).
_INTEGER_DIGITS = {"tinyint": 3, "smallint": 5, "int": 10, "bigint": 19}
_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_SCALARS = {
    "string": "varchar",
    "int": "integer",
    "integer": "integer",
    "tinyint": "tinyint",
    "smallint": "smallint",
    "bigint": "bigint",
    "float": "real",
    "double": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "binary": "varbinary",
}


def _split_top(text: str, sep: str) -> list[str]:
    """`text` split at `sep` where it is not nested inside <...> or (...)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def presto_type(hive: str) -> str:
    """The Trino type signature Athena stores in a view's JSON for a Glue (Hive) column type."""
    t = hive.strip().lower()
    if t in _SCALARS:
        return _SCALARS[t]
    if t == "decimal":
        return "decimal(10,0)"  # Hive's default precision and scale
    if match := _DECIMAL.match(t):
        return f"decimal({match[1]},{match[2]})"
    if re.match(r"^(var)?char\(\s*\d+\s*\)$", t):
        return t.replace(" ", "")
    # Complex types use Trino's parenthesised signatures: array(T), map(K,V), row(name T, ...).
    if t.startswith("array<") and t.endswith(">"):
        return f"array({presto_type(t[6:-1])})"
    if t.startswith("map<") and t.endswith(">"):
        key, value = _split_top(t[4:-1], ",")
        return f"map({presto_type(key)},{presto_type(value)})"
    if t.startswith("struct<") and t.endswith(">"):
        fields = []
        for part in _split_top(t[7:-1], ","):
            name, _, field_type = part.partition(":")
            quoted = '"' + name.strip().replace('"', '""') + '"'
            fields.append(f"{quoted} {presto_type(field_type)}")
        return f"row({','.join(fields)})"
    raise CatalogError(f"no Athena type for Glue column type {hive!r}")


def _widen(a: str, b: str) -> str | None:
    """The Hive type both branch types widen to in a Trino UNION ALL, or None if they do not.

    Only exact numeric widenings are accepted: integers to the wider integer, decimals (and
    integers) to a decimal holding both; Trino's common-supertype rules give the same result,
    so the view's stored type matches what Athena computes and the view is not stale.
    """
    a, b = a.strip().lower(), b.strip().lower()
    if presto_type(a) == presto_type(b):
        return a
    if a in _INTEGERS and b in _INTEGERS:
        return max(a, b, key=_INTEGERS.index)
    decimals = []
    for t in (a, b):
        if t in _INTEGER_DIGITS:
            decimals.append((_INTEGER_DIGITS[t], 0))
        elif match := _DECIMAL.match(presto_type(t)):
            decimals.append((int(match[1]), int(match[2])))
        else:
            return None
    scale = max(s for _, s in decimals)
    integer_digits = max(p - s for p, s in decimals)
    if integer_digits + scale > 38:  # Trino's maximum decimal precision
        return None
    return f"decimal({integer_digits + scale},{scale})"


# --- the catalog --------------------------------------------------------------------------------
class AthenaViewCatalog:
    """Keeps declared cross-source views in step as Athena views in the Glue Data Catalog."""

    def __init__(self, glue: Any) -> None:
        self.glue = glue

    def plan(
        self,
        views: Sequence[UnionView],
        spectrum: Sequence[SpectrumSchema],
        federated_names: Collection[str],
        *,
        missing_sources_ok: bool = False,
    ) -> Plan:
        """What publishing `views` would change; reads Glue, writes nothing.

        A source table not in Glue yet is an error, or with `missing_sources_ok` (a dry run, where
        the lake's tables are only planned too) a `skip_view` naming it.
        """
        check_athena_names(views, spectrum, federated_names)
        plan = Plan()
        databases = {s.name: s.glue_database for s in spectrum}
        spectrum_lower = {s.name.lower() for s in spectrum}
        federated_lower = {n.lower() for n in federated_names}
        known_databases: dict[str, bool] = {}
        for view in views:
            reason = _unpublishable(view, spectrum_lower, federated_lower)
            if reason:
                plan.actions.append(Action("skip_view", view.schema_, view.name, reason))
                continue
            sql = athena_view_sql(view, databases)
            try:
                columns = self._view_columns(view, databases)
            except MissingSourceError as exc:
                if not missing_sources_ok:
                    raise
                plan.actions.append(Action("skip_view", view.schema_, view.name, str(exc)))
                continue
            wanted = self._table_input(view, sql, columns)
            database = view.schema_
            if database not in known_databases:
                known_databases[database] = self._database_exists(database)
                if not known_databases[database]:
                    plan.actions.append(
                        Action("create_database", database, detail="Athena cross-source views")
                    )
            have = self._table(database, view.name) if known_databases[database] else None
            columns = wanted["StorageDescriptor"]["Columns"]
            if have is None:
                detail = f"{len(columns)} columns from {len(view.sources)} sources"
                plan.actions.append(Action("create_view", database, view.name, detail, wanted))
            elif VIEW_SHA256 not in have.get("Parameters", {}) or have.get("TableType") != "VIRTUAL_VIEW":
                plan.actions.append(
                    Action(
                        "skip_view",
                        database,
                        view.name,
                        "a table or view not published by lakehouse has this name; left in place",
                    )
                )
            else:
                changed = []
                if have["Parameters"][VIEW_SHA256] != wanted["Parameters"][VIEW_SHA256]:
                    changed.append("SQL")
                if _columns(have) != columns:
                    changed.append("columns")
                if changed:
                    detail = " and ".join(changed) + " changed"
                    plan.actions.append(Action("update_view", database, view.name, detail, wanted))
        return plan

    def apply(self, plan: Plan) -> None:
        """Make the plan's changes in Glue; skipped views are only logged."""
        apply_plan(self.glue, plan)

    def publish(
        self,
        views: Sequence[UnionView],
        spectrum: Sequence[SpectrumSchema],
        federated_names: Collection[str],
        *,
        dry_run: bool = False,
    ) -> Plan:
        """Plan, and unless `dry_run`, apply; returns the plan either way."""
        plan = self.plan(views, spectrum, federated_names, missing_sources_ok=dry_run)
        if not dry_run:
            self.apply(plan)
        return plan

    # --- helpers -------------------------------------------------------------------------------
    def _database_exists(self, database: str) -> bool:
        try:
            self.glue.get_database(Name=database)
        except self.glue.exceptions.EntityNotFoundException:
            return False
        return True

    def _table(self, database: str, name: str) -> dict[str, Any] | None:
        try:
            table: dict[str, Any] = self.glue.get_table(DatabaseName=database, Name=name)["Table"]
        except self.glue.exceptions.EntityNotFoundException:
            return None
        return table

    def _view_columns(self, view: UnionView, databases: Mapping[str, str]) -> list[dict[str, str]]:
        """The view's columns with Hive types: the branches' types, widened where Trino would."""
        by_lower = {name.lower(): database for name, database in databases.items()}
        types: list[str] = []
        first = ""
        for source in view.sources:
            database = by_lower[source.schema_.lower()]
            # Glue stores table and column names in lower case and matches them that way.
            table = self._table(database, source.table.lower())
            if table is None:
                raise MissingSourceError(
                    f"view {view.schema_}.{view.name}: source table {database}.{source.table} "
                    "is not in Glue (publish the lake's tables first)"
                )
            have = {c["Name"].lower(): c["Type"] for c in _columns(table)}
            have.update({c["Name"].lower(): c["Type"] for c in table.get("PartitionKeys", [])})
            where = f"{database}.{source.table}"
            for i, column in enumerate(source.columns or view.columns):
                if column.lower() not in have:
                    raise CatalogError(
                        f"view {view.schema_}.{view.name}: column {column!r} is not in {where} "
                        f"(it has {sorted(have)})"
                    )
                hive = have[column.lower()]
                presto_type(hive)  # refuse a type Athena cannot read before anything is written
                if not first:
                    types.append(hive)
                    continue
                widened = _widen(types[i], hive)
                if widened is None:
                    raise CatalogError(
                        f"view {view.schema_}.{view.name}: column {view.columns[i]!r} is {types[i]} "
                        f"in {first} but {hive} in {where}"
                    )
                types[i] = widened
            first = first or where
        columns = [{"Name": c.lower(), "Type": t} for c, t in zip(view.columns, types, strict=True)]
        columns.append({"Name": view.source_column.lower(), "Type": "string"})
        return columns

    def _table_input(self, view: UnionView, sql: str, columns: list[dict[str, str]]) -> dict[str, Any]:
        definition = {
            "originalSql": sql,
            "catalog": ATHENA_CATALOG,
            "schema": view.schema_,
            "columns": [{"name": c["Name"], "type": presto_type(c["Type"])} for c in columns],
        }
        encoded = base64.b64encode(json.dumps(definition).encode()).decode()
        return {
            "Name": view.name,
            "Description": f"Cross-source view over {', '.join(s.label for s in view.sources)}",
            "TableType": "VIRTUAL_VIEW",
            "Parameters": {
                "presto_view": "true",
                "comment": "Presto View",
                VIEW_SHA256: hashlib.sha256(sql.encode()).hexdigest(),
            },
            "ViewOriginalText": f"{PRESTO_VIEW_PREFIX}{encoded}{PRESTO_VIEW_SUFFIX}",
            "ViewExpandedText": PRESTO_VIEW_EXPANDED_TEXT,
            "PartitionKeys": [],
            # As Athena writes a view: no location, formats or SerDe, only the columns.
            "StorageDescriptor": {
                "Columns": columns,
                "Location": "",
                "Compressed": False,
                "NumberOfBuckets": 0,
                "SerdeInfo": {},
                "SortColumns": [],
                "StoredAsSubDirectories": False,
            },
        }


def _unpublishable(view: UnionView, spectrum: set[str], federated: set[str]) -> str:
    """Why Athena cannot have this view ('' when it can): a source outside the Glue catalog."""
    live = sorted({s.schema_ for s in view.sources if s.schema_.lower() in federated})
    if live:
        return f"reads federated schema(s) {live}, which Athena cannot query"
    unknown = sorted({s.schema_ for s in view.sources if s.schema_.lower() not in spectrum})
    if unknown:
        return f"reads schema(s) {unknown}, which are not Spectrum schemas (no Glue database)"
    return ""


def _columns(table: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"Name": c["Name"], "Type": c["Type"]} for c in table.get("StorageDescriptor", {}).get("Columns", [])
    ]
