"""Declared tenancy: which tables a tenant owns, and how each row's tenant is found (issue 16).

A pooled multi-tenant database keeps its tenants apart with row-level security; the binlog and
logical replication read past it, so the lake, search and warehouse must isolate tenants again
from a declaration in ``lakehouse.toml``::

    [tenancy]
    tag_key = "tenant"                      # the IAM principal tag and the lake's partition name

    [tenancy.tables."aurora_mysql.patients"]
    column = "tenant_id"                    # the row's own column

    [tenancy.tables."aurora_mysql.insurance_claims"]
    via = { table = "patients", column = "patient_id", key = "patient_id" }   # the patient's tenant

A table with `via` gets its tenant from the row of `table` (same source) whose `key` equals this
row's `column`; that table must itself declare its tenant by a `column`.
"""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from connectors.config import FrozenModel

_TAG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/=+@-]{0,127}$")


class TenantVia(FrozenModel):
    """The tenant of a row is that of another table's row: `table`.`key` = this row's `column`."""

    table: str = Field(description="The table (same source) whose rows carry the tenant.")
    column: str = Field(description="This table's column that references `table`.")
    key: str = Field(description="The column of `table` that `column` references (its key).")


class TenantTable(FrozenModel):
    """How one table's rows name their tenant: a column of their own, or through another table."""

    column: str | None = Field(None, description="The row's column holding its tenant id.")
    via: TenantVia | None = Field(None, description="The other table that gives the row's tenant.")

    @model_validator(mode="after")
    def _one_way(self) -> TenantTable:
        if (self.column is None) == (self.via is None):
            raise ValueError("set exactly one of `column` (the row's tenant column) and `via` (a join)")
        return self


class TenancyConfig(FrozenModel):
    """Tenant-owned tables, keyed ``"<source>.<table>"`` (the table as the source's `tables` name it)."""

    tag_key: str = Field(
        "tenant",
        description=(
            "Name of the tenant everywhere it is a key: the lake's partition (`tenant=<id>`), the IAM "
            "principal tag (`${aws:PrincipalTag/tenant}`), LF-tag and role names."
        ),
    )
    tables: dict[str, TenantTable] = Field(default_factory=dict, description="Tenant-owned tables.")
    lake_formation: bool = Field(
        False,
        description=(
            "Isolate tenants in the lake with Lake Formation (LF-tag and data-cell filters per tenant) "
            "instead of the ABAC IAM policy on their prefixes (`lakehouse tenants policies`)."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> TenancyConfig:
        if not _TAG_KEY.match(self.tag_key):
            raise ValueError(f"tenancy.tag_key {self.tag_key!r} is not a valid IAM tag key")
        for name, table in self.tables.items():
            if name.count(".") != 1 or not all(name.split(".")):
                raise ValueError(f'tenancy.tables key {name!r} must be "<source>.<table>"')
            if table.via is not None:
                source = name.split(".")[0]
                target = self.tables.get(f"{source}.{table.via.table}")
                if target is None or target.column is None:
                    raise ValueError(
                        f"tenancy.tables.{name!r}.via.table: {source}.{table.via.table} must be declared "
                        "with its own tenant `column`"
                    )
        return self

    def table(self, source: str, table: str) -> TenantTable | None:
        """The declaration of `source`'s `table` (None: not tenant-owned)."""
        return self.tables.get(f"{source}.{table}")

    def owned(self, source: str) -> dict[str, TenantTable]:
        """`source`'s tenant-owned tables by table name."""
        prefix = f"{source}."
        return {k[len(prefix) :]: v for k, v in self.tables.items() if k.startswith(prefix)}

    def tenant_column(self, source: str, table: str) -> str | None:
        """The column that holds `table`'s tenant, directly or in the table it goes through."""
        declared = self.table(source, table)
        if declared is None:
            return None
        if declared.column is not None:
            return declared.column
        assert declared.via is not None
        via = self.table(source, declared.via.table)
        return via.column if via is not None else None
