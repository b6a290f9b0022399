"""Configuration of the MySQL / MariaDB binlog source."""

from __future__ import annotations

import zlib
from typing import Literal

from pydantic import Field

from connectors.config import DatabaseSourceConfig


class MySQLSourceConfig(DatabaseSourceConfig):
    """An Aurora MySQL / MySQL 8 / MariaDB source read from the binlog."""

    kind: Literal["mysql"] = "mysql"
    port: int = Field(3306, ge=1, le=65535, description="TCP port.")
    reader_host: str | None = Field(
        None,
        description=(
            "A read-only endpoint (an Aurora cluster reader endpoint) for the exact row-count "
            "reconciliation; unset, it runs on `host`. Capture always uses `host`."
        ),
    )
    allow_replica: bool = Field(
        False,
        description=(
            "Capture from a read-only server: a self-managed replica with log_replica_updates=ON. "
            "Never an Aurora replica (it has no binlog); off, a read-only `host` fails preflight."
        ),
    )
    server_id: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Replica server id for the binlog dump, unique per reader; 0 derives one from the source name.",
    )
    flavor: Literal["mariadb", "mysql", "auto"] = Field(
        "auto", description="Server flavour; 'auto' asks the server."
    )
    min_binlog_retention_hours: float = Field(
        24.0, ge=0, description="Pre-flight fails if the server keeps binlogs for less than this."
    )

    @property
    def replica_server_id(self) -> int:
        """The configured server id, or a stable one derived from the source name.

        A MySQL/MariaDB primary drops an existing binlog dump when another replica connects with
        the same server id, so two sources on one server must not share the default.
        """
        return self.server_id or 4_000_000 + zlib.crc32(self.name.encode()) % 1_000_000
