"""Per-tenant views of the tenant-owned lake tables (issue 16): which tables, which tenants, which rows.

`[tenancy]` names the tables a tenant owns and how each row's tenant is found: a column of its own,
or (`via`) the tenant of the row it references in another table of the same source. Here that
becomes, per owned lake table, one query over the lake's current state: the table's columns, plus
for a `via` table the parent's tenant column joined in on `column = key` (an inner join, so a row
whose parent is missing belongs to no tenant and nobody sees it), optionally filtered to one tenant.
Every warehouse renders the same sqlglot expression (DuckDB, PostgreSQL, Redshift).

Tenants come from the data: the distinct values of the tenant columns in the lake's current state.
A tenant id becomes part of role, schema and policy names, so only plain slugs are accepted
(`check_tenant_id`); any other value is refused and reported, and its rows are seen by no tenant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from connectors.tenancy import TenancyConfig

# Lower-case so the names stay one name in engines that fold identifiers (Redshift); no quotes,
# spaces or dots, and short enough for PostgreSQL's 63-byte names once prefixed.
_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
ROW_ALIAS = "owned"
PARENT_ALIAS = "owner"


class TenantError(ValueError):
    """A tenant id that cannot name a role or schema, or a tenancy the lake cannot serve."""


def check_tenant_id(tenant: str) -> str:
    """`tenant` when it is a slug (lower-case letters, digits, `_`, `-`; at most 48); else TenantError."""
    if not isinstance(tenant, str) or not _TENANT_ID.match(tenant):
        raise TenantError(
            f"tenant id {tenant!r} is not a slug (lower-case letters, digits, '_' or '-', at most 48)"
        )
    return tenant


def tenant_name(tag_key: str, tenant: str) -> str:
    """The role / schema name of a tenant: `<tag_key>_<tenant>` (the tenant id checked first)."""
    return f"{tag_key}_{check_tenant_id(tenant)}"


@dataclass(frozen=True, slots=True)
class TenantJoin:
    """A `via` table's way to its tenant: `parent`.`key` = this row's `column`."""

    parent: str  # the parent's lake table
    column: str
    key: str


@dataclass(frozen=True, slots=True)
class OwnedTable:
    """One tenant-owned lake table and where its rows' tenant is."""

    source: str
    lake_table: str
    tenant_column: str  # the row's own column, or the parent's (joined in under its own name)
    columns: tuple[str, ...]  # the lake table's columns
    via: TenantJoin | None = None

    @property
    def view_columns(self) -> tuple[str, ...]:
        """The columns of its tenant view: the table's, then the joined-in tenant column."""
        return self.columns if self.via is None else (*self.columns, self.tenant_column)


def owned_tables(
    tenancy: TenancyConfig,
    lake_names: Mapping[str, Mapping[str, str]],
    columns_of: Callable[[str, str], Sequence[str] | None],
) -> list[OwnedTable]:
    """The declared tenant-owned tables that the lake holds, in declaration order.

    `lake_names` maps source -> table -> lake table; `columns_of(source, lake_table)` gives the lake
    table's columns, None while the lake has no current state for it (the table is then skipped:
    nothing of it can be shown yet)."""
    out = []
    for key, declared in tenancy.tables.items():
        source, table = key.split(".")
        names = lake_names.get(source, {})
        lake_table = names.get(table)
        columns = columns_of(source, lake_table) if lake_table else None
        if lake_table is None or columns is None:
            continue
        if declared.column is not None:
            if declared.column not in columns:
                raise TenantError(
                    f"tenancy.tables.{key!r}: the lake table {lake_table} has no column {declared.column!r}"
                )
            out.append(OwnedTable(source, lake_table, declared.column, tuple(columns)))
            continue
        assert declared.via is not None
        parent = names.get(declared.via.table)
        tenant_column = tenancy.tenant_column(source, table)
        assert tenant_column is not None  # TenancyConfig checks the parent declares a column
        if parent is None or columns_of(source, parent) is None:
            continue  # no parent yet: no row of this table has a tenant
        if tenant_column in columns:
            raise TenantError(
                f"tenancy.tables.{key!r}: {lake_table} has a column {tenant_column!r} of its own; the "
                "tenant joined in from its parent would shadow it"
            )
        join = TenantJoin(parent, declared.via.column, declared.via.key)
        out.append(OwnedTable(source, lake_table, tenant_column, tuple(columns), join))
    return out


def _ident(name: str) -> exp.Identifier:
    return exp.Identifier(this=name, quoted=True)


def _column(name: str, table: str) -> exp.Column:
    return exp.Column(this=_ident(name), table=_ident(table))


def tenant_column_expr(table: OwnedTable) -> exp.Column:
    """The expression that yields a row's tenant inside `tenant_query`."""
    return _column(table.tenant_column, PARENT_ALIAS if table.via else ROW_ALIAS)


def tenant_query(
    table: OwnedTable,
    schema: str,
    *,
    tenant: str | None = None,
    tenant_type: exp.DataType | None = None,
    catalog: str | None = None,
) -> exp.Select:
    """SELECT the table's rows with their tenant, from `schema` (the lake's current state), only
    `tenant`'s when given. `tenant_type` casts the tenant column (Redshift's RLS policy names its
    type); `catalog` qualifies the tables (an attached database)."""

    def ref(lake_table: str, alias: str) -> exp.Table:
        return exp.Table(
            this=_ident(lake_table),
            db=_ident(schema),
            catalog=_ident(catalog) if catalog else None,
            alias=exp.TableAlias(this=_ident(alias)),
        )

    projections: list[exp.Expr] = [_column(c, ROW_ALIAS) for c in table.columns]
    owner = tenant_column_expr(table)
    if table.via is not None or tenant_type is not None:
        # Replace the own tenant column by its cast, or add the parent's after the row's columns.
        value: exp.Expr = exp.cast(owner, tenant_type) if tenant_type is not None else owner
        aliased = exp.alias_(value, _ident(table.tenant_column))
        if table.via is None:
            projections[table.columns.index(table.tenant_column)] = aliased
        else:
            projections.append(aliased)
    query = exp.select(*projections).from_(ref(table.lake_table, ROW_ALIAS))
    if table.via is not None:
        on = exp.EQ(
            this=_column(table.via.column, ROW_ALIAS), expression=_column(table.via.key, PARENT_ALIAS)
        )
        query = query.join(ref(table.via.parent, PARENT_ALIAS), on=on, join_type="inner")
    if tenant is not None:
        query = query.where(exp.EQ(this=owner.copy(), expression=exp.Literal.string(check_tenant_id(tenant))))
    return query


def tenants_in(values: pa.ChunkedArray | pa.Array) -> set[str]:
    """The distinct non-null values of a tenant column, as text."""
    unique = pc.unique(values.cast(pa.string()))
    return {v for v in unique.to_pylist() if v is not None}


def split_tenants(found: set[str]) -> tuple[list[str], list[str]]:
    """The tenant ids that can be published, and those refused (not slugs), both sorted."""
    ok, refused = [], []
    for tenant in sorted(found):
        try:
            ok.append(check_tenant_id(tenant))
        except TenantError:
            refused.append(tenant)
    return ok, refused


def data_tenants(
    tables: Sequence[OwnedTable], read_column: Callable[[str, str, str], pa.ChunkedArray]
) -> tuple[list[str], list[str]]:
    """(publishable, refused) tenant ids found in the tables that carry their own tenant column;
    `read_column(source, lake_table, column)` reads one column of the current state."""
    found: set[str] = set()
    for table in tables:
        if table.via is None:
            found |= tenants_in(read_column(table.source, table.lake_table, table.tenant_column))
    return split_tenants(found)
