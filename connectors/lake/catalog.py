"""The Iceberg catalog behind current-state tables: SQLite locally, AWS Glue in production."""

from __future__ import annotations

import os
from urllib.parse import urlparse

from pyiceberg.catalog import Catalog

from connectors.lake.config import LakeConfig
from connectors.lake.storage import Storage


def open_catalog(config: LakeConfig, storage: Storage) -> Catalog:
    """Open the configured catalog with its warehouse under ``<lake root>/current``."""
    props: dict[str, str] = {"warehouse": storage.uri("current")}
    if storage.is_s3:
        s3 = config.s3
        if s3.endpoint_url:
            props["s3.endpoint"] = s3.endpoint_url
        props["s3.region"] = s3.region
        if s3.access_key_id:
            props["s3.access-key-id"] = s3.access_key_id
        if s3.secret_access_key:
            props["s3.secret-access-key"] = s3.secret_access_key.get_secret_value()
    if config.catalog == "glue":
        from pyiceberg.catalog.glue import GlueCatalog

        # One Glue database per source (the Iceberg namespace), one Glue table per source table;
        # Athena and Redshift Spectrum read them as Iceberg tables. Credentials: the S3 ones when
        # given, else the standard AWS chain.
        props["glue.region"] = config.s3.region
        if config.glue_endpoint_url:
            props["glue.endpoint"] = config.glue_endpoint_url
        if config.s3.access_key_id and config.s3.secret_access_key:
            props["glue.access-key-id"] = config.s3.access_key_id
            props["glue.secret-access-key"] = config.s3.secret_access_key.get_secret_value()
        return GlueCatalog("lakehouse", **props)
    from pyiceberg.catalog.sql import SqlCatalog

    uri = config.catalog_uri
    if not uri:
        if storage.is_s3:
            raise ValueError(
                "lake.catalog_uri is required when lake.root is on S3 and lake.catalog is 'sqlite'"
            )
        uri = f"sqlite:///{os.path.join(urlparse(storage.uri('')).path, 'catalog.db')}"
    return SqlCatalog("lakehouse", uri=uri, **props)
