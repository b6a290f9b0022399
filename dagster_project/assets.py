"""Per source: one asset per table's change log and one per table's current state.

A source's change logs are one multi-asset because one binlog / replication stream feeds all of
its tables in a single commit; the current-state merge is a second multi-asset downstream.
Each body is one call into `pipelines` plus the metadata it reports (`lake_metadata`).

Keys are `<source>/<table>_changelog` and `<source>/<table>_current`: the lineage graph labels a
node with the last component of its key, so the table's name has to be in it.

The change logs are in the source's writer pool (`writer_pool`), the current state in its merge
pool (`merge_pool`): with each pool's limit at 1 (README, "Dagster"), Dagster never runs two
captures, or two merges, of one source at once, whichever runs, jobs or schedules they come from,
while a long merge never holds up the next run's capture (capture and maintenance are coordinated
only through the commit log; docs/decisions.md §16).
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from connectors.usage import METER, Prices
from dagster_project.lake_metadata import (
    changelog_metadata,
    current_metadata,
    lake_kinds,
    lake_table_name,
    usage_metadata,
)
from pipelines.capture.runner import SyncReport, sync_source

RECORDS_CHECK = "records_read_match_committed"
RECORDS_DESCRIPTION = (
    "Every stream record this run read was committed to the change log once, or was already in the "
    "table's snapshot. The change-log run evaluates it itself (it compares that run's reads with its "
    "commits), so it runs when the change log is materialized. A failure means records were dropped "
    "or duplicated between the shard reader and the lake: leave the lake as it is and compare the "
    "run's `records_read` with `rows_committed` and the commit log before running again."
)
# The source a change log is read from, as a Dagster kind (the UI shows its icon).
SOURCE_KINDS = {
    "mysql": "mysql",
    "postgres": "postgres",
    "dynamodb": "dynamodb",
    "dynamodb_replay": "dynamodb",
}

__all__ = [
    "build_source_assets",
    "changelog_key",
    "current_key",
    "lake_table_name",
    "merge_pool",
    "table_key",
    "writer_pool",
]


def writer_pool(source: str) -> str:
    """The Dagster concurrency pool of what captures `source` into its change log."""
    return f"lake_writer/{source}"


def merge_pool(source: str) -> str:
    """The Dagster concurrency pool of what merges `source`'s current state (maintenance)."""
    return f"lake_merge/{source}"


def table_key(source: str, table: str, kind: str) -> dg.AssetKey:
    """`<source>/<table>_<kind>`, kind `changelog` or `current`."""
    return dg.AssetKey([source, f"{table}_{kind}"])


def changelog_key(source: str, table: str) -> dg.AssetKey:
    return table_key(source, table, "changelog")


def current_key(source: str, table: str) -> dg.AssetKey:
    return table_key(source, table, "current")


def build_source_assets(
    source: str,
    schema: str,
    tables: list[str],
    *,
    kind: str = "mysql",
    lake_root: str = "",
    prices: Prices | None = None,
) -> list[dg.AssetsDefinition]:
    """The change-log and current-state assets of one source."""
    resource_key = f"source_{source}"
    streams = kind == "dynamodb"
    prices = prices or Prices()
    check_specs = (
        [
            dg.AssetCheckSpec(RECORDS_CHECK, asset=changelog_key(source, t), description=RECORDS_DESCRIPTION)
            for t in tables
        ]
        if streams
        else []
    )
    changelog_specs = [
        dg.AssetSpec(
            changelog_key(source, t),
            group_name=source,
            kinds={SOURCE_KINDS.get(kind, kind), "parquet"} | lake_kinds(lake_root),
            description=(
                f"Append-only change log of `{schema}.{t}` from the `{source}` {kind} source: one Parquet "
                "row per insert, update and delete, with `Op`, `_commit_ts`, `_position` and `_txid` "
                "before the table's columns. Written by this asset, `lakehouse sync` and `lakehouse "
                "stream`; commits made outside Dagster are reported here by the `lake_commits` sensor."
            ),
            metadata={"lake_table": lake_table_name(schema, t)},
        )
        for t in tables
    ]
    current_specs = [
        dg.AssetSpec(
            current_key(source, t),
            group_name=source,
            kinds={"iceberg"} | lake_kinds(lake_root),
            deps=[changelog_key(source, t)],
            description=(
                f"Current state of `{schema}.{t}` as an Iceberg table: the latest version of each key "
                "from the change log, deletes applied."
            ),
            metadata={"dagster/table_name": f"{source}.{lake_table_name(schema, t)}"},
        )
        for t in tables
    ]

    @dg.multi_asset(
        name=f"{source}_changelog",
        specs=changelog_specs,
        check_specs=check_specs,
        required_resource_keys={"lake", resource_key},
        pool=writer_pool(source),
    )
    def changelog(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Snapshot the source's tables if the lake has nothing, else stream up to the position of now."""
        lake = context.resources.lake.lake()
        src = getattr(context.resources, resource_key).open()
        try:
            report = sync_source(lake, src, merge=False)
        finally:
            src.close()
        context.log.info(
            f"{source}: {report.commits} commits, {report.rows} rows, now at {report.offset_after}"
        )
        # The run's last commit; a run that committed nothing reports the lake's latest.
        seq = report.last_seq if report.last_seq is not None else lake.commit_log(source).latest_seq()
        for t in tables:
            yield dg.MaterializeResult(
                asset_key=changelog_key(source, t),
                metadata=changelog_metadata(
                    lake, source, lake_table_name(schema, t), report, seq, stream_table=t if streams else None
                )
                | usage_metadata(report.usage, f"{source}.{lake_table_name(schema, t)}", prices)
                | ({"source_bytes_read_by_run": report.usage.source_bytes()} if report.usage else {}),
            )
        if streams:
            yield from _records_checks(src, report, source, schema, tables)

    @dg.multi_asset(
        name=f"{source}_current",
        specs=current_specs,
        required_resource_keys={"lake"},
        pool=merge_pool(source),
    )
    def current(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        """Merge the change logs' new commits into the current-state tables."""
        state = context.resources.lake.lake().current(source)
        before = METER.snapshot()
        results = {r.table: r for r in state.merge()}
        state.delete_orphans()  # files of expired snapshots, once their grace has passed
        used = METER.snapshot().minus(before)
        for t in tables:
            name = lake_table_name(schema, t)
            result = results.get(name)
            yield dg.MaterializeResult(
                asset_key=current_key(source, t),
                metadata=current_metadata(state, name, state.load(name), result, changed=result is not None)
                | usage_metadata(used, f"{source}.{name}", prices),
            )

    return [changelog, current]


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
            asset_key=changelog_key(source, t),
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
