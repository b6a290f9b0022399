"""Opens the configured source connectors."""

from __future__ import annotations

import importlib

from connectors.dynamodb.config import DynamoDBReplayConfig, DynamoDBSourceConfig
from connectors.lake.lake import Lake
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


def adopt_lake_schemas(lake: Lake, source: Source) -> None:
    """Sources that infer column types from the data (DynamoDB) take the lake's types as given,
    so a restarted or re-synced pipeline decodes exactly as the committed files were written."""
    adopt = getattr(source, "adopt_lake_schemas", None)
    if adopt is not None:
        adopt(lake.changelog_schemas(source.name))
