"""Opens the configured source connectors."""

from __future__ import annotations

import importlib

from connectors.dynamodb.config import DynamoDBReplayConfig, DynamoDBSourceConfig
from connectors.mysql.config import MySQLSourceConfig
from connectors.postgres.config import PostgresSourceConfig
from connectors.source import Source

# kind -> (module, class); imported lazily because each connector pulls in its own driver.
_CONNECTORS = {
    "mysql": ("connectors.mysql", "MySQLSource"),
    "postgres": ("connectors.postgres", "PostgresSource"),
    "dynamodb": ("connectors.dynamodb.source", "DynamoDBSource"),
    "dynamodb_replay": ("connectors.dynamodb.replay_source", "DynamoDBReplaySource"),
}


def open_source(
    config: MySQLSourceConfig | PostgresSourceConfig | DynamoDBSourceConfig | DynamoDBReplayConfig,
) -> Source:
    """The connector for a source config."""
    module, cls = _CONNECTORS[config.kind]
    source: Source = getattr(importlib.import_module(module), cls)(config)
    return source
