"""Configuration shared by the database sources: frozen pydantic models that name bad fields."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def check_source_name(v: str) -> str:
    """A source name is used in lake paths and asset keys: lower_snake_case."""
    if not _NAME.match(v):
        raise ValueError(f"{v!r} must be lower_snake_case (letters, digits, _), starting with a letter")
    return v


def check_location(v: str) -> str:
    """A place for files: a local path, file:// or s3:// URI."""
    if "://" in v and not v.startswith(("file://", "s3://")):
        raise ValueError(f"{v!r}: must be a local path, file:// or s3:// URI")
    return v


SourceName = Annotated[
    str,
    AfterValidator(check_source_name),
    Field(description="Unique source name; used in lake paths and asset keys (lower_snake_case)."),
]


class FrozenModel(BaseModel):
    """Base for every config model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class RetryConfig(FrozenModel):
    """Bounded exponential backoff for transient connection errors."""

    attempts: int = Field(6, ge=1, le=100, description="Tries before giving up with a clear error.")
    initial_seconds: float = Field(0.5, gt=0, description="First pause between tries.")
    max_seconds: float = Field(10.0, gt=0, description="Longest pause between tries.")


TlsMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]
VERIFYING_TLS_MODES = frozenset({"verify-ca", "verify-full"})
ENCRYPTING_TLS_MODES = frozenset({"require", "verify-ca", "verify-full"})


class TlsConfig(FrozenModel):
    """TLS of every connection to the source (SQL, binlog or replication stream, snapshot readers).

    The modes are libpq's (MySQL's ``--ssl-mode`` names in brackets): 'disable' (DISABLED) plain;
    'prefer' (PREFERRED) TLS without verification when the server offers it, else plain;
    'require' (REQUIRED) TLS without verification; 'verify-ca' (VERIFY_CA) TLS with a server
    certificate signed by a CA in `ca_file`; 'verify-full' (VERIFY_IDENTITY) that and the
    certificate names the configured host.
    """

    mode: TlsMode = Field(
        "prefer",
        description=(
            "'verify-full' in production (with ca_file, e.g. the RDS global bundle); 'prefer' (the default) "
            "encrypts when the server offers TLS but verifies nothing."
        ),
    )
    ca_file: str | None = Field(
        None,
        description=(
            "PEM file of the CAs the server certificate must chain to (for RDS / Aurora: global-bundle.pem "
            "from truststore.pki.rds.amazonaws.com); required by the verify-* modes and only used by them."
        ),
    )

    @model_validator(mode="after")
    def _ca_file_matches_mode(self) -> TlsConfig:
        if self.mode in VERIFYING_TLS_MODES and not self.ca_file:
            raise ValueError(
                f"tls.ca_file is required with tls.mode = '{self.mode}' (the CA bundle to verify the "
                "server against, e.g. the RDS global-bundle.pem)"
            )
        if self.ca_file and self.mode not in VERIFYING_TLS_MODES:
            raise ValueError(
                f"tls.ca_file is only used with tls.mode 'verify-ca' or 'verify-full', not '{self.mode}'"
            )
        return self


class DatabaseSourceConfig(FrozenModel):
    """Connection and batching settings common to the MySQL and PostgreSQL sources."""

    name: SourceName
    host: str = Field(
        "127.0.0.1", description="Database endpoint (an Aurora cluster writer endpoint in production)."
    )
    port: int = Field(ge=1, le=65535, description="TCP port.")
    user: str = Field(description="CDC user.")
    password: SecretStr = Field(
        SecretStr(""), description="CDC user's password; use ${ENV_VAR} in the config file."
    )
    database: str = Field(description="Database to capture.")
    tables: tuple[str, ...] = Field((), description="Tables to capture; empty means every base table.")
    timezone: str = Field(
        "UTC",
        description="Zone in which zone-less DATETIME/TIMESTAMP WITHOUT TIME ZONE values are read before normalising to UTC.",
    )
    batch_max_rows: int = Field(
        50_000, ge=1, description="Rows per lake commit while streaming (cut at transaction boundaries)."
    )
    batch_max_seconds: float = Field(
        1.0, gt=0, description="Longest wait before committing what has arrived."
    )
    chunk_rows: int = Field(
        100_000,
        ge=100,
        description="Rows per snapshot chunk (one short read each) and per staged file of a huge transaction.",
    )
    snapshot_reader: Literal["arrow", "driver"] = Field(
        "arrow",
        description=(
            "How snapshot chunks are read: 'arrow' straight into Arrow (connectorx for MySQL/MariaDB, the ADBC "
            "driver for PostgreSQL; 3-8x faster, bench/bench_chunk_readers.py), any value they do not convert "
            "exactly read again by the driver; 'driver' always through PyMySQL / psycopg2."
        ),
    )
    snapshot_readers: int = Field(
        1,
        ge=1,
        le=16,
        description=(
            "Chunks of a table read at once. A resumable snapshot with snapshot_reader 'arrow' plans each "
            "chunk's end key ahead (an index-only read) and reads that many chunks in parallel, committing "
            "them in key order; a MySQL/MariaDB backfill reads as many key ranges. Each reader holds a chunk "
            "in memory; more than 2 gain little unless the server has cores to spare (bench/bench_snapshot.py)."
        ),
    )
    retry: RetryConfig = Field(default_factory=RetryConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)  # type: ignore[arg-type]
    region: str | None = Field(
        None, description="AWS region of the database, for IAM tokens (auth = 'iam'); e.g. 'eu-west-1'."
    )
    auth: Literal["password", "iam"] = Field(
        "password",
        description=(
            "'password': the configured password; 'iam': RDS IAM database authentication, a token from "
            "rds:generate_db_auth_token (signed locally with the AWS default credential chain) minted for "
            "every new connection. IAM needs TLS (tls.mode require, verify-ca or verify-full) and `region`."
        ),
    )

    # A field validator, not a model one: a model validator's error carries the whole input, password
    # included. `tls`, `password` and `region` are declared before `auth`, so they are in `info.data`.
    @field_validator("auth")
    @classmethod
    def _iam_is_consistent(cls, v: str, info: ValidationInfo) -> str:
        if v != "iam":
            return v
        tls = info.data.get("tls")
        if tls is not None and tls.mode not in ENCRYPTING_TLS_MODES:
            raise ValueError(
                f"auth = 'iam' sends its token in clear text and needs TLS: set tls.mode to 'verify-full' "
                f"(or 'verify-ca', 'require'), not '{tls.mode}'"
            )
        if not info.data.get("region"):
            raise ValueError("auth = 'iam' needs `region` (the AWS region the token is signed for)")
        password = info.data.get("password")
        if password is not None and password.get_secret_value():
            raise ValueError(
                "password is not used with auth = 'iam': remove it (each connection gets a token)"
            )
        return v

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')"
            ) from None
        return v
