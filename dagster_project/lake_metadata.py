"""The metadata Dagster shows for the lake's tables, in Dagster's standard keys where one exists.

Used by the asset bodies and by the sensor that reports commits made outside Dagster
(`lake_events`), so an asset's history reads the same whoever committed. Standard keys:
`dagster/row_count`, `dagster/column_schema` (from the table's Arrow schema) and `dagster/uri`
(where the table lives in the lake); the rest are named for what they measure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.table import Table as IcebergTable

from connectors.dynamodb.offset import StreamPositions
from connectors.lake.current import CurrentState, MergeResult
from connectors.lake.lake import Lake
from connectors.lake.writer import changelog_prefix
from connectors.offsets import OffsetError, parse_offset
from connectors.usage import Prices, Usage, estimate
from pipelines.capture.runner import SyncReport
from pipelines.report import short_position

# Asset metadata key of the lake commit an event covers: the sensor compares it with the commit log.
COMMIT_SEQ = "lake_commit_seq"

# Rows per committed change-log file (by URI), from its Parquet footer. Committed files never
# change, so a long-running Dagster process reads each footer once; per table (by its URI) the
# newest file's schema is kept too, so a table without new files reads no footer at all.
_footer_rows: dict[str, int] = {}
_newest_schema: dict[str, tuple[str, pa.Schema]] = {}


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


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> dg.MetadataValue:
    """A Markdown table, one cell per value (shown as `str` shows it)."""
    lines = [f"| {' | '.join(headers)} |", "|" + "---|" * len(headers)]
    lines += [f"| {' | '.join(str(cell) for cell in row)} |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def shard_table(positions: StreamPositions, table: str) -> dg.MetadataValue:
    """The table's shards as a Markdown table: last sequence number committed and state."""
    return md_table(
        ["shard", "last sequence number", "state"],
        (
            (
                shard,
                p.sequence if p.sequence is not None else "nothing yet",
                "finished" if p.finished else "open",
            )
            for shard, p in sorted(positions.shards(table).items())
        ),
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
    uri = lake.storage.uri(changelog_prefix(source, lake_table))
    rows, schema = _changelog_footers(lake, uri, lake.changelog_files(source, lake_table))
    meta: dict[str, Any] = {
        "dagster/row_count": rows,
        "dagster/uri": uri,
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
        positions = _stream_positions(report.offset_after)  # parsed once for both keys
        shards = positions.shards(stream_table) if positions is not None else {}
        meta["open_shards"] = sum(not p.finished for p in shards.values())
        if positions is not None:
            meta["shard_positions"] = shard_table(positions, stream_table)
    progress = report.snapshot_progress.tables.get(lake_table)
    if progress is not None:
        meta |= {f"snapshot_{name}": value for name, value in progress.items() if value is not None}
    return meta


def _changelog_footers(lake: Lake, table_uri: str, files: list[str]) -> tuple[int, pa.Schema | None]:
    """Rows of all `files` and the newest one's schema, from Parquet footers (no data read): only
    the footers of files not seen before are read."""
    rows = 0
    for path in files:
        uri = lake.storage.uri(path)
        if uri not in _footer_rows:
            with pq.ParquetFile(lake.storage.full_path(path), filesystem=lake.storage.fs) as parquet:
                _footer_rows[uri] = parquet.metadata.num_rows
                _newest_schema[table_uri] = (path, parquet.schema_arrow)
        rows += _footer_rows[uri]
    if not files:
        return 0, None
    newest, schema = _newest_schema.get(table_uri, ("", None))
    if newest != files[-1]:  # only if a new file sorted before an old one: read the newest again
        schema = lake.storage.read_parquet_schema(files[-1])
        _newest_schema[table_uri] = (files[-1], schema)
    return rows, schema


def _stream_positions(text: str | None) -> StreamPositions | None:
    """`text` parsed, if it is a DynamoDB per-shard position (None for any other or none)."""
    if not text:
        return None
    try:
        positions = parse_offset(text)
    except OffsetError:
        return None
    return positions if isinstance(positions, StreamPositions) else None


def current_metadata(
    current: CurrentState,
    lake_table: str,
    table: IcebergTable | None,
    result: MergeResult | None,
    *,
    changed: bool,
) -> dict[str, Any]:
    """One table's current state (`table`, as loaded by the caller): rows and schema from its
    Iceberg metadata, and what the merge did."""
    meta: dict[str, Any] = {
        "dagster/row_count": current.live_rows(table),
        "dagster/table_name": current.identifier(lake_table),
        "changed": changed,
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


def usage_metadata(usage: Usage | None, table: str, prices: Prices) -> dict[str, Any]:
    """What a run's requests and bytes on one table were, and their estimated cost (`[costs]`).

    `table` is "source.lake_table"; only counts and service names, never a key or a value.
    """
    if usage is None:
        return {}
    mine = usage.of_table(table)
    s3 = mine.only(service="s3")
    return {
        "s3_requests": s3.total(),
        "s3_bytes_sent": s3.total("bytes_sent"),
        "s3_bytes_received": s3.total("bytes_received"),
        "glue_requests": mine.only(service="glue").total(),
        "estimated_cost_usd": dg.MetadataValue.float(round(sum(estimate(mine, prices).values()), 6)),
    }
