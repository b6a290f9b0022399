"""Dagster resources: each carries config and hands the plain client (Lake, Source) to asset code.

Secrets come through `dg.EnvVar`, which Dagster resolves at run time and never shows in the UI.
"""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field, SecretStr

from connectors.dynamodb.config import AwsConnection, DynamoDBReplayConfig, DynamoDBSourceConfig
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.lake.storage import S3Options
from connectors.mysql.config import MySQLSourceConfig
from connectors.postgres.config import PostgresSourceConfig
from connectors.source import Source
from pipelines.sources import open_source


class LakeResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The lake: a local directory or an S3 prefix, plus the Iceberg catalog."""

    root: str = Field(description="Local path or s3://bucket/prefix.")
    catalog: Literal["sqlite", "glue"] = "sqlite"
    catalog_uri: str = ""
    glue_endpoint_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = Field(
        None, description="Use dg.EnvVar; None means the default AWS chain."
    )

    def lake(self) -> Lake:
        return Lake(
            LakeConfig(
                root=self.root,
                catalog=self.catalog,
                catalog_uri=self.catalog_uri,
                glue_endpoint_url=self.glue_endpoint_url,
                s3=S3Options(
                    endpoint_url=self.s3_endpoint_url,
                    region=self.s3_region,
                    access_key_id=self.aws_access_key_id,
                    secret_access_key=SecretStr(self.aws_secret_access_key)
                    if self.aws_secret_access_key
                    else None,
                ),
            )
        )


class DatabaseSourceResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Connection settings of one CDC source; `open()` returns the connector."""

    kind: Literal["mysql", "postgres"]
    name: str
    host: str
    port: int
    user: str
    password: str = Field(description="Use dg.EnvVar('LAKEHOUSE_<SOURCE>_PASSWORD').")
    database: str
    schema_name: str = "public"
    tables: list[str] = Field(default_factory=list)
    timezone: str = "UTC"

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
    s3_region: str = "us-east-1"
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
    """The environment variable that holds a DynamoDB source's secret key."""
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
        password=dg.EnvVar(password_env_var(config.name)),
        database=config.database,
        schema_name=getattr(config, "schema_name", "public"),
        tables=list(config.tables),
        timezone=config.timezone,
    )
