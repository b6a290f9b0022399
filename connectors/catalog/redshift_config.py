"""Declared Redshift objects: federated schemas, the Spectrum schema and cross-source views.

These models are the single source of truth from which `redshift_ddl` renders DDL, so they refuse
anything Redshift would refuse later (a POSTGRES schema without a remote schema name, a malformed
ARN) and name the offending field. Credentials are never held here: Redshift reads them from
Secrets Manager by ARN, so the only secret-shaped value is the secret's ARN.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, ValidationInfo, field_validator, model_validator

from connectors.aws import AwsRetries, client_config
from connectors.catalog.redshift_data import RedshiftTarget
from connectors.config import FrozenModel

# Redshift identifiers are at most 127 bytes of UTF-8 (CREATE SCHEMA / names and identifiers docs).
_MAX_IDENTIFIER_BYTES = 127

_PARTITION = r"aws(?:-cn|-us-gov)?"
_ACCOUNT = r"\d{12}"
_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d"
_ROLE_ARN = re.compile(rf"^arn:{_PARTITION}:iam::{_ACCOUNT}:role/[\w+=,.@/-]{{1,512}}$")
_SECRET_ARN = re.compile(
    rf"^arn:{_PARTITION}:secretsmanager:{_REGION}:{_ACCOUNT}:secret:[\w/+=.@-]{{1,512}}$"
)
_REGION_NAME = re.compile(rf"^{_REGION}$")
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$")


def check_identifier(v: str) -> str:
    """Any non-empty name Redshift accepts; quoting is the renderer's job, not the user's."""
    if not v:
        raise ValueError("must not be empty")
    if "\x00" in v:
        raise ValueError("must not contain NUL")
    if len(v.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ValueError(f"{v!r} is longer than {_MAX_IDENTIFIER_BYTES} bytes (Redshift's limit)")
    return v


def check_role_arn(v: str) -> str:
    """An IAM role ARN, or a comma-separated chain of them (Redshift role chaining)."""
    for part in v.split(","):
        if not _ROLE_ARN.match(part):
            raise ValueError(f"{part!r} is not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>)")
    return v


def check_secret_arn(v: str) -> str:
    """A Secrets Manager secret ARN; the secret itself never enters the configuration."""
    if not _SECRET_ARN.match(v):
        raise ValueError(
            f"{v!r} is not a Secrets Manager ARN (arn:aws:secretsmanager:<region>:<12 digits>:secret:<name>)"
        )
    return v


Identifier = Annotated[str, AfterValidator(check_identifier)]
RoleArn = Annotated[str, AfterValidator(check_role_arn)]
SecretArn = Annotated[str, AfterValidator(check_secret_arn)]

DEFAULT_PORTS = {"MYSQL": 3306, "POSTGRES": 5432}


def _check_unique(values: list[str], what: str) -> None:
    # Redshift folds unquoted and (by default) quoted identifiers to lower case, so names that
    # differ only in case would collide on the cluster.
    seen: set[str] = set()
    for v in values:
        if v.lower() in seen:
            raise ValueError(f"duplicate {what} {v!r} (names are compared case-insensitively)")
        seen.add(v.lower())


class FederatedSchema(FrozenModel):
    """An external schema over a live Aurora/RDS database (Redshift federated query)."""

    name: Identifier = Field(description="Local Redshift schema name.")
    engine: Literal["MYSQL", "POSTGRES"] = Field(description="Remote engine: MYSQL or POSTGRES.")
    database: Identifier = Field(description="Remote database name.")
    schema_name: str | None = Field(
        None,
        validate_default=True,
        description="Remote schema; required for POSTGRES, refused for MYSQL (no such level).",
    )
    uri: str = Field(description="Remote endpoint host name (an Aurora cluster endpoint), no scheme.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Remote port; defaults to 3306 (MYSQL) or 5432 (POSTGRES)."
    )
    iam_role_arn: RoleArn = Field(
        description="Role Redshift assumes to read the secret (comma-separated for role chaining)."
    )
    secret_arn: SecretArn = Field(
        description="Secrets Manager ARN holding the remote user and password; never the secret."
    )

    @field_validator("schema_name")
    @classmethod
    def _schema_matches_engine(cls, v: str | None, info: ValidationInfo) -> str | None:
        engine = info.data.get("engine")
        if engine == "POSTGRES" and v is None:
            raise ValueError("required when engine is POSTGRES")
        if engine == "MYSQL" and v is not None:
            raise ValueError("must be omitted when engine is MYSQL (MySQL has no schema level)")
        return v if v is None else check_identifier(v)

    @field_validator("uri")
    @classmethod
    def _host_only(cls, v: str) -> str:
        if not _HOST.match(v):
            raise ValueError(f"{v!r} must be a bare host name (no scheme, port or path)")
        return v

    @property
    def resolved_port(self) -> int:
        """The port stated in DDL: explicit, so the declaration compares exactly with the cluster."""
        return self.port if self.port is not None else DEFAULT_PORTS[self.engine]


class SpectrumSchema(FrozenModel):
    """An external schema over a Glue Data Catalog database (Redshift Spectrum reads the lake)."""

    name: Identifier = Field(description="Local Redshift schema name.")
    glue_database: Identifier = Field(description="Glue Data Catalog database holding the lake tables.")
    iam_role_arn: RoleArn = Field(description="Role Redshift assumes to read Glue and S3.")
    region: str | None = Field(
        None, description="Region of the Glue catalog when it differs from the cluster's."
    )
    create_external_database: bool = Field(
        False,
        description="Add CREATE EXTERNAL DATABASE IF NOT EXISTS; off because the catalog publisher owns Glue.",
    )

    @field_validator("region")
    @classmethod
    def _region_shape(cls, v: str | None) -> str | None:
        if v is not None and not _REGION_NAME.match(v):
            raise ValueError(f"{v!r} is not an AWS region name (e.g. us-east-1)")
        return v


class ViewSource(FrozenModel):
    """One branch of a cross-source view: a table whose rows are tagged with a literal label."""

    schema_: Identifier = Field(alias="schema", description="Schema holding the table.")
    table: Identifier = Field(description="Table (or view) to read.")
    columns: tuple[Identifier, ...] = Field(
        (),
        description="Source columns, matched by position to the view's columns; empty means the same names.",
    )
    label: str = Field(min_length=1, description="Value of the view's source column for these rows.")


class UnionView(FrozenModel):
    """A view that UNION ALLs rows from several schemas, with a column naming each row's source."""

    schema_: Identifier = Field(alias="schema", description="Schema the view lives in.")
    name: Identifier = Field(description="View name.")
    columns: tuple[Identifier, ...] = Field(min_length=1, description="The view's columns, in order.")
    sources: tuple[ViewSource, ...] = Field(min_length=1, description="Branches of the UNION ALL.")
    source_column: Identifier = Field(
        "source", validate_default=True, description="Column holding each row's source label."
    )

    @field_validator("columns")
    @classmethod
    def _columns_unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        _check_unique(list(v), "column")
        return v

    @field_validator("source_column")
    @classmethod
    def _source_column_free(cls, v: str, info: ValidationInfo) -> str:
        if v.lower() in {c.lower() for c in info.data.get("columns", ())}:
            raise ValueError(f"{v!r} is already one of the view's columns")
        return v

    @field_validator("sources")
    @classmethod
    def _sources_fit(cls, v: tuple[ViewSource, ...], info: ValidationInfo) -> tuple[ViewSource, ...]:
        width = len(info.data.get("columns", ()))
        for i, source in enumerate(v):
            if source.columns and len(source.columns) != width:
                raise ValueError(
                    f"sources[{i}] ({source.schema_}.{source.table}) has {len(source.columns)} "
                    f"columns, the view has {width}"
                )
        labels = [s.label for s in v]
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct, got {labels}")
        return v


class RedshiftAws(FrozenModel):
    """How to reach the Redshift Data API and Secrets Manager: AWS by default, moto locally."""

    region: str = Field("us-east-1", description="AWS region of the cluster and the secrets.")
    endpoint_url: str | None = Field(None, description="Redshift Data API endpoint override.")
    secrets_endpoint_url: str | None = Field(
        None,
        description="Secrets Manager endpoint override; the local warehouse reads federated secrets there.",
    )
    access_key_id: str | None = Field(None, description="Access key; default: the AWS credential chain.")
    secret_access_key: SecretStr | None = Field(None, description="Secret key; use ${ENV_VAR} in the file.")
    retries: AwsRetries = Field(
        default_factory=AwsRetries, description="Retries and timeouts of Data API and Secrets Manager calls."
    )

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> RedshiftAws:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither (credential chain)")
        return self

    def client_kwargs(self, endpoint_url: str | None) -> dict[str, Any]:
        """boto3 client arguments for one service of this connection (with the one botocore Config)."""
        kwargs: dict[str, Any] = {"region_name": self.region, "config": client_config(self.retries)}
        if endpoint_url:
            kwargs["endpoint_url"] = endpoint_url
        if self.access_key_id and self.secret_access_key:
            kwargs["aws_access_key_id"] = self.access_key_id
            kwargs["aws_secret_access_key"] = self.secret_access_key.get_secret_value()
        return kwargs


class RedshiftConfig(FrozenModel):
    """Everything published to Redshift: external schemas and the views over them.

    With a `target` the declarations are applied to that cluster through the Data API; the local
    DuckDB warehouse executes the same declarations in every case (the embedded default).
    """

    target: RedshiftTarget | None = Field(
        None, description="Cluster or workgroup the Data API runs the DDL on; unset: local warehouse only."
    )
    aws: RedshiftAws = Field(default_factory=RedshiftAws)
    federated: tuple[FederatedSchema, ...] = Field((), description="Federated-query schemas.")
    spectrum: tuple[SpectrumSchema, ...] = Field((), description="Glue Data Catalog schemas.")
    views: tuple[UnionView, ...] = Field((), description="Cross-source views.")

    @property
    def declares_anything(self) -> bool:
        """Some schema or view is declared (else there is nothing to publish or check)."""
        return bool(self.federated or self.spectrum or self.views)

    @model_validator(mode="after")
    def _names_unique(self) -> RedshiftConfig:
        try:
            _check_unique(
                [s.name for s in self.federated] + [s.name for s in self.spectrum], "external schema"
            )
            _check_unique([f"{v.schema_}.{v.name}" for v in self.views], "view")
        except ValueError as e:
            # A model-level error has no location of its own; say which fields clash.
            raise ValueError(f"federated/spectrum/views: {e}") from None
        return self
