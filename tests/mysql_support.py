"""SQL helpers for tests that run on both MariaDB and the MySQL 8-family server."""

from __future__ import annotations

import secrets
from typing import Any

from connectors.mysql import MySQLSourceConfig

_DIGITS = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))


def seq_table(rows: int) -> str:
    """A derived table with one column ``seq`` holding 1..`rows` (MariaDB's ``seq_1_to_N``, portably).

    Built from cross-joined digits: MariaDB's SEQUENCE engine does not exist on MySQL, and a
    recursive CTE that deep needs a MySQL-only session setting.
    """
    width = len(str(max(rows - 1, 1)))
    tables = ", ".join(f"({_DIGITS}) AS d{i}" for i in range(width))
    value = " + ".join(f"d{i}.d * {10**i}" for i in range(width))
    return f"(SELECT {value} + 1 AS seq FROM {tables} HAVING seq <= {rows}) AS seqs"


def make_config(db: Any, **overrides: Any) -> MySQLSourceConfig:
    """A source config on the test database as the CDC user, in St. John's time, with its own
    replica server id (a primary drops an older binlog dump that connects with the same id)."""
    settings: dict[str, Any] = {
        "name": "shop",
        "host": db.host,
        "port": db.port,
        "user": db.cdc_user,
        "password": db.cdc_password,
        "database": db.name,
        "timezone": "America/St_Johns",
        "server_id": 100_000 + secrets.randbelow(2**30),
        "batch_max_seconds": 60.0,  # bounded runs cut at `until`, not by the clock
    }
    settings.update(overrides)
    return MySQLSourceConfig(**settings)
