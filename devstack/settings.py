"""Where the local service stack lives and which ports and credentials it uses.

Nothing here touches the environment at import time: call :func:`load_settings` to read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

__all__ = ["StackSettings", "load_settings", "find_repo_dir"]

DEFAULT_MARIADB_PORT = 13306
DEFAULT_MYSQL8_PORT = 13307
DEFAULT_POSTGRES_PORT = 15433
DEFAULT_MOTO_PORT = 15000
DEFAULT_OPENSEARCH_PORT = 19200


class SettingsError(ValueError):
    """Raised when an environment override for the stack is malformed."""


def find_repo_dir(start: Path | None = None) -> Path:
    """Return the nearest folder at or above ``start`` (default: this package) holding pyproject.toml."""
    here = (start or Path(__file__)).resolve()
    for candidate in [here, *here.parents]:
        if (candidate / "pyproject.toml").is_file():
            return candidate
    # Installed outside a checkout (not the supported way): fall back to the working directory.
    return Path.cwd()


@dataclass(frozen=True)
class StackSettings:
    """Fixed facts of the local stack: directory, host, ports and the shared local credentials.

    The passwords are local-only development secrets, still kept as ``SecretStr`` so they never
    appear in a repr or a log line by accident.
    """

    repo_dir: Path
    stack_dir: Path
    host: str = "127.0.0.1"
    mariadb_port: int = DEFAULT_MARIADB_PORT
    mysql8_port: int = DEFAULT_MYSQL8_PORT
    postgres_port: int = DEFAULT_POSTGRES_PORT
    moto_port: int = DEFAULT_MOTO_PORT
    opensearch_port: int = DEFAULT_OPENSEARCH_PORT
    # Debian mirror for the MySQL 8 family server's packages; None: the system's apt sources say.
    mysql8_mirror: str | None = None
    admin_user: str = "lakehouse_admin"
    admin_password: SecretStr = field(default=SecretStr("admin-local-pw"), repr=False)
    cdc_user: str = "cdc"
    cdc_password: SecretStr = field(default=SecretStr("cdc-local-pw"), repr=False)
    aws_access_key_id: str = "testing"
    aws_secret_access_key: SecretStr = field(default=SecretStr("testing"), repr=False)
    aws_region: str = "us-east-1"

    @property
    def moto_endpoint(self) -> str:
        """Base URL of the moto server (S3, DynamoDB, Glue, ... all on one port)."""
        return f"http://{self.host}:{self.moto_port}"

    @property
    def opensearch_endpoint(self) -> str:
        """Base URL of the local single-node OpenSearch (plain HTTP, no auth)."""
        return f"http://{self.host}:{self.opensearch_port}"

    def service_dir(self, name: str) -> Path:
        """Directory holding one service's config, data, logs and pid file."""
        return self.stack_dir / name


def _port_from_env(var: str, default: int) -> int:
    raw = os.environ.get(var)
    if raw is None or raw.strip() == "":
        return default
    try:
        port = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{var}={raw!r} is not a port number") from exc
    if not 1 <= port <= 65535:
        raise SettingsError(f"{var}={port} is outside 1..65535")
    return port


def load_settings() -> StackSettings:
    """Build :class:`StackSettings` from the environment.

    Reads LAKEHOUSE_STACK_DIR, LAKEHOUSE_*_PORT and LAKEHOUSE_MYSQL8_MIRROR (a Debian mirror URL).
    """
    repo = find_repo_dir()
    raw_dir = os.environ.get("LAKEHOUSE_STACK_DIR")
    stack_dir = Path(raw_dir).expanduser().resolve() if raw_dir else repo / ".stack"
    return StackSettings(
        repo_dir=repo,
        stack_dir=stack_dir,
        mariadb_port=_port_from_env("LAKEHOUSE_MARIADB_PORT", DEFAULT_MARIADB_PORT),
        mysql8_port=_port_from_env("LAKEHOUSE_MYSQL8_PORT", DEFAULT_MYSQL8_PORT),
        postgres_port=_port_from_env("LAKEHOUSE_POSTGRES_PORT", DEFAULT_POSTGRES_PORT),
        moto_port=_port_from_env("LAKEHOUSE_MOTO_PORT", DEFAULT_MOTO_PORT),
        opensearch_port=_port_from_env("LAKEHOUSE_OPENSEARCH_PORT", DEFAULT_OPENSEARCH_PORT),
        mysql8_mirror=os.environ.get("LAKEHOUSE_MYSQL8_MIRROR", "").strip() or None,
    )
