"""Tenants in the local warehouse: per-tenant DuckDB schemas, and the same rows behind PostgreSQL roles.

DuckDB (the local warehouse) gets one schema per tenant, `<tag_key>_<tenant>`, holding a view of
every tenant-owned table filtered to that tenant (`tenant_views.tenant_query`; a `via` table joined
to its parent's current state). DuckDB has no users or grants, so those views separate tenants for
convenience only: anyone who opens the file can read every schema.

Isolation that a real component enforces runs in PostgreSQL (`publish_postgres_tenants`): the
tenant-owned rows, each with its tenant resolved, are copied from the lake into one database,
row-level security is enabled on every table with one policy per tenant (`TO <role> USING (<tenant
column> = '<tenant>')`), and each tenant role gets USAGE on its own schema of views only
(`security_invoker`, so the policies apply to the reader). Another tenant's schema is refused by
PostgreSQL itself ("permission denied for schema"), and the shared tables show each role its own rows.
PostgreSQL cannot be told the names with sqlglot (it parses neither CREATE POLICY nor CREATE ROLE),
so those few statements are rendered here with every identifier and literal quoted by sqlglot.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlglot import exp

from connectors.catalog.tenant_views import (
    OwnedTable,
    TenantError,
    data_tenants,
    owned_tables,
    tenant_name,
    tenant_query,
)
from connectors.tenancy import TenancyConfig

log = logging.getLogger(__name__)


def _q(name: str, dialect: str = "duckdb") -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect)


def _lit(value: str, dialect: str = "duckdb") -> str:
    return exp.Literal.string(value).sql(dialect)


@dataclass
class TenantLayout:
    """The tenant-owned tables the lake holds and the tenants found in them."""

    tag_key: str
    tables: list[OwnedTable]
    tenants: list[str]
    refused: list[str] = field(default_factory=list)

    def schema(self, tenant: str) -> str:
        return tenant_name(self.tag_key, tenant)


def read_layout(
    con: Any, tenancy: TenancyConfig, lake_names: Mapping[str, Mapping[str, str]]
) -> TenantLayout:
    """The layout from a DuckDB connection on which `warehouse.register_lake` mapped the sources
    (schema `<source>`, one view per lake table's current state)."""

    def columns_of(source: str, lake_table: str) -> list[str] | None:
        rows = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [source, lake_table],
        ).fetchall()
        return [r[0] for r in rows] or None

    def read_column(source: str, lake_table: str, column: str) -> pa.ChunkedArray:
        sql = f"SELECT DISTINCT {_q(column)} AS t FROM {_q(source)}.{_q(lake_table)}"
        return con.sql(sql).to_arrow_table().column("t")

    tables = owned_tables(tenancy, lake_names, columns_of)
    names = [t.lake_table for t in tables]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise TenantError(f"tenant-owned tables of different sources share lake names {clashes}")
    tenants, refused = data_tenants(tables, read_column)
    for tenant in refused:
        log.warning("tenant id %r is not a slug: no schema or role; its rows are shown to nobody", tenant)
    return TenantLayout(tenancy.tag_key, tables, tenants, refused)


def create_duckdb_tenant_views(con: Any, layout: TenantLayout) -> list[str]:
    """Schema `<tag_key>_<tenant>` per tenant, with a view of each owned table's rows of that tenant;
    the qualified names created."""
    names = []
    for tenant in layout.tenants:
        schema = layout.schema(tenant)
        con.sql(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}")
        for table in layout.tables:
            query = tenant_query(table, table.source, tenant=tenant).sql("duckdb")
            con.sql(f"CREATE OR REPLACE VIEW {_q(schema)}.{_q(table.lake_table)} AS {query}")
            names.append(f"{schema}.{table.lake_table}")
    return names


# -- PostgreSQL ------------------------------------------------------------------------------------


def postgres_statements(layout: TenantLayout, *, known_roles: Sequence[str] = ()) -> list[str]:
    """Roles, row-level security, policies, per-tenant schemas of views and grants, for tables that
    exist already as `"<source>"."<lake table>"` with their tenant column. Idempotent."""
    pg = "postgres"
    out: list[str] = []
    for tenant in layout.tenants:
        role = layout.schema(tenant)
        if role not in known_roles:
            out.append(f"CREATE ROLE {_q(role, pg)} NOLOGIN")
    for table in layout.tables:
        qualified = f"{_q(table.source, pg)}.{_q(table.lake_table, pg)}"
        out.append(f"ALTER TABLE {qualified} ENABLE ROW LEVEL SECURITY")
        for tenant in layout.tenants:
            role = _q(layout.schema(tenant), pg)
            predicate = exp.EQ(
                this=exp.column(exp.to_identifier(table.tenant_column, quoted=True)),
                expression=exp.Literal.string(tenant),
            ).sql(pg)
            out.append(f"DROP POLICY IF EXISTS {role} ON {qualified}")
            out.append(f"CREATE POLICY {role} ON {qualified} FOR SELECT TO {role} USING ({predicate})")
            out.append(f"GRANT USAGE ON SCHEMA {_q(table.source, pg)} TO {role}")
            out.append(f"GRANT SELECT ON {qualified} TO {role}")
    for tenant in layout.tenants:
        role = _q(layout.schema(tenant), pg)
        out.append(f"CREATE SCHEMA IF NOT EXISTS {role}")
        out.append(f"REVOKE ALL ON SCHEMA {role} FROM PUBLIC")
        out.append(f"GRANT USAGE ON SCHEMA {role} TO {role}")
        for table in layout.tables:
            copy = (
                table
                if table.via is None
                else OwnedTable(table.source, table.lake_table, table.tenant_column, table.view_columns)
            )
            query = tenant_query(copy, table.source, tenant=tenant).sql(pg)
            view = f"{role}.{_q(table.lake_table, pg)}"
            out.append(f"CREATE OR REPLACE VIEW {view} WITH (security_invoker = true) AS {query}")
            out.append(f"GRANT SELECT ON {view} TO {role}")
    return out


def publish_postgres_tenants(con: Any, admin: Any, dsn: str, layout: TenantLayout) -> list[str]:
    """Copy every owned table (tenant resolved) from the DuckDB warehouse `con` into the PostgreSQL
    database at `dsn` and put it behind per-tenant roles, policies and schemas; `admin` is a psycopg
    connection there that may create roles. Each table is replaced whole (a local database, not a
    serving store), so a row whose tenant changed in the lake moves with the next publish."""
    sources = sorted({t.source for t in layout.tables})
    with admin.cursor() as cur:
        for source in sources:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(source, 'postgres')}")
        for table in layout.tables:
            # CASCADE: the tenant views over it go too; they are recreated below.
            cur.execute(
                f"DROP TABLE IF EXISTS {_q(table.source, 'postgres')}.{_q(table.lake_table, 'postgres')} CASCADE"
            )
    admin.commit()
    con.sql("DETACH DATABASE IF EXISTS tenant_pg")
    con.sql(f"ATTACH {_lit(dsn)} AS tenant_pg (TYPE postgres)")
    try:
        for table in layout.tables:
            query = tenant_query(table, table.source).sql("duckdb")
            con.sql(f"CREATE TABLE tenant_pg.{_q(table.source)}.{_q(table.lake_table)} AS {query}")
    finally:
        con.sql("DETACH DATABASE IF EXISTS tenant_pg")
    with admin.cursor() as cur:
        cur.execute("SELECT rolname FROM pg_roles")
        known = [r[0] for r in cur.fetchall()]
        statements = postgres_statements(layout, known_roles=known)
        for sql in statements:
            cur.execute(sql)
    admin.commit()
    return statements
