"""Builds the opensearch-py client for an `OpenSearchConfig` (the only module that does)."""

from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch, Urllib3AWSV4SignerAuth

from connectors.opensearch.config import OpenSearchConfig


def open_client(config: OpenSearchConfig) -> OpenSearch:
    """A client for the configured cluster; credentials stay inside the client's auth objects."""
    kwargs: dict[str, Any] = {
        "hosts": [config.url],
        "timeout": config.timeout_seconds,
        "verify_certs": config.verify_certs,
        "ssl_show_warn": config.verify_certs,
        # Retries of whole requests are ours (bulk.py), with backoff; the client's own do not back off.
        "max_retries": 0,
        "retry_on_timeout": False,
        "http_compress": config.url.startswith("https://"),
    }
    if config.ca_certs:
        kwargs["ca_certs"] = config.ca_certs
    if config.auth == "basic":
        assert config.username and config.password is not None
        kwargs["http_auth"] = (config.username, config.password.get_secret_value())
    elif config.auth == "sigv4":
        import boto3

        credentials = boto3.Session().get_credentials()
        if credentials is None:
            raise ValueError("auth 'sigv4' found no AWS credentials (environment, profile or instance role)")
        kwargs["http_auth"] = Urllib3AWSV4SignerAuth(credentials, config.region, config.service)
    return OpenSearch(**kwargs)
