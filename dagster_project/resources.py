"""Dagster resources: each carries config and hands the plain client (Lake, Source) to asset code.

Secrets come through `dg.EnvVar`, which Dagster resolves at run time and never shows in the UI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import dagster as dg
from pydantic import Field, SecretStr

from connectors.config import TlsConfig, TlsMode
from connectors.dynamodb.config import AwsConnection, DynamoDBReplayConfig, DynamoDBSourceConfig
from connectors.lake.config import LakeConfig, SparkLaunch, SparkLauncher
from connectors.lake.current import LargeTableMerger
from connectors.lake.lake import Lake
from connectors.lake.storage import S3Options
from connectors.mysql.config import MySQLSourceConfig
from connectors.postgres.config import PostgresSourceConfig
from connectors.source import Source
from connectors.tenancy import TenancyConfig
from pipelines.capture.sources import open_source

if TYPE_CHECKING:
    from dagster_project.spark_pipes import PipesSparkMerger


class LakeRetries(dg.Config):
    """`AwsRetries` field for field: how the lake's S3 calls retry and time out."""

    mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = 5
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 60.0


class LakeS3Settings(dg.Config):
    """`S3Options` field for field (see it for what each means), except the secrets, which travel
    as `dg.EnvVar` on `LakeResource`.

    Declared rather than generated from `S3Options` (a generated class is no type to mypy), so
    tests/dagster/test_resources.py holds it, and `LakeRetries`, to the same names, types and
    defaults as the models they mirror; the conversions go by field name.
    """

    endpoint_url: str | None = None
    region: str | None = Field(default=None, description="Bucket region; unset: read from the bucket.")
    profile: str | None = None
    role_arn: str | None = Field(
        default=None, description="Role to assume; unset: the credential chain's identity."
    )
    role_session_name: str = "lakehouse-cdc"
    kms_key_id: str | None = Field(default=None, description="SSE-KMS key for every object written.")
    access_key_id: str | None = Field(
        default=None, description="Only with explicit keys; the secret is an EnvVar."
    )
    retries: LakeRetries = Field(default_factory=LakeRetries)

    @classmethod
    def of(cls, s3: S3Options, *, explicit_keys: bool) -> LakeS3Settings:
        """The settings of `s3`; its access key only with `explicit_keys` (then the secret is an EnvVar)."""
        settings = s3.model_dump(include=set(cls.model_fields))
        if not explicit_keys:
            settings["access_key_id"] = None
        return cls.model_validate(settings)

    def options(self, secret: str | None, token: str | None) -> S3Options:
        """The `S3Options` these settings stand for, with the secrets resolved at run time."""
        return S3Options.model_validate(
            {
                **self.model_dump(),
                "secret_access_key": SecretStr(secret) if secret else None,
                "session_token": SecretStr(token) if token else None,
            }
        )


class LakeResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The lake: a local directory or an S3 prefix, plus the Iceberg catalog.

    AWS access is the default credential chain (task role, IRSA, instance profile, SSO) unless the
    config names a profile, a role or keys; only explicit secrets travel as `dg.EnvVar`.
    """

    root: str = Field(description="Local path or s3://bucket/prefix.")
    catalog: Literal["sqlite", "glue"] = "sqlite"
    catalog_uri: str = ""
    glue_endpoint_url: str | None = None
    glue_region: str | None = None
    s3: LakeS3Settings = Field(default_factory=lambda: LakeS3Settings())
    aws_secret_access_key: str | None = Field(
        None, description="Use dg.EnvVar; None means the default AWS chain."
    )
    aws_session_token: str | None = Field(None, description="Use dg.EnvVar; goes with temporary keys.")
    tenancy: str = Field("", description="`[tenancy]` as JSON: tenant-owned change logs by tenant (§25).")

    def lake(self) -> Lake:
        tenancy = TenancyConfig.model_validate_json(self.tenancy) if self.tenancy else None
        return Lake(
            LakeConfig(
                root=self.root,
                catalog=self.catalog,
                catalog_uri=self.catalog_uri,
                glue_endpoint_url=self.glue_endpoint_url,
                glue_region=self.glue_region,
                s3=self.s3.options(self.aws_secret_access_key, self.aws_session_token),
            ),
            tenancy,
        )


LAKE_SESSION_TOKEN_ENV = "LAKEHOUSE_LAKE_AWS_SESSION_TOKEN"


class SparkMergeResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where a `current_state` partition merges a large table: `lake.spark_merge_min_rows`,
    `spark_jars_dir`, `spark_master` and `[lake.spark]` (`SparkLaunch`, field for field).

    `merger()` hands the run its `CurrentState.large_tables`: None (every table in-process), a
    local Spark session in the run's process, or a launcher of the Pipes job (a subprocess, Glue,
    EMR Serverless) that reports the merge back (`dagster_project.spark_pipes`).
    """

    min_rows: int | None = None
    jars_dir: str | None = None
    master: str = "local[2]"
    launcher: SparkLauncher = "in_process"
    glue_job_name: str | None = None
    emr_application_id: str | None = None
    execution_role_arn: str | None = None
    entry_point: str | None = None
    spark_submit_parameters: str = ""
    pipes_bucket: str | None = None
    pipes_prefix: str = "dagster-pipes/"
    region: str | None = None
    endpoint_url: str | None = None

    def launch(self) -> SparkLaunch:
        return SparkLaunch.model_validate(self.model_dump(include=set(SparkLaunch.model_fields)))

    def merger(
        self, context: dg.AssetExecutionContext, lake: Lake
    ) -> PipesSparkMerger | LargeTableMerger | None:
        """The run's large-table merger for `lake` (None when no table is large enough for Spark)."""
        if self.min_rows is None:
            return None
        settings = {"spark_merge_min_rows": self.min_rows, "spark_jars_dir": self.jars_dir}
        config = LakeConfig.model_validate(
            {**lake.config.model_dump(), **settings, "spark_master": self.master, "spark": self.launch()}
        )
        if self.launcher == "in_process":
            from connectors.lake.spark.merger import SparkMerger

            if not self.jars_dir:
                raise ValueError("lake.spark_merge_min_rows is set but lake.spark_jars_dir is not")
            return SparkMerger(lake, self.min_rows, self.jars_dir, self.master)
        from dagster_project.spark_pipes import PipesSparkMerger

        return PipesSparkMerger(context, Lake(config))


def spark_merge_resource(config: LakeConfig) -> SparkMergeResource:
    """The lake's large-table merge settings as a resource (no secret among them)."""
    return SparkMergeResource(
        min_rows=config.spark_merge_min_rows,
        jars_dir=config.spark_jars_dir,
        master=config.spark_master,
        **config.spark.model_dump(),
    )


def lake_resource(config: LakeConfig, tenancy: TenancyConfig | None = None) -> LakeResource:
    """A resource for the configured lake. Explicit keys (an `s3://` root only) are read at run time
    from LAKEHOUSE_LAKE_AWS_SECRET_ACCESS_KEY and, with a session token, LAKEHOUSE_LAKE_AWS_SESSION_TOKEN;
    without them the process's AWS credential chain is used, as everywhere else."""
    s3 = config.s3
    explicit = config.root.startswith("s3://") and s3.access_key_id is not None
    return LakeResource(
        root=config.root,
        catalog=config.catalog,
        catalog_uri=config.catalog_uri,
        glue_endpoint_url=config.glue_endpoint_url,
        glue_region=config.glue_region,
        s3=LakeS3Settings.of(s3, explicit_keys=explicit),
        aws_secret_access_key=dg.EnvVar(aws_secret_env_var("lake")) if explicit else None,
        aws_session_token=dg.EnvVar(LAKE_SESSION_TOKEN_ENV)
        if explicit and s3.session_token is not None
        else None,
        tenancy=tenancy.model_dump_json() if tenancy is not None and tenancy.tables else "",
    )


class DatabaseSourceResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Connection settings of one CDC source; `open()` returns the connector."""

    kind: Literal["mysql", "postgres"]
    name: str
    host: str
    port: int
    user: str
    password: str = Field(
        "", description="Use dg.EnvVar('LAKEHOUSE_<SOURCE>_PASSWORD'); empty with IAM auth."
    )
    database: str
    schema_name: str = "public"
    tables: list[str] = Field(default_factory=list)
    timezone: str = "UTC"
    tls_mode: TlsMode = "prefer"
    tls_ca_file: str | None = None
    auth: Literal["password", "iam"] = "password"
    region: str | None = None

    def source_config(self) -> MySQLSourceConfig | PostgresSourceConfig:
        common = dict(
            name=self.name,
            host=self.host,
            port=self.port,
            user=self.user,
            password=SecretStr(self.password),
            database=self.database,
            tables=tuple(self.tables),
            timezone=self.timezone,
            tls=TlsConfig(mode=self.tls_mode, ca_file=self.tls_ca_file),
            region=self.region,
            auth=self.auth,
        )
        if self.kind == "mysql":
            return MySQLSourceConfig(**common)
        return PostgresSourceConfig(**common, schema=self.schema_name)

    def open(self) -> Source:
        return open_source(self.source_config())


class DynamoDBSourceResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A DynamoDB Streams source; `open()` returns the connector."""

    name: str
    tables: list[str]
    region: str = "us-east-1"
    endpoint_url: str | None = None
    streams_endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = Field(
        None, description="Use dg.EnvVar; None means the default AWS credential chain."
    )
    exports: dict[str, str] = Field(default_factory=dict)

    def source_config(self) -> DynamoDBSourceConfig:
        return DynamoDBSourceConfig(
            name=self.name,
            tables=tuple(self.tables),
            exports=self.exports,
            aws=AwsConnection(
                region=self.region,
                endpoint_url=self.endpoint_url,
                streams_endpoint_url=self.streams_endpoint_url,
                access_key_id=self.aws_access_key_id,
                secret_access_key=SecretStr(self.aws_secret_access_key)
                if self.aws_secret_access_key
                else None,
            ),
        )

    def open(self) -> Source:
        return open_source(self.source_config())


class ReplaySourceResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Files of Lambda-delivered DynamoDB stream records; `open()` returns the connector."""

    name: str
    location: str
    tables: dict[str, str]
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = Field(None, description="Use dg.EnvVar; None means the AWS chain.")

    def source_config(self) -> DynamoDBReplayConfig:
        return DynamoDBReplayConfig(
            name=self.name,
            location=self.location,
            tables=self.tables,
            s3=S3Options(
                endpoint_url=self.s3_endpoint_url,
                region=self.s3_region,
                access_key_id=self.aws_access_key_id,
                secret_access_key=SecretStr(self.aws_secret_access_key)
                if self.aws_secret_access_key
                else None,
            ),
        )

    def open(self) -> Source:
        return open_source(self.source_config())


def replay_resource(config: DynamoDBReplayConfig) -> ReplaySourceResource:
    """A resource for a configured replay source; an explicit secret key is read at run time."""
    s3 = config.s3
    return ReplaySourceResource(
        name=config.name,
        location=config.location,
        tables=dict(config.tables),
        s3_endpoint_url=s3.endpoint_url,
        s3_region=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=dg.EnvVar(aws_secret_env_var(config.name)) if s3.secret_access_key else None,
    )


def aws_secret_env_var(source_name: str) -> str:
    """The environment variable that holds a DynamoDB source's (or, as 'lake', the lake's) secret key."""
    return f"LAKEHOUSE_{source_name.upper()}_AWS_SECRET_ACCESS_KEY"


def dynamodb_resource(config: DynamoDBSourceConfig) -> DynamoDBSourceResource:
    """A resource for a configured DynamoDB source; an explicit secret key is read at run time."""
    aws = config.aws
    return DynamoDBSourceResource(
        name=config.name,
        tables=list(config.tables),
        region=aws.region,
        endpoint_url=aws.endpoint_url,
        streams_endpoint_url=aws.streams_endpoint_url,
        aws_access_key_id=aws.access_key_id,
        aws_secret_access_key=dg.EnvVar(aws_secret_env_var(config.name)) if aws.secret_access_key else None,
        exports=dict(config.exports),
    )


def password_env_var(source_name: str) -> str:
    """The environment variable that holds a source's password: LAKEHOUSE_<NAME>_PASSWORD."""
    return f"LAKEHOUSE_{source_name.upper()}_PASSWORD"


def source_resource(config: MySQLSourceConfig | PostgresSourceConfig) -> DatabaseSourceResource:
    """A resource for a configured source; its password is read from the environment at run time."""
    return DatabaseSourceResource(
        kind=config.kind,
        name=config.name,
        host=config.host,
        port=config.port,
        user=config.user,
        # IAM auth mints a token per connection: there is no password to read.
        password=dg.EnvVar(password_env_var(config.name)) if config.auth == "password" else "",
        database=config.database,
        schema_name=getattr(config, "schema_name", "public"),
        tables=list(config.tables),
        timezone=config.timezone,
        tls_mode=config.tls.mode,
        tls_ca_file=config.tls.ca_file,
        auth=config.auth,
        region=config.region,
    )
