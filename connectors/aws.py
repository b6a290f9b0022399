"""AWS sessions and clients, built one way for every connector.

Credentials come from the default chain (environment, shared config and SSO, web identity / IRSA,
container and instance roles) unless a profile or explicit keys are configured; a role to assume
is layered on top of whichever was found. Every boto3 client gets the same botocore `Config`:
'standard' (or 'adaptive') retries with a bounded number of attempts and connect / read timeouts,
never botocore's 'legacy' mode, which retries fewer errors and with a different backoff.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, model_validator

from connectors.config import FrozenModel

if TYPE_CHECKING:  # boto3 takes a quarter of a second to import: only when a client is made
    import boto3
    import botocore.config

# botocore signs for this region when a call must name one and an endpoint override (moto, a VPC
# endpoint) decides where the request goes.
ENDPOINT_SIGNING_REGION = "us-east-1"


class AwsRetries(FrozenModel):
    """How every boto3 client retries and times out (one botocore `Config`)."""

    mode: Literal["standard", "adaptive"] = Field(
        "standard",
        description=(
            "botocore retry mode: 'standard' (exponential backoff with jitter, throttling and 5xx "
            "retried) or 'adaptive' (standard plus client-side rate limiting under throttling)."
        ),
    )
    max_attempts: int = Field(
        5, ge=1, le=100, description="Attempts per call, the first included, before the error is raised."
    )
    connect_timeout_seconds: float = Field(5.0, gt=0, description="TCP connect timeout per attempt.")
    read_timeout_seconds: float = Field(60.0, gt=0, description="Socket read timeout per attempt.")


def client_config(
    retries: AwsRetries | None = None, *, max_pool_connections: int = 10
) -> botocore.config.Config:
    """The botocore `Config` of every client we create: bounded retries, timeouts, a pool size."""
    import botocore.config

    r = retries or AwsRetries()
    return botocore.config.Config(
        # total_max_attempts counts the first try, so max_attempts=1 means no retry at all.
        retries={"mode": r.mode, "total_max_attempts": r.max_attempts},
        connect_timeout=r.connect_timeout_seconds,
        read_timeout=r.read_timeout_seconds,
        max_pool_connections=max_pool_connections,
    )


class AwsIdentity(FrozenModel):
    """Who we are on AWS: the default credential chain unless told otherwise.

    Nothing here is required: on ECS, EKS (IRSA), EC2 or with SSO the chain finds credentials by
    itself. Explicit keys are for places without one; `session_token` goes with temporary keys.
    """

    profile: str | None = Field(
        None,
        description="Named profile of the shared AWS config (SSO profiles included); default: the chain.",
    )
    access_key_id: str | None = Field(None, description="Access key; default: the AWS credential chain.")
    secret_access_key: SecretStr | None = Field(None, description="Secret key; use ${ENV_VAR} in the file.")
    session_token: SecretStr | None = Field(
        None, description="Session token of temporary keys (STS, SSO); use ${ENV_VAR} in the file."
    )
    role_arn: str | None = Field(
        None,
        description="Role to assume (STS AssumeRole, refreshed before expiry) with the credentials above.",
    )
    role_session_name: str = Field(
        "lakehouse-cdc",
        min_length=2,
        max_length=64,
        pattern=r"^[\w+=,.@-]+$",
        description="RoleSessionName of the assumed role (shows in CloudTrail).",
    )

    @model_validator(mode="after")
    def _consistent_credentials(self) -> AwsIdentity:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither (credential chain)")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token goes with access_key_id and secret_access_key")
        if self.profile is not None and self.access_key_id is not None:
            raise ValueError("set either profile or explicit keys, not both")
        return self


def aws_session(identity: AwsIdentity, region: str | None = None) -> boto3.Session:
    """A boto3 session for `identity`; with `role_arn`, credentials of that role, renewed before expiry.

    The STS endpoint is botocore's usual one (regional when `region` is set); `AWS_ENDPOINT_URL_STS`
    overrides it as for any botocore client (the tests point it at moto).
    """
    import boto3
    import botocore.session
    from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

    base = boto3.Session(
        profile_name=identity.profile,
        aws_access_key_id=identity.access_key_id,
        aws_secret_access_key=identity.secret_access_key.get_secret_value()
        if identity.secret_access_key
        else None,
        aws_session_token=identity.session_token.get_secret_value() if identity.session_token else None,
        region_name=region,
    )
    if identity.role_arn is None:
        return base
    source = base.get_credentials()
    if source is None:
        raise AwsConfigError(
            f"no AWS credentials to assume {identity.role_arn} with (looked in the environment, "
            "the shared config and credentials files, SSO, container and instance roles)"
        )
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=functools.partial(base.client, config=client_config()),
        source_credentials=source,
        role_arn=identity.role_arn,
        extra_args={"RoleSessionName": identity.role_session_name},
    )
    core = botocore.session.Session()
    # botocore's own assume-role provider works this way: credentials that call the fetcher on
    # first use and again before they expire (15 minutes ahead), so a long-running stream never
    # signs with expired keys. The session offers no public setter for a ready credential object.
    core._credentials = DeferredRefreshableCredentials(  # noqa: SLF001
        refresh_using=fetcher.fetch_credentials, method="assume-role"
    )
    return boto3.Session(botocore_session=core, region_name=region or base.region_name)


def make_client(
    session: boto3.Session,
    service: str,
    *,
    region: str | None,
    endpoint_url: str | None = None,
    retries: AwsRetries | None = None,
    max_pool_connections: int = 10,
) -> Any:
    """A boto3 client of `service` with the one botocore `Config`."""
    kwargs: dict[str, Any] = {
        "config": client_config(retries, max_pool_connections=max_pool_connections),
        "region_name": region or session.region_name or (ENDPOINT_SIGNING_REGION if endpoint_url else None),
    }
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    from connectors.usage import instrument

    return instrument(session.client(service, **kwargs))


# The S3 calls that create an object; a bucket policy requiring SSE-KMS checks each of them.
_S3_WRITES = ("PutObject", "CopyObject", "CreateMultipartUpload")


def encrypt_writes(s3_client: Any, kms_key_id: str) -> None:
    """Make every object `s3_client` writes SSE-KMS encrypted with `kms_key_id` (unless the call
    names its own encryption), for code that calls put_object itself."""

    def add_encryption(params: dict[str, Any], **_: Any) -> None:
        params.setdefault("ServerSideEncryption", "aws:kms")
        params.setdefault("SSEKMSKeyId", kms_key_id)

    for operation in _S3_WRITES:
        s3_client.meta.events.register(f"before-parameter-build.s3.{operation}", add_encryption)


class AwsConfigError(Exception):
    """AWS settings are missing or inconsistent (no region, no credentials)."""
