"""Spark for large tables: a session on the lake's catalog and storage, and the Iceberg MERGE INTO merge."""

from connectors.lake.spark.merge import SparkMergeError, SparkUnsupportedTableError, merge_with_spark
from connectors.lake.spark.session import SPARK_CATALOG, local_spark_session, spark_conf, spark_for_lake

__all__ = [
    "SPARK_CATALOG",
    "SparkMergeError",
    "SparkUnsupportedTableError",
    "local_spark_session",
    "merge_with_spark",
    "spark_conf",
    "spark_for_lake",
]
