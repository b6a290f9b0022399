"""Which tenant key the people index's tenant aliases carry, from the `[tenancy]` declaration."""

from __future__ import annotations

from connectors.opensearch.tenant_aliases import TENANT_FIELD
from pipelines.config import ConfigError, LakehouseConfig


def people_tenant_key(config: LakehouseConfig) -> str | None:
    """The tag key of the people index's tenant aliases; None when patients are not tenant-owned.

    The people document carries the patient's own `tenant_id` column (pipelines/search/docs.py), so
    patients must declare that column as their tenant.
    """
    declared = config.tenancy.table(config.search.mysql_source, "patients")
    if declared is None:
        return None
    if declared.column != TENANT_FIELD:
        raise ConfigError(
            f'tenancy.tables."{config.search.mysql_source}.patients" must name column "{TENANT_FIELD}": '
            "the people documents carry the patient's tenant in that field"
        )
    return config.tenancy.tag_key
