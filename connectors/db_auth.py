"""The secret a new source connection presents: the configured password, or a fresh IAM token.

With ``auth = "iam"`` every connection (SQL, the binlog reader's stream and control connections and
their reconnects, PostgreSQL replication, the snapshot readers) asks `connection_secret` again, and
each call signs a new token: RDS checks a token only when a connection is opened and a token is
valid for 15 minutes, so a token is never kept (a reconnect an hour later would fail with it).
botocore signs tokens locally (SigV4 presigning), with no call to AWS.

Tokens are secrets like the password: never logged, never in an error or in metadata; `scrub`
removes them from driver messages.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Iterable
from typing import Any

from connectors.config import DatabaseSourceConfig
from connectors.source import SourceError


def connection_secret(config: DatabaseSourceConfig) -> str:
    """The password for one new connection: an IAM token signed now, or the configured password."""
    if config.auth != "iam":
        return config.password.get_secret_value()
    assert config.region is not None  # the config refuses iam without a region
    return iam_token(config.host, config.port, config.user, config.region)


def iam_token(host: str, port: int, user: str, region: str) -> str:
    """A new RDS IAM authentication token for `user` at host:port (valid for 15 minutes).

    The default AWS credential chain signs it (environment, shared config and SSO, web identity /
    IRSA, container and instance roles). The client is kept per region (making one took ~170 ms
    here); the token never is, and the chain's temporary credentials refresh themselves.
    """
    import botocore.exceptions

    try:
        client = _rds_client(region)
        token: str = client.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user, Region=region)
    except botocore.exceptions.NoCredentialsError:
        raise SourceError(
            f"auth = 'iam' for {user!r} at {host}:{port}: no AWS credentials to sign the token with "
            "(looked in the environment, the shared config, SSO, web identity, container and instance roles)"
        ) from None
    return token


@functools.lru_cache(maxsize=16)
def _rds_client(region: str) -> Any:
    from connectors.aws import AwsIdentity, aws_session, client_config

    return aws_session(AwsIdentity(), region).client("rds", config=client_config())


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` (a driver message) without any of `secrets`, as they are or URL-quoted."""
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret)}:
            text = text.replace(form, "***")
    return text
