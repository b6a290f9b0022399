"""Configuration of the lake: where files live and which Iceberg catalog tracks current state."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

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


SparkLauncher = Literal["in_process", "local_pipes", "glue", "emr_serverless"]


class SparkLaunch(FrozenModel):
    """Where a Dagster run merges a large table (`lake.spark_merge_min_rows`): in its own process,
    or as a Spark job launched through Dagster Pipes (`connectors/lake/spark/pipes_job.py`).

    The job gets the source, table, head commit and the lake's settings without secrets; on Glue
    and EMR Serverless it reaches S3 and the catalog with the job's IAM role. Only Dagster's
    per-table `current_state` runs launch jobs: `lakehouse stream` and `lakehouse merge` keep
    `spark_master` in their own process.
    """

    launcher: SparkLauncher = Field(
        "in_process",
        description=(
            "'in_process': a local Spark session in the run's process (`spark_master`); 'local_pipes': "
            "the job in a subprocess of the run, Spark `spark_master` (local[2]), Pipes over files; "
            "'glue' / 'emr_serverless': a Glue 5.1 job run / an EMR Serverless job run, Pipes "
            "context and messages through `pipes_bucket`."
        ),
    )
    glue_job_name: str | None = Field(
        None, description="'glue': the Glue job (Spark, Glue 5.1) whose script is pipes_job.py."
    )
    emr_application_id: str | None = Field(
        None, description="'emr_serverless': the Spark application (EMR 7.x) the job runs in."
    )
    execution_role_arn: str | None = Field(
        None, description="'emr_serverless': the job's IAM role (S3, the catalog, the Pipes bucket)."
    )
    entry_point: str | None = Field(
        None,
        description=(
            "'emr_serverless': S3 URI of pipes_job.py (the Glue job names its own script); "
            "'local_pipes': a local path, default the installed module's file."
        ),
    )
    spark_submit_parameters: str = Field(
        "",
        description=(
            "'emr_serverless': spark-submit options of the job (--conf, --archives of the Python "
            "environment; docs/decisions.md §21)."
        ),
    )
    pipes_bucket: str | None = Field(
        None, description="'glue' / 'emr_serverless': S3 bucket for the Pipes context and messages."
    )
    pipes_prefix: str = Field(
        "dagster-pipes/", description="Key prefix of the Pipes context and messages in `pipes_bucket`."
    )
    region: str | None = Field(
        None, description="Region of the Glue job or EMR application; default: the lake's Glue region."
    )
    endpoint_url: str | None = Field(
        None, description="Glue or EMR Serverless API endpoint override (moto in tests); default AWS."
    )

    @model_validator(mode="after")
    def _launcher_settings(self) -> SparkLaunch:
        required = {
            "glue": ("glue_job_name", "pipes_bucket"),
            "emr_serverless": ("emr_application_id", "execution_role_arn", "entry_point", "pipes_bucket"),
        }.get(self.launcher, ())
        missing = [f"lake.spark.{name}" for name in required if not getattr(self, name)]
        if missing:
            raise ValueError(f"lake.spark.launcher = {self.launcher!r} needs {', '.join(missing)}")
        if self.launcher == "emr_serverless" and not str(self.entry_point).startswith("s3://"):
            raise ValueError(
                f"lake.spark.entry_point {self.entry_point!r}: EMR Serverless needs an s3:// URI"
            )
        return self


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
    spark: SparkLaunch = Field(
        default_factory=SparkLaunch,
        description="Where Dagster's per-table merges run a large table's Spark merge (`[lake.spark]`).",
    )
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

    @model_validator(mode="after")
    def _spark_launch(self) -> LakeConfig:
        launcher = self.spark.launcher
        if launcher != "in_process" and self.spark_merge_min_rows is None:
            raise ValueError(
                f"lake.spark.launcher = {launcher!r} launches large tables' merges: set lake.spark_merge_min_rows"
            )
        if launcher == "local_pipes" and not self.spark_jars_dir:
            raise ValueError("lake.spark.launcher = 'local_pipes' needs lake.spark_jars_dir")
        if launcher in ("glue", "emr_serverless") and not self.root.startswith("s3://"):
            raise ValueError(
                f"lake.spark.launcher = {launcher!r} needs an s3:// lake.root (the job reads it)"
            )
        if launcher in ("glue", "emr_serverless") and self.catalog != "glue":
            raise ValueError(
                f"lake.spark.launcher = {launcher!r} needs lake.catalog = 'glue' (the job cannot open a local SQLite catalog)"
            )
        return self
