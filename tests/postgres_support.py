"""Helpers for tests of the PostgreSQL source (the fixtures are in tests/connectors/conftest.py)."""

from __future__ import annotations

from typing import Any

from connectors.postgres import PostgresSourceConfig

ZONE = "America/St_Johns"  # UTC-03:30 in winter, UTC-02:30 in summer; DST gap and overlap at 02:00
ACK_WAIT_SECONDS = 30.0


def make_config(db: Any, **overrides: Any) -> PostgresSourceConfig:
    settings: dict[str, Any] = {
        "name": f"pg_{db.name}",  # slot names are cluster-wide: unique per test database
        "host": db.host,
        "port": db.port,
        "user": db.cdc_user,
        "password": db.cdc_password,
        "database": db.name,
        "timezone": ZONE,
        # Bounded runs flush at `until`; a long timer keeps batch boundaries deterministic.
        "batch_max_seconds": 30,
    }
    settings.update(overrides)
    return PostgresSourceConfig(**settings)
