"""Configuration of the lake: where files live and which Iceberg catalog tracks current state."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from connectors.config import FrozenModel, check_location
from connectors.lake.storage import S3Options


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
        "sqlite", description="Iceberg catalog for current-state tables: 'sqlite' (local file) or 'glue'."
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
    merge_every_seconds: float = Field(
        5.0, ge=0, description="In `stream` mode, how often current state is merged."
    )

    @field_validator("root")
    @classmethod
    def _root_scheme(cls, v: str) -> str:
        return check_location(v)
