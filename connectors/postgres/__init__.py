"""PostgreSQL / Aurora PostgreSQL source: logical replication with pgoutput into columnar batches."""

from connectors.postgres.config import PostgresSourceConfig
from connectors.postgres.offset import Lsn
from connectors.postgres.source import PostgresSource

__all__ = ["Lsn", "PostgresSource", "PostgresSourceConfig"]
