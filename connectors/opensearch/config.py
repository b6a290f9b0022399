"""How to reach an OpenSearch cluster: the local node, any cluster (TLS, basic auth), or Amazon
OpenSearch Service (SigV4). The client code is the same for all three."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from connectors.config import FrozenModel, RetryConfig


class OpenSearchConfig(FrozenModel):
    """An OpenSearch endpoint and its authentication."""

    url: str = Field("http://127.0.0.1:19200", description="Cluster endpoint, http(s)://host:port.")
    auth: Literal["none", "basic", "sigv4"] = Field(
        "none",
        description="'basic' (user/password), 'sigv4' (Amazon OpenSearch Service, AWS credential chain).",
    )
    username: str | None = Field(None, description="Basic-auth user.")
    password: SecretStr | None = Field(None, description="Basic-auth password; use ${ENV_VAR} in the file.")
    region: str = Field("us-east-1", description="AWS region for SigV4.")
    service: Literal["es", "aoss"] = Field(
        "es", description="SigV4 service: 'es' (domains) or 'aoss' (serverless)."
    )
    verify_certs: bool = Field(True, description="Verify the server's TLS certificate.")
    ca_certs: str | None = Field(None, description="CA bundle for a private certificate authority.")
    timeout_seconds: float = Field(30.0, gt=0, description="Per-request timeout.")
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @model_validator(mode="after")
    def _auth_fields(self) -> OpenSearchConfig:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r} must start with http:// or https://")
        if self.auth == "basic" and (not self.username or self.password is None):
            raise ValueError("auth 'basic' needs username and password")
        return self
