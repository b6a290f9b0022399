"""Publish the declared federated schemas, Spectrum schemas and views to Redshift, changing only
what differs.

The cluster is read first, through the Data API: `SVV_EXTERNAL_SCHEMAS` for the external schemas
(kind, remote database and the options Redshift echoes in `esoptions`) and `pg_views` for the views.
Each declaration is compared with what is there and becomes at most one action:

* an external schema that is missing is created; one whose kind, database or options differ is
  dropped and created again (Redshift has no ALTER for these options). Dropping the Redshift schema
  never drops the Glue database or the remote database;
* a view that is missing is created (with `CREATE SCHEMA IF NOT EXISTS` for its schema); one whose
  query differs is replaced, or dropped and created when its columns changed, since Redshift only
  replaces a view in place when the new query yields the same columns;
* external schemas and views that exist but are not declared are reported, never dropped.

A required option (URI, PORT, IAM_ROLE, SECRET_ARN) that Redshift does not echo in `esoptions`
cannot be compared and counts as equal; optional ones (REGION, SCHEMA) are compared present or
absent, and the kind and the database always are. A view's stored definition is compared as a parsed query (sqlglot, identifiers
folded to lower case as Redshift folds them), so whitespace, keyword case and quoting do not count
as a change.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlglot
from sqlglot import exp

from connectors.catalog.redshift_config import FederatedSchema, RedshiftConfig, SpectrumSchema, UnionView
from connectors.catalog.redshift_data import DataApiRunner
from connectors.catalog.redshift_ddl import (
    create_external_schema,
    create_spectrum_schema,
    create_view,
    drop_external_schema,
    drop_view,
    local_schema,
)
from connectors.catalog.tenant_rls import RlsLayout, plan_rls, read_state, refresh_statements

log = logging.getLogger(__name__)

RedshiftActionKind = Literal[
    "create_schema", "replace_schema", "create_view", "replace_view", "unmanaged_schema", "unmanaged_view",
    # tenants (connectors.catalog.tenant_rls)
    "create_tenant_view", "rls_on", "create_role", "create_policy", "replace_policy", "attach_policy",
    "refused_tenant",
]  # fmt: skip
REPORT_ONLY: frozenset[str] = frozenset({"unmanaged_schema", "unmanaged_view", "refused_tenant"})
# SVV_EXTERNAL_SCHEMAS.eskind for the sources we declare (Redshift docs, SVV_EXTERNAL_SCHEMAS).
ESKIND = {1: "DATA CATALOG", 3: "POSTGRES", 8: "MYSQL"}
# Options a declaration may leave out; on the cluster their absence means "not set".
OPTIONAL_OPTIONS = frozenset({"REGION", "SCHEMA"})

_SCHEMAS_SQL = "SELECT schemaname, eskind, databasename, esoptions FROM svv_external_schemas"


class RedshiftPublishError(Exception):
    """The cluster's catalog could not be read, or a statement of the plan failed."""


@dataclass(frozen=True, slots=True)
class RedshiftAction:
    """One change to the cluster (its statements, in order), or a report with no statements."""

    kind: RedshiftActionKind
    name: str
    detail: str = ""
    statements: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + (f": {self.detail}" if self.detail else "")


@dataclass
class RedshiftPlan:
    actions: list[RedshiftAction] = field(default_factory=list)

    @property
    def changes(self) -> list[RedshiftAction]:
        return [a for a in self.actions if a.statements]

    @property
    def statements(self) -> list[str]:
        return [s for a in self.actions for s in a.statements]

    def __str__(self) -> str:
        if not self.actions:
            return "nothing to change"
        lines = []
        for action in self.actions:
            lines.append(str(action))
            lines += [f"    {line}" for s in action.statements for line in s.splitlines()]
        return "\n".join(lines)

    def script(self) -> str:
        """The plan as a SQL script: each action a `--` comment, each statement ended by `;`, so it
        can be read, diffed or run as is (reports become comments only)."""
        lines = []
        for action in self.actions:
            lines.append(f"-- {action}")
            lines += [f"{s};" for s in action.statements]
        return "\n".join(lines) if lines else "-- nothing to change"


@dataclass(frozen=True, slots=True)
class ExternalSchemaState:
    """An SVV_EXTERNAL_SCHEMAS row: kind, remote database and the options Redshift echoes."""

    kind: str
    database: str
    options: dict[str, str]


def wanted_options(schema: FederatedSchema | SpectrumSchema) -> dict[str, str]:
    """The options a declaration states, keyed as `esoptions` keys them."""
    if isinstance(schema, SpectrumSchema):
        options = {"IAM_ROLE": schema.iam_role_arn}
        if schema.region is not None:
            options["REGION"] = schema.region
        return options
    options = {
        "URI": schema.uri,
        "PORT": str(schema.resolved_port),
        "IAM_ROLE": schema.iam_role_arn,
        "SECRET_ARN": schema.secret_arn,
    }
    if schema.schema_name is not None:
        options["SCHEMA"] = schema.schema_name
    return options


def schema_differences(schema: FederatedSchema | SpectrumSchema, have: ExternalSchemaState) -> list[str]:
    """What differs between a declaration and the cluster's schema, as `field: have -> want` texts."""
    kind = "DATA CATALOG" if isinstance(schema, SpectrumSchema) else schema.engine
    database = schema.glue_database if isinstance(schema, SpectrumSchema) else schema.database
    diffs = []
    if have.kind != kind:
        diffs.append(f"kind {have.kind} -> {kind}")
    if have.database != database:
        diffs.append(f"database {have.database!r} -> {database!r}")
    wanted = wanted_options(schema)
    for key in sorted(set(wanted) | (set(have.options) & OPTIONAL_OPTIONS)):
        want, got = wanted.get(key), have.options.get(key)
        # A required option Redshift does not echo cannot be compared; an optional one that is
        # absent on the cluster was not set there, so adding or removing it is a change.
        if got is None and key not in OPTIONAL_OPTIONS:
            continue
        if got != want:
            diffs.append(f"{key} {got!r} -> {want!r}")
    return diffs


def view_query(sql: str) -> exp.Query | None:
    """The query of a view definition: the bare query or a whole CREATE VIEW statement, which is
    what Redshift keeps for a late-binding view. None when it does not parse."""
    try:
        tree = sqlglot.parse_one(sql.strip().rstrip(";"), read="redshift")
    except sqlglot.errors.ParseError:
        return None
    if isinstance(tree, exp.Create):
        tree = tree.expression
    return tree if isinstance(tree, exp.Query) else None


def normalized_query(sql: str) -> str | None:
    """A view's query in one canonical form, identifiers folded as Redshift folds them."""
    tree = view_query(sql)
    if tree is None:
        return None
    for identifier in tree.find_all(exp.Identifier):
        identifier.set("this", identifier.this.lower())
        identifier.set("quoted", True)
    return tree.sql(dialect="redshift")


def view_columns(view: UnionView) -> list[str]:
    return [c.lower() for c in (*view.columns, view.source_column)]


class RedshiftPublisher:
    """Plans and applies `config`'s external schemas and views on one cluster."""

    def __init__(
        self, runner: DataApiRunner, config: RedshiftConfig, tenants: RlsLayout | None = None
    ) -> None:
        self.runner = runner
        self.config = config
        self.tenants = tenants  # the tenants' roles, policies and views (issue 16), when tenancy is declared

    def read_schemas(self) -> dict[str, ExternalSchemaState]:
        """The cluster's external schemas by (lower-case) name."""
        states = {}
        for row in self.runner.query(_SCHEMAS_SQL):
            try:
                options = json.loads(row["esoptions"] or "{}")
            except ValueError:
                options = {}
            states[str(row["schemaname"]).lower()] = ExternalSchemaState(
                ESKIND.get(int(row["eskind"]), f"eskind {row['eskind']}"),
                str(row["databasename"] or ""),
                {str(k).upper(): str(v) for k, v in options.items()},
            )
        return states

    def read_views(self, schemas: Sequence[str]) -> dict[tuple[str, str], str]:
        """Definitions of the views in `schemas`, by (schema, view) in lower case."""
        wanted = {s.lower() for s in schemas}
        if not wanted:
            return {}
        query = exp.select("schemaname", "viewname", "definition").from_("pg_views")
        sql = query.where(exp.column("schemaname").isin(*sorted(wanted))).sql(dialect="redshift")
        return {
            (str(r["schemaname"]).lower(), str(r["viewname"]).lower()): str(r["definition"] or "")
            for r in self.runner.query(sql)
        }

    def plan(self) -> RedshiftPlan:
        """What publishing would change on the cluster: its catalog is read, nothing is written."""
        schemas = self.read_schemas()
        views = self.read_views([v.schema_ for v in self.config.views])
        plan = plan_changes(self.config, schemas, views)
        if self.tenants is not None:
            plan.actions += tenant_actions(self.tenants, read_state(self.runner.query))
        return plan

    def apply(self, plan: RedshiftPlan) -> None:
        for action in plan.actions:
            if not action.statements:
                log.warning("redshift: %s", action)
                continue
            try:
                self.runner.execute_batch(action.statements)
            except Exception as exc:
                raise RedshiftPublishError(f"{action}: {exc}") from exc
            log.debug("redshift: %s", action)

    def publish(self, *, dry_run: bool = False) -> RedshiftPlan:
        try:
            plan = self.plan()
        except Exception as exc:
            raise RedshiftPublishError(f"reading the cluster's catalog failed: {exc}") from exc
        if not dry_run:
            self.apply(plan)
            if self.tenants is not None:
                # The tenant views are materialized: each publish brings them to the lake's state.
                try:
                    self.runner.execute_batch(refresh_statements(self.tenants))
                except Exception as exc:
                    raise RedshiftPublishError(f"refreshing the tenant views failed: {exc}") from exc
        return plan


def plan_changes(
    config: RedshiftConfig,
    schemas: Mapping[str, ExternalSchemaState],
    views: Mapping[tuple[str, str], str],
) -> RedshiftPlan:
    """The actions that take a cluster holding `schemas` (by lower-case name) and `views` (their
    definitions by lower-case schema and name) to `config`'s declarations. Pure: reads nothing."""
    plan = RedshiftPlan()
    declared: list[FederatedSchema | SpectrumSchema] = [*config.federated, *config.spectrum]
    for schema in declared:
        create = (
            create_spectrum_schema(schema)
            if isinstance(schema, SpectrumSchema)
            else create_external_schema(schema)
        )
        have = schemas.get(schema.name.lower())
        if have is None:
            plan.actions.append(RedshiftAction("create_schema", schema.name, _describe(schema), (create,)))
            continue
        diffs = schema_differences(schema, have)
        if diffs:
            statements = (drop_external_schema(schema.name), create)
            plan.actions.append(RedshiftAction("replace_schema", schema.name, "; ".join(diffs), statements))
    names = {s.name.lower() for s in declared}
    for name in sorted(set(schemas) - names):
        plan.actions.append(
            RedshiftAction(
                "unmanaged_schema", name, "external schema not in the configuration; left in place"
            )
        )
    plan.actions += _plan_views(config.views, views)
    return plan


def offline_plan(config: RedshiftConfig, tenants: RlsLayout | None = None) -> RedshiftPlan:
    """Every statement a first publish runs (the plan against an empty cluster), with no cluster
    and no AWS call: the DDL an analyst can read without access. Secrets appear only as the ARNs
    the declarations hold, as in the DDL Redshift is sent."""
    plan = plan_changes(config, {}, {})
    if tenants is not None:
        from connectors.catalog.tenant_rls import RlsState

        plan.actions += tenant_actions(tenants, RlsState())
    return plan


def tenant_actions(layout: RlsLayout, state: Any) -> list[RedshiftAction]:
    """The tenants' part of the plan (`tenant_rls.plan_rls`) as Redshift actions."""
    return [RedshiftAction(a.kind, a.name, a.detail, a.statements) for a in plan_rls(layout, state)]  # type: ignore[arg-type]


def _plan_views(views: Sequence[UnionView], existing: Mapping[tuple[str, str], str]) -> list[RedshiftAction]:
    actions = []
    for view in views:
        key = (view.schema_.lower(), view.name.lower())
        name = f"{view.schema_}.{view.name}"
        ddl = create_view(view)
        have = existing.get(key)
        if have is None:
            actions.append(
                RedshiftAction(
                    "create_view", name, f"{len(view.sources)} source(s)", (local_schema(view.schema_), ddl)
                )
            )
        elif normalized_query(have) != normalized_query(ddl):
            old = _definition_columns(have)
            if old is not None and old != view_columns(view):
                statements: tuple[str, ...] = (drop_view(view.schema_, view.name), ddl)
                detail = f"columns {old} -> {view_columns(view)}"
            else:
                statements, detail = (ddl,), "query differs"
            actions.append(RedshiftAction("replace_view", name, detail, statements))
    declared = {(v.schema_.lower(), v.name.lower()) for v in views}
    for schema, view_name in sorted(set(existing) - declared):
        actions.append(
            RedshiftAction(
                "unmanaged_view", f"{schema}.{view_name}", "view not in the configuration; left in place"
            )
        )
    return actions


def _describe(schema: FederatedSchema | SpectrumSchema) -> str:
    if isinstance(schema, SpectrumSchema):
        return f"DATA CATALOG database {schema.glue_database!r}"
    remote = f"{schema.database}.{schema.schema_name}" if schema.schema_name else schema.database
    return f"{schema.engine} {remote!r} at {schema.uri}:{schema.resolved_port}"


def _definition_columns(definition: str) -> list[str] | None:
    """The output column names of a stored view definition (None when it does not parse)."""
    select = view_query(definition)
    while isinstance(select, exp.SetOperation):
        select = select.left
    if not isinstance(select, exp.Select):
        return None
    return [e.alias_or_name.lower() for e in select.expressions]
