"""Configuration of the DynamoDB Streams source."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from connectors.config import FrozenModel, RetryConfig, SourceName, check_location
from connectors.lake.storage import S3Options

# DynamoDB table names: 3-255 of letters, digits, '_', '-', '.'.
_TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


class AwsConnection(FrozenModel):
    """How to reach DynamoDB and DynamoDB Streams: AWS by default, endpoint overrides for moto."""

    region: str = Field("us-east-1", description="AWS region of the tables.")
    endpoint_url: str | None = Field(None, description="DynamoDB endpoint override (moto locally).")
    streams_endpoint_url: str | None = Field(
        None, description="DynamoDB Streams endpoint override; default: `endpoint_url`."
    )
    access_key_id: str | None = Field(None, description="Access key; default: the AWS credential chain.")
    secret_access_key: SecretStr | None = Field(None, description="Secret key; use ${ENV_VAR} in the file.")

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> AwsConnection:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither (credential chain)")
        return self


class DynamoDBSourceConfig(FrozenModel):
    """DynamoDB tables captured through their streams (NEW_AND_OLD_IMAGES)."""

    kind: Literal["dynamodb"] = "dynamodb"
    name: SourceName
    tables: tuple[str, ...] = Field(min_length=1, description="DynamoDB tables to capture.")
    aws: AwsConnection = Field(default_factory=AwsConnection)
    exports: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Per table, an ExportTableToPointInTime export (DynamoDB JSON) to seed the initial snapshot "
            "from instead of a Scan: s3://bucket/prefix/AWSDynamoDB/<export id>/ (the folder holding "
            "manifest-summary.json). The export must be younger than the stream's 24 h retention."
        ),
    )
    scan_segments: int = Field(4, ge=1, le=1_000_000, description="Parallel Scan segments of the snapshot.")
    batch_max_rows: int = Field(50_000, ge=1, description="Records per lake commit while streaming.")
    batch_max_seconds: float = Field(
        1.0, gt=0, description="Longest wait before committing what has arrived."
    )
    chunk_rows: int = Field(100_000, ge=100, description="Rows per staged file during snapshots.")
    poll_min_seconds: float = Field(0.2, gt=0, description="First pause when every shard is quiet.")
    poll_max_seconds: float = Field(
        2.0, gt=0, description="Longest pause when every shard is quiet (backoff cap)."
    )
    discover_seconds: float = Field(
        10.0, gt=0, description="How often DescribeStream looks for new shards (also after a shard closes)."
    )
    clock_margin_seconds: float = Field(
        60.0,
        ge=0,
        description=(
            "Snapshot hand-over margin: stream records older than the snapshot start minus this are known "
            "to be contained in it (ApproximateCreationDateTime is rounded to seconds)."
        ),
    )
    settle_seconds: float = Field(
        1.0,
        ge=0,
        description="Pause after a Scan before reading the streams to their tip (propagation delay).",
    )
    retention_hours: float = Field(
        24.0, gt=0, description="The streams' retention; older stored positions are refused, not skipped."
    )
    worker_session_seconds: float = Field(
        30.0,
        gt=0,
        description=(
            "With `lakehouse stream --shard-worker`: how long a worker reads its leased shards before it "
            "gives back finished shards and any beyond its fair share and takes free ones."
        ),
    )
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @field_validator("tables")
    @classmethod
    def _table_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in v if not _TABLE.match(t)]
        if bad:
            raise ValueError(f"not DynamoDB table names: {bad} (3-255 letters, digits, '_', '-', '.')")
        if len(set(v)) != len(v):
            raise ValueError(f"tables repeated: {sorted({t for t in v if v.count(t) > 1})}")
        return v

    @model_validator(mode="after")
    def _exports_name_tables(self) -> DynamoDBSourceConfig:
        unknown = sorted(set(self.exports) - set(self.tables))
        if unknown:
            raise ValueError(f"exports name tables that are not captured: {unknown}")
        bad = sorted(t for t, uri in self.exports.items() if not uri.startswith(("s3://", "/", "file://")))
        if bad:
            raise ValueError(f"exports of {bad} must be s3:// URIs or local paths")
        if self.poll_max_seconds < self.poll_min_seconds:
            raise ValueError("poll_max_seconds must be at least poll_min_seconds")
        return self


_KEY_PART = re.compile(r"^([^:,\s]+):(S|N|B)$")


class DynamoDBReplayConfig(FrozenModel):
    """DynamoDB stream records as AWS Lambda received them, replayed from files (local or S3)."""

    kind: Literal["dynamodb_replay"] = "dynamodb_replay"
    name: SourceName
    location: Annotated[str, AfterValidator(check_location)] = Field(
        description=(
            "Where the files are: a local directory, file:///dir or s3://bucket/prefix. Files are replayed in "
            "lexicographic order of their paths (dated names, as Firehose writes them, replay in time order)."
        )
    )
    s3: S3Options = Field(
        default_factory=S3Options, description="S3 endpoint and credentials for an s3:// location."
    )
    tables: dict[str, str] = Field(
        min_length=1,
        description=(
            'Per DynamoDB table, its key as "<hash>:<type>[,<range>:<type>]" with types S, N or B, e.g. '
            '"patient_id:N,event_time:S". Records of other tables are counted and skipped.'
        ),
    )
    batch_max_rows: int = Field(50_000, ge=1, description="Records per lake commit (whole files).")
    poll_seconds: float = Field(5.0, gt=0, description="In stream mode, how often to look for new files.")

    @field_validator("tables")
    @classmethod
    def _key_specs(cls, v: dict[str, str]) -> dict[str, str]:
        for table, spec in v.items():
            if not _TABLE.match(table):
                raise ValueError(f"{table!r} is not a DynamoDB table name")
            parts = [p.strip() for p in spec.split(",")]
            if not 1 <= len(parts) <= 2 or not all(_KEY_PART.match(p) for p in parts):
                raise ValueError(
                    f"key of {table}: {spec!r} is not '<hash>:<S|N|B>' or '<hash>:<S|N|B>,<range>:<S|N|B>'"
                )
        return v

    def key_attributes(self, table: str) -> list[tuple[str, str]]:
        """(name, type) of the table's key attributes, hash first."""
        return [tuple(p.strip().split(":")) for p in self.tables[table].split(",")]  # type: ignore[misc]
