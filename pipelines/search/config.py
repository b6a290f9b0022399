"""The `[search]` section of the configuration: the OpenSearch cluster, aliases, and synonyms."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from connectors.config import FrozenModel
from connectors.lake.storage import S3Options
from connectors.opensearch.config import OpenSearchConfig


class SynonymsConfig(FrozenModel):
    """Where the synonyms come from and where each dictionary version goes."""

    source: str = Field("aurora_mysql", description="The CDC source that captures the synonyms table.")
    lake_table: str = Field("health__synonymstable", description="Its table in the lake (<schema>__<table>).")
    package: str = Field(
        "lakehouse-synonyms",
        pattern=r"^[a-z][a-z0-9-]{2,27}$",
        description="Package name: the file name under analyzers/ locally, the custom package on AWS.",
    )
    target: Literal["local", "aws"] = Field(
        "local",
        description="'local': the stack's node (file + analyzer refresh); 'aws': OpenSearch Service packages.",
    )
    local_config_dir: str = Field(
        ".stack/opensearch/config", description="The local node's config dir (dictionaries go to analyzers/)."
    )
    bucket: str = Field(
        "lakehouse-synonyms", description="S3 bucket (versioned) that keeps every dictionary version."
    )
    key: str = Field("synonyms/lakehouse-synonyms.txt", description="Object key of the dictionary.")
    s3: S3Options = Field(
        default_factory=S3Options, description="S3 endpoint and credentials (moto locally)."
    )
    domains: tuple[str, ...] = Field(
        (), description="Amazon OpenSearch Service domains to associate (target 'aws')."
    )
    aws_region: str = Field("us-east-1", description="Region of the OpenSearch Service control plane.")
    aws_endpoint_url: str | None = Field(None, description="Control-plane endpoint override (tests).")
    timeout_seconds: float = Field(600.0, gt=0, description="Longest wait for a package copy or association.")
    poll_seconds: float = Field(5.0, gt=0, description="Pause between package status checks.")

    @model_validator(mode="after")
    def _aws_needs_domains(self) -> SynonymsConfig:
        if self.target == "aws" and not self.domains:
            raise ValueError("target 'aws' needs the domains to associate the package with")
        return self


class SearchConfig(FrozenModel):
    """Search indexing: the cluster, the people alias, the lake inputs of the 360° documents, synonyms."""

    opensearch: OpenSearchConfig = Field(default_factory=OpenSearchConfig)
    people_alias: str = Field(
        "people", pattern=r"^[a-z][a-z0-9_-]{0,60}$", description="Alias of the 360° index."
    )
    mysql_source: str = Field("aurora_mysql", description="Source of patients, plans, claims, preferences.")
    mysql_schema: str = Field("health", description="Its database.")
    devices_source: str | None = Field(
        "devices", description="DynamoDB source of device events (None: none)."
    )
    synonyms: SynonymsConfig = Field(default_factory=SynonymsConfig)

    @field_validator("devices_source")
    @classmethod
    def _empty_is_none(cls, v: str | None) -> str | None:
        return v or None  # TOML has no null
