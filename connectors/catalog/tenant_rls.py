"""Tenants in Redshift: per-tenant roles and row-level security over the lake (issue 16).

For each Spectrum schema `S` over a source with tenant-owned tables, `publish` keeps:

* a local schema `S_<tag_key>` with one materialized view per owned table: its rows with their
  tenant (a `via` table joined to its parent's current state, `tenant_views.tenant_query`), the
  tenant column cast to VARCHAR(64) so one policy fits every view. Materialized, not late-binding:
  Redshift cannot attach an RLS policy to an external table, and a late-binding view over one needs
  USAGE on the external schema, which lets the holder read every external table in it (database
  roles get no per-table SELECT on Spectrum tables). A materialized view is a local relation: a
  tenant role needs only its schema. Each publish refreshes them (`refresh_statements`);
* one role per tenant, `<tag_key>_<tenant>`, and one policy per tenant and tenant column,
  `CREATE RLS POLICY "<role>__<column>" WITH (<column> VARCHAR(64)) USING (<column> = '<tenant>')`,
  attached to every view `TO ROLE <role>`, with USAGE on the schema and SELECT on the views; row-level
  security is turned on for every view, so a role without a policy there sees no row.

Tenants are the distinct ids in the lake (`tenant_views`), so a new tenant gets its role on the
next publish. The cluster is read first (SVV_ROLES, SVV_MV_INFO, SVV_RLS_POLICY,
SVV_RLS_ATTACHED_POLICY): missing objects are created, a policy whose predicate differs is dropped
(CASCADE detaches it) and created and attached again, a view with RLS off gets it turned on.
sqlglot parses none of the RLS statements (it reads them as generic commands), so they are rendered
here from sqlglot-quoted identifiers, literals and predicate expressions; GRANT and the views' queries
are sqlglot expressions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from connectors.catalog.redshift_config import SpectrumSchema
from connectors.catalog.tenant_views import OwnedTable, check_tenant_id, tenant_name, tenant_query

TENANT_TYPE = "VARCHAR(64)"
_MAX_NAME_BYTES = 127


def _q(name: str) -> str:
    if len(name.encode()) > _MAX_NAME_BYTES:
        raise ValueError(f"{name!r} is longer than Redshift's {_MAX_NAME_BYTES}-byte names")
    return exp.to_identifier(name, quoted=True).sql("redshift")


def _table(schema: str, name: str) -> exp.Table:
    return exp.Table(this=exp.to_identifier(name, quoted=True), db=exp.to_identifier(schema, quoted=True))


@dataclass(frozen=True, slots=True)
class TenantSchema:
    """The tenant views of one Spectrum schema: `S_<tag_key>`, over `S`'s owned tables."""

    spectrum: str
    name: str
    tables: tuple[OwnedTable, ...]


@dataclass(frozen=True, slots=True)
class RlsLayout:
    """Everything the tenants need on the cluster: schemas of views, tenants, refused ids."""

    tag_key: str
    schemas: tuple[TenantSchema, ...]
    tenants: tuple[str, ...]
    refused: tuple[str, ...] = ()

    def role(self, tenant: str) -> str:
        return tenant_name(self.tag_key, tenant)

    def policy(self, tenant: str, column: str) -> str:
        return f"{self.role(tenant)}__{column}"

    def columns(self) -> list[str]:
        return sorted({t.tenant_column for s in self.schemas for t in s.tables})


def rls_layout(
    tag_key: str,
    spectrum: Sequence[SpectrumSchema],
    tables: Sequence[OwnedTable],
    tenants: Sequence[str],
    refused: Sequence[str] = (),
) -> RlsLayout:
    """The layout for the Spectrum schemas whose Glue database is a source (the Glue database of a
    source is named as the source) with owned tables."""
    schemas = []
    for s in spectrum:
        owned = tuple(t for t in tables if t.source == s.glue_database)
        if owned:
            schemas.append(TenantSchema(s.name, f"{s.name}_{tag_key}", owned))
    return RlsLayout(tag_key, tuple(schemas), tuple(check_tenant_id(t) for t in tenants), tuple(refused))


# -- DDL ---------------------------------------------------------------------------------------------


def tenant_type() -> exp.DataType:
    return exp.DataType.build(TENANT_TYPE, dialect="redshift")


def create_tenant_view(schema: TenantSchema, table: OwnedTable) -> str:
    """CREATE MATERIALIZED VIEW of the table's rows with their tenant (every tenant's)."""
    query = tenant_query(table, schema.spectrum, tenant_type=tenant_type())
    create = exp.Create(
        this=_table(schema.name, table.lake_table), kind="MATERIALIZED VIEW", expression=query
    )
    return create.sql("redshift", unsupported_level=sqlglot.ErrorLevel.RAISE)


def view_rls_on(schema: str, view: str) -> str:
    return f"ALTER MATERIALIZED VIEW {_q(schema)}.{_q(view)} ROW LEVEL SECURITY ON"


def create_role(role: str) -> str:
    return f"CREATE ROLE {_q(role)}"


def policy_predicate(column: str, tenant: str) -> exp.EQ:
    return exp.EQ(
        this=exp.column(exp.to_identifier(column, quoted=True)),
        expression=exp.Literal.string(check_tenant_id(tenant)),
    )


def create_policy(name: str, column: str, tenant: str) -> str:
    """CREATE RLS POLICY "<name>" WITH ("<column>" VARCHAR(64)) USING ("<column>" = '<tenant>')."""
    using = policy_predicate(column, tenant).sql("redshift")
    return f"CREATE RLS POLICY {_q(name)} WITH ({_q(column)} {TENANT_TYPE}) USING ({using})"


def drop_policy(name: str) -> str:
    # CASCADE detaches it from every relation first (Redshift refuses to drop an attached policy).
    return f"DROP RLS POLICY IF EXISTS {_q(name)} CASCADE"


def attach_policy(name: str, schema: str, view: str, role: str) -> str:
    return f"ATTACH RLS POLICY {_q(name)} ON {_q(schema)}.{_q(view)} TO ROLE {_q(role)}"


def _grant(privilege: str, securable: exp.Table, role: str, kind: str | None = None) -> str:
    grant = exp.Grant(
        privileges=[exp.GrantPrivilege(this=exp.var(privilege))],
        kind=kind,
        securable=securable,
        principals=[exp.GrantPrincipal(this=exp.to_identifier(role, quoted=True), kind="ROLE")],
    )
    return grant.sql("redshift")


def grant_schema_usage(schema: str, role: str) -> str:
    return _grant("USAGE", exp.Table(this=exp.to_identifier(schema, quoted=True)), role, "SCHEMA")


def grant_view_select(schema: str, view: str, role: str) -> str:
    return _grant("SELECT", _table(schema, view), role)


def refresh_view(schema: str, view: str) -> str:
    return f"REFRESH MATERIALIZED VIEW {_q(schema)}.{_q(view)}"


# -- the cluster's state and the plan ---------------------------------------------------------------


@dataclass
class RlsState:
    """What the cluster has, names folded to lower case as Redshift folds them."""

    roles: set[str] = field(default_factory=set)
    views: set[tuple[str, str]] = field(default_factory=set)
    policies: dict[str, str] = field(default_factory=dict)  # name -> predicate text (polqual)
    attached: set[tuple[str, str, str, str]] = field(default_factory=set)  # schema, view, policy, grantee
    rls_off: set[tuple[str, str]] = field(default_factory=set)


READS = {
    "roles": "SELECT role_name FROM svv_roles",
    "views": "SELECT schema_name, name FROM svv_mv_info",
    "policies": "SELECT polname, polqual FROM svv_rls_policy",
    "attached": "SELECT relschema, relname, polname, grantee, is_rls_on FROM svv_rls_attached_policy",
}


def read_state(query: Any) -> RlsState:
    """The state through `query(sql) -> rows as dicts` (the Data API runner's `query`)."""
    state = RlsState()
    state.roles = {str(r["role_name"]).lower() for r in query(READS["roles"])}
    state.views = {(str(r["schema_name"]).lower(), str(r["name"]).lower()) for r in query(READS["views"])}
    state.policies = {str(r["polname"]).lower(): str(r["polqual"] or "") for r in query(READS["policies"])}
    for r in query(READS["attached"]):
        key = (str(r["relschema"]).lower(), str(r["relname"]).lower())
        state.attached.add((*key, str(r["polname"]).lower(), str(r["grantee"]).lower()))
        if not _truthy(r["is_rls_on"]):
            state.rls_off.add(key)
    return state


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "t", "1")


def normalized_predicate(sql: str) -> str | None:
    """A policy predicate in one canonical form (identifiers folded, parentheses dropped)."""
    try:
        tree = sqlglot.parse_one(sql.strip(), read="redshift")
    except sqlglot.errors.ParseError:
        return None
    while isinstance(tree, exp.Paren):
        tree = tree.this
    for identifier in tree.find_all(exp.Identifier):
        identifier.set("this", identifier.this.lower())
        identifier.set("quoted", True)
    return tree.sql("redshift")


@dataclass(frozen=True, slots=True)
class RlsAction:
    """One change (its statements) or, without statements, a report."""

    kind: str
    name: str
    detail: str = ""
    statements: tuple[str, ...] = ()


def plan_rls(layout: RlsLayout, state: RlsState) -> list[RlsAction]:
    """The actions that bring a cluster in `state` to `layout`. Pure."""
    actions: list[RlsAction] = []
    for schema in layout.schemas:
        for table in schema.tables:
            key = (schema.name.lower(), table.lake_table.lower())
            name = f"{schema.name}.{table.lake_table}"
            if key not in state.views:
                statements = (
                    f"CREATE SCHEMA IF NOT EXISTS {_q(schema.name)}",
                    create_tenant_view(schema, table),
                    view_rls_on(schema.name, table.lake_table),
                )
                actions.append(RlsAction("create_tenant_view", name, f"over {schema.spectrum}", statements))
            elif key in state.rls_off:
                actions.append(RlsAction("rls_on", name, "row-level security was off", (view_rls_on(*key),)))
    detached: set[str] = set()
    for tenant in layout.tenants:
        role = layout.role(tenant)
        if role.lower() not in state.roles:
            actions.append(RlsAction("create_role", role, f"tenant {tenant}", (create_role(role),)))
        for column in layout.columns():
            policy = layout.policy(tenant, column)
            have = state.policies.get(policy.lower())
            create = create_policy(policy, column, tenant)
            want = normalized_predicate(policy_predicate(column, tenant).sql("redshift"))
            if have is None:
                actions.append(RlsAction("create_policy", policy, f"{column} = {tenant!r}", (create,)))
            elif normalized_predicate(have) != want:
                actions.append(
                    RlsAction("replace_policy", policy, f"predicate {have!r}", (drop_policy(policy), create))
                )
                detached.add(policy.lower())
    for schema in layout.schemas:
        for tenant in layout.tenants:
            role = layout.role(tenant)
            for table in schema.tables:
                policy = layout.policy(tenant, table.tenant_column)
                attachment = (schema.name.lower(), table.lake_table.lower(), policy.lower(), role.lower())
                if attachment in state.attached and policy.lower() not in detached:
                    continue
                statements = (
                    attach_policy(policy, schema.name, table.lake_table, role),
                    grant_schema_usage(schema.name, role),
                    grant_view_select(schema.name, table.lake_table, role),
                )
                actions.append(
                    RlsAction(
                        "attach_policy",
                        f"{policy} on {schema.name}.{table.lake_table}",
                        f"role {role}",
                        statements,
                    )
                )
    for tenant in layout.refused:
        actions.append(
            RlsAction("refused_tenant", repr(tenant), "not a slug: no role; its rows are shown to nobody")
        )
    return actions


def refresh_statements(layout: RlsLayout) -> list[str]:
    """REFRESH MATERIALIZED VIEW for every tenant view: the lake's current state, once per publish."""
    return [refresh_view(s.name, t.lake_table) for s in layout.schemas for t in s.tables]
