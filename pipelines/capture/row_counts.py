"""Row counts of a source's tables, cheap or exact, for the checks that compare them with the lake.

* `estimate_source_rows` asks the database's own statistics (MySQL `information_schema.TABLES`,
  PostgreSQL `pg_class`, DynamoDB DescribeTable): no table is read, so it can run every minute.
* `count_source_rows` counts exactly (`SELECT COUNT(*)`, a DynamoDB Scan with Select=COUNT): a
  read of every table, meant for a reconciliation that runs rarely, on the source's reader
  endpoint when one is configured (`reader_host`).
* `RowTolerance` says how far an estimate may be from the lake's own row count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connectors.dynamodb.config import DynamoDBSourceConfig
from connectors.mysql.config import MySQLSourceConfig
from connectors.postgres.config import PostgresSourceConfig
from pipelines.capture.sources import open_source

CountableConfig = MySQLSourceConfig | PostgresSourceConfig | DynamoDBSourceConfig

# Where each kind's estimate comes from, as shown next to it.
ESTIMATE_ORIGINS = {
    "mysql": "information_schema.TABLES.TABLE_ROWS",
    "postgres": "pg_class.reltuples scaled to the table's size now",
    "dynamodb": "DescribeTable ItemCount (refreshed about every 6 hours)",
}


@dataclass(frozen=True)
class RowTolerance:
    """How far a row estimate may be from the lake's count: `absolute` rows, or `relative` of the
    larger of the two, whichever allows more.

    InnoDB's TABLE_ROWS may be 40-50 % off (MySQL manual), reltuples is as old as the last
    (auto)analyze, and DynamoDB's ItemCount up to 6 hours old: the estimate check catches a lake
    that lost or duplicated a large part of a table, the exact reconciliation the rest.
    """

    relative: float = 0.5
    absolute: int = 1000

    def allowed(self, lake_rows: int, estimate: int) -> int:
        """The largest difference accepted between `lake_rows` and `estimate`."""
        return max(self.absolute, int(self.relative * max(lake_rows, estimate)))

    def accepts(self, lake_rows: int, estimate: int) -> bool:
        return abs(lake_rows - estimate) <= self.allowed(lake_rows, estimate)


def estimate_source_rows(config: CountableConfig, tables: Sequence[str]) -> dict[str, int | None]:
    """Each table's row estimate from the source's statistics (None: no estimate yet).

    Opens one short connection (or AWS client) of its own; reads no table.
    """
    if isinstance(config, MySQLSourceConfig):
        from connectors.mysql.connection import connect as mysql_connect
        from connectors.mysql.row_estimate import estimated_rows as mysql_estimates

        conn = mysql_connect(config)
        try:
            return mysql_estimates(conn, config.database, tables)
        finally:
            conn.close()
    if isinstance(config, PostgresSourceConfig):
        from connectors.postgres.connection import close_quietly
        from connectors.postgres.connection import connect as pg_connect
        from connectors.postgres.row_estimate import estimated_rows as pg_estimates

        pg = pg_connect(config)
        try:
            return pg_estimates(pg, config.schema_name, tables)
        finally:
            close_quietly(pg)
    from connectors.dynamodb.client import AwsClients
    from connectors.dynamodb.item_estimate import estimated_items

    clients = AwsClients(config)
    try:
        return estimated_items(clients, tables)
    finally:
        clients.close()


def reader_config(config: CountableConfig) -> CountableConfig:
    """`config` pointed at its reader endpoint, when it names one (DynamoDB has none)."""
    reader = getattr(config, "reader_host", None)
    return config.model_copy(update={"host": reader}) if reader else config


def count_source_rows(config: CountableConfig, tables: Sequence[str]) -> dict[str, int | None]:
    """Each table's exact row count now, on the reader endpoint if configured (None: no such table).

    Reads every table in full (a DynamoDB Scan consumes read capacity for the whole table).
    """
    source = open_source(reader_config(config))
    try:
        ids = {t.name: t for t in source.tables()}
        return {t: source.count_rows(ids[t]) if t in ids else None for t in tables}
    finally:
        source.close()
