"""A Spark session that sees the lake's catalog and storage, for the Spark merge (`connectors.lake.spark.merge`).

Spark needs the Iceberg runtime, Iceberg's AWS bundle, the SQLite JDBC driver and, for a local
session reading an S3 lake, Hadoop's S3A (`devstack.spark` fetches them). A local session
(`local_spark_session`) opens the very catalog pyiceberg uses: Iceberg's `JdbcCatalog` on the same
SQLite file (pyiceberg's `SqlCatalog` writes the same ``iceberg_tables`` layout; rows are keyed by
catalog name, so both are named ``lakehouse``), or the Glue catalog; and the lake's storage: S3FileIO
(path-style at a custom endpoint such as moto) or the local warehouse directory. On Glue 5.1 or EMR
Serverless the job's session gets the same settings from `spark_conf` and the job's IAM role.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from connectors.lake.catalog import glue_region

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from connectors.lake.lake import Lake

log = logging.getLogger(__name__)

SPARK_CATALOG = "lakehouse"  # pyiceberg's SqlCatalog name: JdbcCatalog finds the same rows by it


def spark_conf(
    lake: Lake, *, catalog: str = SPARK_CATALOG, static_credentials: bool = True
) -> dict[str, str]:
    """Spark settings that open the lake's Iceberg catalog and storage as catalog `catalog`, and
    read its change log as written (calendar, case-sensitive names); a job passes them as ``--conf``.

    With `static_credentials`, an S3 lake's current keys (the lake's own credential settings,
    resolved as for DuckDB) go into the settings; on Glue or EMR pass False and let the job's
    role answer. Hadoop's ``s3://`` is mapped to S3A here only for a local session (see
    `local_spark_session`): Glue and EMR have their own.
    """
    config, storage = lake.config, lake.storage
    prefix = f"spark.sql.catalog.{catalog}"
    conf = {
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.warehouse": storage.uri("current"),
        # pyiceberg commits to the same tables (creation, schema changes, small merges): never
        # plan a merge on a cached, stale table.
        f"{prefix}.cache-enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        # Source tables may have columns differing only in case (PostgreSQL).
        "spark.sql.caseSensitive": "true",
        **_calendar_conf(),
    }
    if config.catalog == "glue":
        conf[f"{prefix}.type"] = "glue"
        conf[f"{prefix}.client.region"] = glue_region(config, storage)
        if config.glue_endpoint_url:
            conf[f"{prefix}.glue.endpoint"] = config.glue_endpoint_url
        # Lake table names are the source's, lowercased, unicode included (Glue accepts them, and
        # pyiceberg's GlueCatalog creates them); Iceberg's own check allows only [a-z0-9_].
        conf[f"{prefix}.glue.skip-name-validation"] = "true"
    else:
        conf[f"{prefix}.type"] = "jdbc"
        conf[f"{prefix}.uri"] = f"jdbc:sqlite:{_sqlite_path(lake)}"
        # pyiceberg writes the same file: wait for its short write transactions, not fail.
        conf[f"{prefix}.jdbc.busy_timeout"] = "30000"
        # pyiceberg's SqlCatalog created the tables already (with the ``iceberg_type`` column of
        # schema V1). Iceberg 1.10's table check at start-up leaves a result set open, which on
        # SQLite keeps a lock on the file and fails every later pyiceberg commit ("database is
        # locked"): skip it.
        conf[f"{prefix}.jdbc.init-catalog-tables"] = "false"
        conf[f"{prefix}.jdbc.schema-version"] = "V1"
    if storage.is_s3:
        s3 = config.s3
        conf[f"{prefix}.io-impl"] = "org.apache.iceberg.aws.s3.S3FileIO"
        conf[f"{prefix}.client.region"] = str(storage.region)
        if s3.endpoint_url:
            conf[f"{prefix}.s3.endpoint"] = s3.endpoint_url
            conf[f"{prefix}.s3.path-style-access"] = "true"
        if s3.kms_key_id:
            conf[f"{prefix}.s3.sse.type"] = "kms"
            conf[f"{prefix}.s3.sse.key"] = s3.kms_key_id
        if static_credentials:
            keys = storage.reader_credentials()
            conf[f"{prefix}.s3.access-key-id"] = keys.access_key_id
            conf[f"{prefix}.s3.secret-access-key"] = keys.secret_access_key.get_secret_value()
            if keys.session_token is not None:
                conf[f"{prefix}.s3.session-token"] = keys.session_token.get_secret_value()
    return conf


def local_spark_session(
    lake: Lake,
    jars: Sequence[Path],
    *,
    master: str = "local[2]",
    driver_memory: str = "2g",
    extra: Mapping[str, str] | None = None,
) -> SparkSession:
    """A local Spark session (one JVM per process) on the lake's catalog and storage.

    `jars`: `devstack.spark.install().jars`. Spark's own Parquet reader reads the change log, so
    an S3 lake's ``s3://`` goes through S3A, pointed at the lake's endpoint and keys.
    """
    from pyspark.sql import SparkSession

    conf = {
        "spark.master": master,
        "spark.app.name": "lakehouse-merge",
        "spark.jars": ",".join(str(j) for j in jars),
        "spark.driver.memory": driver_memory,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Few cores: 200 shuffle partitions would be 200 tiny tasks per stage.
        "spark.sql.shuffle.partitions": "8",
        **spark_conf(lake),
    }
    if lake.storage.is_s3:
        conf.update(_s3a_conf(lake))
    builder = SparkSession.builder
    for key, value in {**conf, **(extra or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if lake.config.catalog == "glue" and lake.storage.is_s3:
        _glue_credentials(spark, lake)
    return spark


def _glue_credentials(spark: SparkSession, lake: Lake) -> None:
    """The lake's keys for Iceberg's Glue client, which takes no static keys as catalog settings:
    as the AWS SDK's system properties of this (local) JVM, set before the catalog is first used
    (not on the command line, where other users of the machine would see them)."""
    keys = lake.storage.reader_credentials()
    system = spark.sparkContext._jvm.java.lang.System  # type: ignore[union-attr]
    system.setProperty("aws.accessKeyId", keys.access_key_id)
    system.setProperty("aws.secretAccessKey", keys.secret_access_key.get_secret_value())
    if keys.session_token is not None:
        system.setProperty("aws.sessionToken", keys.session_token.get_secret_value())


def spark_for_lake(spark: SparkSession, lake: Lake, *, catalog: str = SPARK_CATALOG) -> SparkSession:
    """A new session in `spark`'s JVM whose catalog `catalog` is `lake`'s (one JVM, many lakes).

    Catalogs are per session, so only their settings change; Hadoop's S3A settings are the
    JVM's (the endpoint and keys `spark` was built with).
    """
    session = spark.newSession()
    prefix = f"spark.sql.catalog.{catalog}"
    wanted = {k: v for k, v in spark_conf(lake, catalog=catalog).items() if k.startswith(prefix)}
    for key, _ in spark.sparkContext.getConf().getAll():
        if key.startswith(prefix) and key not in wanted:
            session.conf.unset(key)
    for key, value in wanted.items():
        session.conf.set(key, value)
    if lake.config.catalog == "glue" and lake.storage.is_s3:
        _glue_credentials(session, lake)  # JVM-wide: the keys of the lake opened last
    return session


def _calendar_conf() -> dict[str, str]:
    """Read dates and timestamps as written: the change log is written by pyarrow, in the
    proleptic Gregorian calendar, and Spark 3 refuses (EXCEPTION) ancient values in Parquet files
    that carry no Spark version unless told which calendar they use."""
    return {
        "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
        "spark.sql.parquet.int96RebaseModeInRead": "CORRECTED",
    }


def _s3a_conf(lake: Lake) -> dict[str, str]:
    """Hadoop S3A for ``s3://`` (the change log), at the lake's endpoint with the lake's keys."""
    s3, keys = lake.config.s3, lake.storage.reader_credentials()
    conf = {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": keys.region,
        "spark.hadoop.fs.s3a.access.key": keys.access_key_id,
        "spark.hadoop.fs.s3a.secret.key": keys.secret_access_key.get_secret_value(),
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider"
            if keys.session_token is not None
            else "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        ),
    }
    if keys.session_token is not None:
        conf["spark.hadoop.fs.s3a.session.token"] = keys.session_token.get_secret_value()
    if s3.endpoint_url:
        conf["spark.hadoop.fs.s3a.endpoint"] = s3.endpoint_url
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
            urlparse(s3.endpoint_url).scheme == "https"
        ).lower()
    return conf


def _sqlite_path(lake: Lake) -> str:
    """The SQLite catalog file pyiceberg opens (`connectors.lake.catalog.open_catalog`)."""
    uri = lake.config.catalog_uri
    if not uri:
        if lake.storage.is_s3:
            raise ValueError(
                "lake.catalog_uri is required when lake.root is on S3 and lake.catalog is 'sqlite'"
            )
        return os.path.join(urlparse(lake.storage.uri("")).path, "catalog.db")
    if not uri.startswith("sqlite:///"):
        raise ValueError(f"lake.catalog_uri {uri!r}: the Spark merge opens SQLite catalogs only")
    return os.path.abspath(uri[len("sqlite:///") :])
