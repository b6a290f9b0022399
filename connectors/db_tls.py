"""TLS of the source connections, from a source's `tls` settings, for PyMySQL and libpq alike.

Errors name the setting to look at (``tls.mode``, ``tls.ca_file``) and the host, never a secret.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from connectors.config import VERIFYING_TLS_MODES, DatabaseSourceConfig
from connectors.source import SourceError

# libpq's messages for a certificate it refuses (fe-secure-openssl.c) and OpenSSL's reasons.
_LIBPQ_TLS_FAILURES = (
    "certificate verify failed",
    "does not match host name",
    "server certificate for",
    "root certificate file",
    "could not read root certificate",
    "server does not support SSL",
)


def ca_file(config: DatabaseSourceConfig, what: str) -> str | None:
    """The configured CA bundle's path, checked to be a readable file (None: not a verify-* mode)."""
    path = config.tls.ca_file
    if config.tls.mode not in VERIFYING_TLS_MODES or path is None:
        return None
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise SourceError(f"{what}: tls.ca_file {path!r} does not exist or is not a readable file")
    return path


def pymysql_options(config: DatabaseSourceConfig, what: str) -> dict[str, Any]:
    """PyMySQL's TLS keyword arguments for one connection.

    'prefer' passes none (PyMySQL's own preferred TLS, as before). Every other encrypting mode
    passes an ``SSLContext``, which makes PyMySQL require TLS (it refuses a server without it,
    error 2026) and wrap the socket with ``server_hostname`` = the configured host.
    """
    mode = config.tls.mode
    if mode == "prefer":
        return {}
    if mode == "disable":
        return {"ssl_disabled": True}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS 1.2+, no system CA store loaded
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return {"ssl": context}
    path = ca_file(config, what)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise SourceError(f"{what}: tls.ca_file {path!r} is not a PEM CA bundle ({exc})") from None
    context.check_hostname = mode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED
    return {"ssl": context}


def libpq_options(config: DatabaseSourceConfig, what: str) -> dict[str, str]:
    """libpq's ``sslmode`` (and ``sslrootcert``) for one connection; 'prefer' is libpq's default."""
    options: dict[str, str] = {"sslmode": config.tls.mode}
    path = ca_file(config, what)
    if path is not None:
        options["sslrootcert"] = path
    return options


def is_certificate_error(exc: BaseException) -> bool:
    """Whether a PyMySQL connect error is TLS refusing the server (retrying cannot help)."""
    original = getattr(exc, "original_exception", None)
    return isinstance(original, ssl.SSLCertVerificationError)


def is_libpq_tls_error(message: str) -> bool:
    """Whether a libpq connect message is about TLS (certificate, host name, CA file)."""
    return any(marker in message for marker in _LIBPQ_TLS_FAILURES)


def tls_failure(config: DatabaseSourceConfig, what: str, detail: str) -> SourceError:
    """The error for a connection that TLS refused, naming the settings and the host."""
    ca = f", tls.ca_file = {config.tls.ca_file!r}" if config.tls.ca_file else ""
    hint = ""
    if config.tls.mode == "verify-full":
        hint = f"; its certificate must chain to a CA in tls.ca_file and name the host {config.host!r}"
    elif config.tls.mode == "verify-ca":
        hint = "; its certificate must chain to a CA in tls.ca_file"
    return SourceError(
        f"{what}: TLS refused the server at {config.host}:{config.port} (tls.mode = "
        f"'{config.tls.mode}'{ca}){hint}: {detail}"
    )
