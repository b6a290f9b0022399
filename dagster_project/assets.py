"""Per source: one asset per table's change log and one per table's current state.

A source's change logs are one multi-asset because one binlog / replication stream feeds all of
its tables in a single commit; the current-state merge is a second multi-asset downstream.
Each body is one call into `pipelines` plus the metadata it reports.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from connectors.dynamodb.offset import StreamPositions
from connectors.lake.current import MergeResult
from connectors.offsets import parse_offset
from pipelines.runner import SyncReport, sync_source

RECORDS_CHECK = "records_read_match_committed"


def table_key(source: str, table: str, kind: str) -> dg.AssetKey:
    return dg.AssetKey([source, table, kind])


def lake_table_name(schema: str, table: str) -> str:
    return f"{schema}__{table}".lower()


def build_source_assets(
    source: str, schema: str, tables: list[str], kind: str = "mysql"
) -> list[dg.AssetsDefinition]:
    """The change-log and current-state assets of one source."""
    resource_key = f"source_{source}"
    streams = kind == "dynamodb"
    check_specs = (
        [dg.AssetCheckSpec(RECORDS_CHECK, asset=table_key(source, t, "changelog")) for t in tables]
        if streams
        else []
    )
    changelog_specs = [
        dg.AssetSpec(
            table_key(source, t, "changelog"),
            group_name=source,
            kinds={"parquet", "s3", "dynamodb"} if streams else {"parquet", "s3"},
            description=f"Append-only change log of {schema}.{t} (Op, _commit_ts, _position, _txid + columns).",
        )
        for t in tables
    ]
    current_specs = [
        dg.AssetSpec(
            table_key(source, t, "current"),
            group_name=source,
            kinds={"iceberg"},
            deps=[table_key(source, t, "changelog")],
            description=f"Current state of {schema}.{t}: latest version per key, deletes applied.",
        )
        for t in tables
    ]

    @dg.multi_asset(
        name=f"{source}_changelog",
        specs=changelog_specs,
        check_specs=check_specs,
        required_resource_keys={"lake", resource_key},
    )
    def changelog(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        src = getattr(context.resources, resource_key).open()
        try:
            report = sync_source(context.resources.lake.lake(), src, merge=False)
        finally:
            src.close()
        context.log.info(
            f"{source}: {report.commits} commits, {report.rows} rows, now at {report.offset_after}"
        )
        for t in tables:
            metadata = _sync_metadata(report, lake_table_name(schema, t))
            if streams:
                metadata |= _shard_metadata(report, t)
            yield dg.MaterializeResult(asset_key=table_key(source, t, "changelog"), metadata=metadata)
        if streams:
            yield from _records_checks(src, report, source, schema, tables)

    @dg.multi_asset(name=f"{source}_current", specs=current_specs, required_resource_keys={"lake"})
    def current(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        results = {r.table: r for r in context.resources.lake.lake().current(source).merge()}
        for t in tables:
            yield dg.MaterializeResult(
                asset_key=table_key(source, t, "current"),
                metadata=_merge_metadata(results.get(lake_table_name(schema, t))),
            )

    return [changelog, current]


def _sync_metadata(report: SyncReport, lake_table: str) -> dict[str, Any]:
    return {
        "rows": report.rows_by_table.get(lake_table, 0),
        "source_rows_total": report.rows,
        "commits": report.commits,
        "quarantined_rows": report.quarantined_rows,
        "position_before": report.offset_before or "",
        "position_after": report.offset_after or "",
        "high_water_mark": report.high_water_mark or "",
        "lag_seconds": report.lag_seconds if report.lag_seconds is not None else 0.0,
        "snapshot": lake_table in report.snapshot_tables,
        "seconds": round(report.seconds, 3),
        **_snapshot_metadata(report, lake_table),
    }


def _snapshot_metadata(report: SyncReport, lake_table: str) -> dict[str, Any]:
    """A chunked snapshot's progress in this run: chunks and rows committed, rows/s, ETA."""
    progress = report.snapshot_progress.tables.get(lake_table)
    if progress is None:
        return {}
    return {f"snapshot_{name}": value for name, value in progress.items() if value is not None}


def _shard_metadata(report: SyncReport, table: str) -> dict[str, Any]:
    """The table's shard positions in the lake: shard id -> last committed sequence number."""
    if not report.offset_after:
        return {}
    positions = parse_offset(report.offset_after)
    if not isinstance(positions, StreamPositions):
        return {}
    shards = {shard: str(p) or "(nothing yet)" for shard, p in positions.shards(table).items()}
    return {
        "shard_positions": dg.MetadataValue.json(shards),
        "open_shards": sum(not p.finished for p in positions.shards(table).values()),
    }


def _records_checks(
    src: Any, report: SyncReport, source: str, schema: str, tables: list[str]
) -> Iterator[dg.AssetCheckResult]:
    """Every stream record read in this run is committed once (or was already in a snapshot)."""
    seen = src.reader_stats.records_seen
    for t in tables:
        read = sum(seen.get(t, {}).values())
        skipped = src.skipped_by_floor.get(t, 0)
        committed = report.rows_by_table.get(lake_table_name(schema, t), 0)
        snapshot = lake_table_name(schema, t) in report.snapshot_tables
        yield dg.AssetCheckResult(
            asset_key=table_key(source, t, "changelog"),
            check_name=RECORDS_CHECK,
            # Quarantined records are counted per source, not per table: allow for them.
            passed=snapshot or 0 <= read - skipped - committed <= report.quarantined_rows,
            metadata={
                "records_read": read,
                "records_in_snapshot_already": skipped,
                "rows_committed": committed,
                "snapshot_run": snapshot,
                "quarantined_rows_of_source": report.quarantined_rows,
            },
        )


def _merge_metadata(result: MergeResult | None) -> dict[str, Any]:
    if result is None:
        return {"changed": False}
    return {
        "changed": True,
        "commit_seq": result.commit_seq,
        "rows": result.rows,
        "upserts": result.upserts,
        "deletes": result.deletes,
        "replaced_by_snapshot": result.replaced,
    }
