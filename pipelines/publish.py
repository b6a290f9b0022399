"""`lakehouse publish`: register the lake in the Glue Data Catalog (and, as it grows, the
Redshift federated schemas and views), from the same configuration that drives the pipeline."""

from __future__ import annotations

from typing import Any

import boto3

from connectors.catalog.glue_changelog import ChangelogCatalog, Plan
from connectors.lake.lake import Lake
from pipelines.config import LakehouseConfig


def glue_client(config: LakehouseConfig) -> Any:
    """A Glue client with the lake's endpoint and credentials (the AWS chain when none are set)."""
    lake = config.lake
    kwargs: dict[str, Any] = {"region_name": lake.s3.region}
    if lake.glue_endpoint_url:
        kwargs["endpoint_url"] = lake.glue_endpoint_url
    if lake.s3.access_key_id and lake.s3.secret_access_key:
        kwargs["aws_access_key_id"] = lake.s3.access_key_id
        kwargs["aws_secret_access_key"] = lake.s3.secret_access_key.get_secret_value()
    return boto3.client("glue", **kwargs)


def publish_changelogs(config: LakehouseConfig, *, dry_run: bool = False, glue: Any = None) -> Plan:
    """Every configured source's change logs as Glue tables; the plan (applied unless `dry_run`)."""
    catalog = ChangelogCatalog(glue or glue_client(config), Lake(config.lake))
    return catalog.publish([s.name for s in config.sources], dry_run=dry_run)
