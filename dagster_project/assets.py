"""Per source: one asset per table's change log and one per table's current state.

A source's change logs are one multi-asset because one binlog / replication stream feeds all of
its tables in a single commit; the current-state merge is a second multi-asset downstream.
Each body is one call into `pipelines` plus the metadata it reports.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from connectors.lake.current import MergeResult
from pipelines.runner import SyncReport, sync_source


def table_key(source: str, table: str, kind: str) -> dg.AssetKey:
    return dg.AssetKey([source, table, kind])


def lake_table_name(schema: str, table: str) -> str:
    return f"{schema}__{table}".lower()


def build_source_assets(source: str, schema: str, tables: list[str]) -> list[dg.AssetsDefinition]:
    """The change-log and current-state assets of one source."""
    resource_key = f"source_{source}"
    changelog_specs = [
        dg.AssetSpec(
            table_key(source, t, "changelog"),
            group_name=source,
            kinds={"parquet", "s3"},
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
        name=f"{source}_changelog", specs=changelog_specs, required_resource_keys={"lake", resource_key}
    )
    def changelog(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        src = getattr(context.resources, resource_key).open()
        try:
            report = sync_source(context.resources.lake.lake(), src, merge=False)
        finally:
            src.close()
        context.log.info(
            f"{source}: {report.commits} commits, {report.rows} rows, now at {report.offset_after}"
        )
        for t in tables:
            yield dg.MaterializeResult(
                asset_key=table_key(source, t, "changelog"),
                metadata=_sync_metadata(report, lake_table_name(schema, t)),
            )

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
    }


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
