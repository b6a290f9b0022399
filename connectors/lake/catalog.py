"""The Iceberg catalog behind current-state tables: SQLite locally, AWS Glue in production."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from pyiceberg.catalog import Catalog

from connectors.aws import AwsConfigError, aws_session, make_client
from connectors.lake.config import LakeConfig
from connectors.lake.storage import Storage


def open_catalog(config: LakeConfig, storage: Storage) -> Catalog:
    """Open the configured catalog with its warehouse under ``<lake root>/current``."""
    props: dict[str, str] = {"warehouse": storage.uri("current")}
    if storage.is_s3:
        from connectors.lake.iceberg_io import file_io_properties

        # Iceberg files go through the lake's own S3 filesystem: its credentials, region and
        # SSE-KMS headers (connectors/lake/iceberg_io.py), not pyiceberg's s3.* properties.
        props.update(file_io_properties(storage.s3_access))
    if config.catalog == "glue":
        from pyiceberg.catalog.glue import GlueCatalog

        # One Glue database per source (the Iceberg namespace), one Glue table per source table;
        # Athena and Redshift Spectrum read them as Iceberg tables.
        return GlueCatalog("lakehouse", client=glue_client(config, storage), **props)
    from pyiceberg.catalog.sql import SqlCatalog

    uri = config.catalog_uri
    if not uri:
        if storage.is_s3:
            raise ValueError(
                "lake.catalog_uri is required when lake.root is on S3 and lake.catalog is 'sqlite'"
            )
        uri = f"sqlite:///{os.path.join(urlparse(storage.uri('')).path, 'catalog.db')}"
    return SqlCatalog("lakehouse", uri=uri, **props)


def glue_region(config: LakeConfig, storage: Storage | None = None) -> str:
    """Glue's region: `lake.glue_region`, else the lake bucket's, else the S3 settings' or the chain's.

    Never a silent default: only with `lake.glue_endpoint_url` (moto, a VPC endpoint), where the
    endpoint decides where requests go, does an unset region fall back to the signing default.
    """
    if config.glue_region:
        return config.glue_region
    if storage is not None and storage.is_s3:
        return str(storage.region)
    region = config.s3.region or aws_session(config.s3).region_name
    if region:
        return str(region)
    if config.glue_endpoint_url:
        return "us-east-1"
    raise AwsConfigError("set lake.glue_region (the lake is not on S3, so there is no bucket region to use)")


def glue_client(config: LakeConfig, storage: Storage | None = None) -> Any:
    """A Glue client with the lake's credentials (the AWS chain when none are set) and endpoint."""
    session = storage.s3_access.session if storage is not None and storage.is_s3 else aws_session(config.s3)
    return make_client(
        session,
        "glue",
        region=glue_region(config, storage),
        endpoint_url=config.glue_endpoint_url,
        retries=config.s3.retries,
    )
