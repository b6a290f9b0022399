"""Configuration of the lake: where files live and which Iceberg catalog tracks current state."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from connectors.config import FrozenModel, check_location
from connectors.lake.storage import S3Options


class SnapshotRetention(FrozenModel):
    """How long a current-state table keeps superseded snapshots and their files for readers.

    A query engine (Athena, Redshift Spectrum, DuckDB, Spark) plans a query from one snapshot and
    then reads its files for as long as the query runs; deleting them meanwhile fails the query.
    A snapshot is expired only when it is beyond the newest `keep_snapshots` of the table *and*
    was superseded more than `max_snapshot_age_seconds` ago. Files that only expired snapshots
    referenced are deleted by the maintenance pass (`lakehouse maintain`, or
    `CurrentState.delete_orphans`), no earlier than `orphan_grace_seconds` after the expiry.
    """

    keep_snapshots: int = Field(
        3, ge=1, description="Snapshots of main always kept, newest first, whatever their age."
    )
    max_snapshot_age_seconds: float = Field(
        3600.0,
        ge=0,
        description=(
            "Keep every snapshot superseded less than this long ago (readable by snapshot id or "
            "through an old metadata.json, e.g. a Glue pointer). Default 1 h: longer than Athena's "
            "default 30-minute DML timeout."
        ),
    )
    orphan_grace_seconds: float = Field(
        3600.0,
        ge=0,
        description=(
            "After a snapshot expires, how long its unreferenced files (and superseded metadata "
            "files) stay, for queries planned before the expiry that still read them."
        ),
    )


class LakeConfig(FrozenModel):
    """The lake: a local directory (the embedded default) or an S3 prefix, plus an Iceberg catalog."""

    root: str = Field(".lake", description="Lake root: a local path, file:///abs/path or s3://bucket/prefix.")
    s3: S3Options = Field(
        default_factory=S3Options,
        description=(
            "S3 region, credentials (default: the AWS chain; or a profile, a role to assume, keys with a "
            "session token), SSE-KMS key, retries and endpoint."
        ),
    )
    catalog: Literal["sqlite", "glue"] = Field(
        "sqlite",
        description=(
            "Iceberg catalog for current-state tables: 'glue' in production (each merge moves the "
            "pointer Athena and Spectrum read, atomically); 'sqlite' (a local file) for a single "
            "machine, where Glue sees a copy of the pointer only when `lakehouse publish` runs "
            "(docs/decisions.md §15)."
        ),
    )
    catalog_uri: str = Field(
        "", description="SQLAlchemy URI of the SQLite catalog; default sqlite:///<local root>/catalog.db."
    )
    glue_endpoint_url: str | None = Field(
        None,
        description="Glue API endpoint override (a VPC endpoint, or the moto server in tests); default AWS.",
    )
    glue_region: str | None = Field(
        None,
        description="Region of the Glue Data Catalog; default: the lake bucket's region.",
    )
    retention: SnapshotRetention = Field(
        default_factory=SnapshotRetention,
        description="Snapshot retention of current-state tables and the grace before orphan files go.",
    )
    merge_every_seconds: float = Field(
        5.0, ge=0, description="In `stream` mode, how often current state is merged."
    )
    spark_merge_min_rows: int | None = Field(
        None,
        ge=0,
        description=(
            "Merge tables of at least this many rows with Spark (Iceberg MERGE INTO, connectors/lake/spark); "
            "unset: every table in-process. On one 2-core machine Spark local[2] never won "
            "(bench/bench_spark_merge.py): set it where Spark has executors of its own."
        ),
    )
    spark_jars_dir: str | None = Field(
        None,
        description="Directory of the jars a local Spark session needs (`python -m devstack.spark` fetches them).",
    )
    spark_master: str = Field("local[2]", description="Spark master of the local session.")
    lease_ttl_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description=(
            "One writer per source: how long a writer's lease lasts without renewal (it renews every "
            "third of it) before another process may take it over. A holder on the same host whose "
            "process has ended is taken over at once."
        ),
    )

    @field_validator("root")
    @classmethod
    def _root_scheme(cls, v: str) -> str:
        return check_location(v)
