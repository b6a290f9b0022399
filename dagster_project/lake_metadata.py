"""The metadata Dagster shows for the lake's tables, in Dagster's standard keys where one exists.

Used by the asset bodies and by the sensor that reports commits made outside Dagster
(`lake_events`), so an asset's history reads the same whoever committed. Standard keys:
`dagster/row_count`, `dagster/column_schema` (from the table's Arrow schema) and `dagster/uri`
(where the table lives in the lake); the rest are named for what they measure.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.dynamodb.offset import StreamPositions
from connectors.lake.current import MergeResult
from connectors.lake.lake import Lake
from connectors.lake.writer import changelog_prefix
from connectors.offsets import OffsetError, parse_offset
from pipelines.report import short_position
from pipelines.runner import SyncReport

# Asset metadata key of the lake commit an event covers: the sensor compares it with the commit log.
COMMIT_SEQ = "lake_commit_seq"


def lake_table_name(schema: str, table: str) -> str:
    return f"{schema}__{table}".lower()


def lake_kinds(lake_root: str) -> set[str]:
    """Kinds that name where the lake is: `s3` for an S3 prefix, nothing extra for a local directory."""
    return {"s3"} if lake_root.startswith("s3://") else set()


def table_schema(schema: pa.Schema | None) -> dg.TableSchema | None:
    if schema is None:
        return None
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


def describe_position(text: str | None, table: str | None = None) -> str:
    """A position as a short string (`short_position`): DynamoDB's per-shard map of `table` as
    "N shards: X open, Y finished"."""
    return short_position(text, table) if text else "(none)"


def shard_table(text: str | None, table: str) -> dg.MetadataValue | None:
    """The table's shards as a Markdown table: last sequence number committed and state."""
    if not text:
        return None
    try:
        positions = parse_offset(text)
    except OffsetError:
        return None
    if not isinstance(positions, StreamPositions):
        return None
    rows = [
        f"| {shard} | {p.sequence if p.sequence is not None else 'nothing yet'} | "
        f"{'finished' if p.finished else 'open'} |"
        for shard, p in sorted(positions.shards(table).items())
    ]
    return dg.MetadataValue.md(
        "\n".join(["| shard | last sequence number | state |", "|---|---|---|", *rows])
    )


def changelog_metadata(
    lake: Lake,
    source: str,
    lake_table: str,
    report: SyncReport,
    commit_seq: int,
    *,
    stream_table: str | None = None,
) -> dict[str, Any]:
    """One table's change log after `report`'s commits (a Dagster run's, or outside commits').

    `stream_table` names a DynamoDB table as its positions do (per shard), for the shard metadata.
    """
    prefix = changelog_prefix(source, lake_table)
    files = sorted(e.path for e in lake.storage.list_files(prefix))
    # Row count and schema from the Parquet footers (no data read): every file, the newest schema.
    rows = sum(
        pq.read_metadata(lake.storage.full_path(f), filesystem=lake.storage.fs).num_rows for f in files
    )
    schema = lake.storage.read_parquet_schema(files[-1]) if files else None
    meta: dict[str, Any] = {
        "dagster/row_count": rows,
        "dagster/uri": lake.storage.uri(prefix),
        "rows_committed": report.rows_by_table.get(lake_table, 0),
        "commits": report.commits,
        "source_rows_committed": report.rows,
        "quarantined_rows_of_source": report.quarantined_rows,
        "position_before": describe_position(report.offset_before, stream_table),
        "position_after": describe_position(report.offset_after, stream_table),
        "snapshot": lake_table in report.snapshot_tables,
        COMMIT_SEQ: commit_seq,
    }
    if (column_schema := table_schema(schema)) is not None:
        meta["dagster/column_schema"] = column_schema
    if report.high_water_mark:
        meta["run_bounded_at_position"] = describe_position(report.high_water_mark, stream_table)
    if report.lag_seconds is not None:
        # How far behind the source the last commit's data was when it was committed; the lag
        # checks compare the lake with the source now, against their own allowance.
        meta["source_lag_seconds_at_commit"] = round(report.lag_seconds, 1)
    if report.seconds:
        meta["run_seconds"] = round(report.seconds, 3)
    if stream_table is not None:
        meta["open_shards"] = _open_shards(report.offset_after, stream_table)
        if (shards := shard_table(report.offset_after, stream_table)) is not None:
            meta["shard_positions"] = shards
    progress = report.snapshot_progress.tables.get(lake_table)
    if progress is not None:
        meta |= {f"snapshot_{name}": value for name, value in progress.items() if value is not None}
    return meta


def _open_shards(text: str | None, table: str) -> int:
    if not text:
        return 0
    positions = parse_offset(text)
    if not isinstance(positions, StreamPositions):
        return 0
    return sum(not p.finished for p in positions.shards(table).values())


def current_metadata(lake: Lake, source: str, lake_table: str, result: MergeResult | None) -> dict[str, Any]:
    """One table's current state: rows and schema from its Iceberg metadata, and what the merge did."""
    current = lake.current(source)
    table = current.load(lake_table)
    meta: dict[str, Any] = {
        "dagster/row_count": current.live_rows(table),
        "dagster/table_name": current.identifier(lake_table),
        "changed": result is not None,
        COMMIT_SEQ: current.applied_seq(table),
    }
    if table is not None:
        meta["dagster/uri"] = table.location()
        if (column_schema := table_schema(table.schema().as_arrow())) is not None:
            meta["dagster/column_schema"] = column_schema
    if result is not None:
        meta |= {
            "upserts": result.upserts,
            "deletes": result.deletes,
            "replaced_by_snapshot": result.replaced,
        }
    return meta
