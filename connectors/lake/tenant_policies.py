"""The access documents that isolate tenants in the lake: one ABAC IAM policy, or Lake Formation
data-cell filters (issue 16, docs/decisions.md §25).

The change log of a tenant-owned table lies under ``.../<table>/<tag_key>=<tenant>/``, so one
policy serves every tenant: its resources name the prefix with ``${aws:PrincipalTag/<tag_key>}``,
which IAM replaces with the value of the calling role's (or session's) tag. A role without the tag
matches no resource (IAM: a variable whose key is absent from the request context does not match),
so it reads nothing. Each tenant's role carries the tag ``{<tag_key>: <tenant id>}``.

With Lake Formation the isolation is a data-cell filter per tenant and tenant-owned table (row
filter on the tenant partition the Glue change-log table exposes) and the tenant LF-tag; the
documents are the inputs of ``lakeformation:CreateLFTag`` and ``CreateDataCellsFilter``, checked
against botocore's service model (no call is made).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from connectors.lake.tenant_layout import is_tenant_id, tenant_segment

if TYPE_CHECKING:
    from connectors.lake.lake import Lake


@dataclass(frozen=True, slots=True)
class TenantTables:
    """The tenant-owned change-log tables of the lake, and where the lake lives."""

    bucket: str
    prefix: str  # the lake root's key prefix in the bucket ("" at the bucket's root)
    tag_key: str
    tables: Mapping[str, Sequence[str]]  # source -> lake tables

    def changelog_key(self, source: str, lake_table: str) -> str:
        return "/".join(p for p in (self.prefix, "changelog", source, lake_table) if p)


def tenant_tables(lake: Lake, bucket: str | None = None, prefix: str | None = None) -> TenantTables:
    """The lake's tenant-owned change-log tables (those with a change log) and its bucket and
    prefix (those of an S3 root, unless given)."""
    tenancy = lake.tenancy
    if tenancy is None:
        raise ValueError("no [tenancy] is configured")
    root = urlparse(lake.config.root)
    on_s3 = root.scheme == "s3"
    if bucket is None:
        if not on_s3:
            raise ValueError(f"the lake root {lake.config.root!r} is not on S3: give the bucket (--bucket)")
        bucket = root.netloc
    if prefix is None:
        prefix = root.path if on_s3 else ""
    tables: dict[str, list[str]] = {}
    for source in sorted({key.split(".")[0] for key in tenancy.tables}):
        owned = [t.lake_name for t in lake.changelog_schemas(source) if tenancy.table(source, t.name)]
        if owned:
            tables[source] = sorted(owned)
    return TenantTables(bucket, prefix.strip("/"), tenancy.tag_key, tables)


def lake_tenants(lake: Lake, layout: TenantTables) -> list[str]:
    """The tenants with a prefix in any tenant-owned change log."""
    return sorted(
        {
            t
            for source, tables in layout.tables.items()
            for table in tables
            for t in lake.tenants(source, table)
        }
    )


def iam_policy(layout: TenantTables) -> dict[str, Any]:
    """One policy for every tenant: GetObject under, and ListBucket of, the caller's tenant prefix."""
    own = tenant_segment(layout.tag_key, f"${{aws:PrincipalTag/{layout.tag_key}}}")
    prefixes = [
        f"{layout.changelog_key(source, table)}/{own}/"
        for source, tables in sorted(layout.tables.items())
        for table in sorted(tables)
    ]
    return {
        "Version": "2012-10-17",  # policy variables need this version
        "Statement": [
            {
                "Sid": "ReadOwnTenantChangeLog",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{layout.bucket}/{p}*" for p in prefixes],
            },
            {
                # The trailing '/' keeps tenant "a" from listing "tenant=ab/".
                "Sid": "ListOwnTenantChangeLog",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{layout.bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
            },
        ],
    }


def role_tags(tag_key: str, tenants: Sequence[str], role_prefix: str) -> list[dict[str, Any]]:
    """Per tenant, its role's name and tags (`iam:TagRole` input)."""
    return [
        {"RoleName": f"{role_prefix}{tenant}", "Tags": [{"Key": tag_key, "Value": tenant}]}
        for tenant in sorted(set(tenants))
        if is_tenant_id(tenant)
    ]


def lake_formation_documents(
    layout: TenantTables, tenants: Sequence[str], catalog_id: str, database_of: Mapping[str, str]
) -> dict[str, Any]:
    """`CreateLFTag` and one `CreateDataCellsFilter` per tenant and tenant-owned table;
    `database_of`: source -> the Glue database of its change logs."""
    ids = sorted({t for t in tenants if is_tenant_id(t)})
    filters = [
        {
            "TableData": {
                "TableCatalogId": catalog_id,
                "DatabaseName": database_of[source],
                "TableName": table,
                "Name": f"{layout.tag_key}_{tenant}",
                # The tenant is the Glue table's partition key (ids are checked slugs: no quoting issue).
                "RowFilter": {"FilterExpression": f"{layout.tag_key.lower()} = '{tenant}'"},
                "ColumnWildcard": {"ExcludedColumnNames": []},
            }
        }
        for source, tables in sorted(layout.tables.items())
        for table in sorted(tables)
        for tenant in ids
    ]
    documents = {
        "CreateLFTag": {"CatalogId": catalog_id, "TagKey": layout.tag_key, "TagValues": ids},
        "CreateDataCellsFilter": filters,
    }
    validate_lake_formation(documents)
    return documents


def validate_lake_formation(documents: Mapping[str, Any]) -> None:
    """Raise `botocore.exceptions.ParamValidationError` unless every document is a valid input of
    its Lake Formation operation (botocore's own model; nothing is sent)."""
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("lakeformation")
    if documents["CreateLFTag"]["TagValues"]:
        validate_parameters(documents["CreateLFTag"], model.operation_model("CreateLFTag").input_shape)
    shape = model.operation_model("CreateDataCellsFilter").input_shape
    for document in documents["CreateDataCellsFilter"]:
        validate_parameters(document, shape)
