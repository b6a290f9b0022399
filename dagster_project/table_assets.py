"""Per-table partitions: a source's tables as the partitions of its `snapshot` and `current_state`.

The per-table assets (`<source>/<table>_changelog`, `_current`) are what `micro_batches` runs
source by source. These two assets, in the group `<source>_by_table`, show the same tables as
partitions, so merges and re-snapshots are seen and driven table by table:

* `<source>/current_state`, one partition per table: merges that table's new commits into its
  Iceberg table and nothing else (`table_work.merge_one_table`). Compaction is part of the merge
  (bin-packing in the merge's own Iceberg snapshot, `connectors.lake.current`), so the partition
  covers both. Its partitioned check `no_duplicate_keys` reads that table's keys only.
* `<source>/snapshot`, one partition per table: re-snapshots the tables (a backfill), through the
  request path `lakehouse backfill` takes (`table_work.request_backfill`). A re-snapshot is a
  Dagster backfill of these partitions; its single-run policy serves a contiguous selection of
  tables as one request, so they share one low watermark and one pass of the stream.

The partitions are static, from the config's `tables` (decisions §17): the per-table assets are
already made from that list, and a table added there appears in both on the next reload.

Concurrency (decisions §17): merges are in the source's merge pool `lake_merge/<source>` and
snapshots in its writer pool `lake_writer/<source>` (`assets.py`): with the pools limited to 1, a
table never has two merges at once, no merge races the whole-source merge of `micro_batches`,
and a snapshot served in a run (under the source's lease) waits for a capture instead of failing
on the lease. Each run of a merge job carries the tag `lakehouse/table` = `<source>/<table>`,
for a run-queue limit per table where a source's merge pool is raised to merge several of its
tables at once.
"""

import warnings

import dagster as dg

from dagster_project.assets import SOURCE_KINDS, merge_pool, writer_pool
from dagster_project.checks import count_duplicate_keys, read_keys
from dagster_project.lake_metadata import COMMIT_SEQ, current_metadata, lake_kinds, lake_table_name
from dagster_project.table_work import merge_one_table, request_backfill
from pipelines.config import AnySourceConfig

TABLE_TAG = "lakehouse/table"
# Every run of a source's snapshot job names the database server its snapshot reads (decisions
# §17): `tag_concurrency_limits` on it bounds the snapshot runs, and so the readers, per server.
DB_SERVER_TAG = "lakehouse/db-server"
SPARK_MERGES = "spark_merges"  # the resource (`SparkMergeResource`) that says where large tables merge
DUPLICATES_DESCRIPTION = (
    "This partition's current-state table holds each primary key once (reads every key of that "
    "table only; runs on its own, per partition). When it fails the merge is broken: do not "
    "publish the table; materialize the table's `snapshot` partition (a backfill) and report the "
    "keys listed."
)

__all__ = [
    "DB_SERVER_TAG",
    "TABLE_TAG",
    "build_table_definitions",
    "db_server",
    "by_table_group",
    "current_state_key",
    "merge_job_name",
    "snapshot_job_name",
    "snapshot_key",
    "table_partitions",
]


def by_table_group(source: str) -> str:
    return f"{source}_by_table"


def current_state_key(source: str) -> dg.AssetKey:
    return dg.AssetKey([source, "current_state"])


def snapshot_key(source: str) -> dg.AssetKey:
    return dg.AssetKey([source, "snapshot"])


def merge_job_name(source: str) -> str:
    return f"{source}_merge_tables"


def snapshot_job_name(source: str) -> str:
    return f"{source}_snapshot_tables"


def db_server(config: AnySourceConfig) -> str | None:
    """The `lakehouse/db-server` of a source's snapshot runs: ``host:port`` of the database its
    snapshot reads (sources on one server share it); None for DynamoDB, which has no server."""
    host, port = getattr(config, "host", None), getattr(config, "port", None)
    if host is None or port is None:
        return None
    return f"{str(host).lower()}:{port}"


def table_tag(source: str, table: str) -> str:
    """The `lakehouse/table` value of a table's runs: unique across sources."""
    return f"{source}/{table}"


def table_partitions(tables: list[str]) -> dg.StaticPartitionsDefinition:
    """One partition per table, keyed by its name as the config lists it."""
    return dg.StaticPartitionsDefinition(list(tables))


def build_table_definitions(
    config: AnySourceConfig, schema: str, tables: list[str], *, lake_root: str = ""
) -> (
    "tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition], list[dg.UnresolvedAssetJobDefinition]]"
):
    """(assets, checks, jobs) of one source's tables as partitions: the merge job first, then
    the snapshot job (none for a replay source, which has no snapshot)."""
    source, kind = config.name, config.kind
    partitions = table_partitions(tables)
    group = by_table_group(source)
    resource_key = f"source_{source}"
    # Readers of a source database during a snapshot: the one run at a time of its writer pool,
    # reading `snapshot_readers` chunks at once (DynamoDB: one Scan or export per table).
    readers = int(getattr(config, "snapshot_readers", 1))

    # Backfill policies (and partitioned asset checks, below) are beta and preview APIs in Dagster 1.13.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)

        @dg.asset(
            key=snapshot_key(source),
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            group_name=group,
            kinds={SOURCE_KINDS.get(kind, kind), "parquet"} | lake_kinds(lake_root),
            required_resource_keys={"lake", resource_key},
            pool=writer_pool(source),
            metadata={"snapshot_readers": readers},
            description=(
                f"Re-snapshots of the `{source}` tables into their change logs, one partition per table: "
                "materializing partitions is `lakehouse backfill --source "
                f"{source} <tables>`. A running `lakehouse stream` serves the request beside its "
                "stream (this run waits for it); otherwise this run serves it under the source's lease. "
                f"Reads `snapshot_readers` ({readers}) chunks at once."
            ),
        )
        def snapshot(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
            """Hand the selected tables' backfill to the stream runner, or serve it here."""
            lake = context.resources.lake.lake()
            outcome = request_backfill(
                lake,
                source,
                context.partition_keys,
                getattr(context.resources, resource_key).open,
                context.log.info,
            )
            return dg.MaterializeResult(
                metadata={
                    "tables": ", ".join(outcome.tables),
                    "request_id": outcome.request_id,
                    "served_by": outcome.served_by,
                    COMMIT_SEQ: outcome.commit if outcome.commit is not None else -1,
                    "rows": outcome.rows,
                }
            )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        duplicates_spec = dg.AssetCheckSpec(
            "no_duplicate_keys",
            asset=current_state_key(source),
            partitions_def=partitions,
            description=DUPLICATES_DESCRIPTION,
        )

    @dg.asset(
        key=current_state_key(source),
        partitions_def=partitions,
        group_name=group,
        kinds={"iceberg"} | lake_kinds(lake_root),
        deps=[snapshot_key(source)] if kind != "dynamodb_replay" else [],
        required_resource_keys={"lake", SPARK_MERGES},
        pool=merge_pool(source),
        description=(
            f"Current state of the `{source}` tables as Iceberg tables, one partition per table: "
            "materializing a partition merges that table's new change-log commits (and compacts "
            "it in the same Iceberg snapshot); the source's other tables are not touched. The "
            f"`{source}_tables_changed` sensor requests these runs from the commit log."
        ),
    )
    def current_state(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Merge this partition's table up to its last commit."""
        lake = context.resources.lake.lake()
        current = lake.current(source)
        # A table of at least `spark_merge_min_rows` rows goes to Spark: here, or a job through Pipes.
        large_tables = getattr(context.resources, SPARK_MERGES).merger(context, lake)
        if large_tables is not None:
            current.large_tables = large_tables
        name = lake_table_name(schema, context.partition_key)
        merged = merge_one_table(current, name)
        table = current.load(name)
        metadata = current_metadata(current, name, table, merged.result, changed=merged.result is not None)
        metadata["table_last_commit"] = merged.head
        metadata["snapshot_under_way"] = merged.snapshot_under_way
        metadata.update(getattr(large_tables, "reported", {}))  # what a Pipes job reported
        return dg.MaterializeResult(metadata=metadata)

    @dg.multi_asset_check(
        name=f"{source}_by_table_duplicates",
        specs=[duplicates_spec],
        required_resource_keys={"lake"},
    )
    def duplicates(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        """Read this partition's table's key columns; count keys held more than once."""
        current = context.resources.lake.lake().current(source)
        rows, key = read_keys(current, lake_table_name(schema, context.partition_key))
        dupes = count_duplicate_keys(rows, key)
        return dg.AssetCheckResult(
            asset_key=current_state_key(source),
            check_name="no_duplicate_keys",
            passed=dupes == 0,
            metadata={"duplicate_keys": dupes, "key": ",".join(key)},
        )

    merges = dg.define_asset_job(
        merge_job_name(source),
        # Not the duplicates check: it reads every key of the table (it runs on its own).
        selection=dg.AssetSelection.assets(current_state_key(source)).without_checks(),
        config=dg.PartitionedConfig(
            partitions_def=partitions,
            run_config_for_partition_key_fn=lambda _: {},
            tags_for_partition_key_fn=lambda table: {TABLE_TAG: table_tag(source, table)},
        ),
        description=f"Merges one `{source}` table (the run's partition) into its current state.",
        executor_def=dg.in_process_executor,
    )
    if kind == "dynamodb_replay":
        return [current_state], [duplicates], [merges]
    server = db_server(config)
    snapshots = dg.define_asset_job(
        snapshot_job_name(source),
        selection=dg.AssetSelection.assets(snapshot_key(source)),
        run_tags={DB_SERVER_TAG: server} if server else None,
        description=(
            f"Re-snapshots `{source}` tables (the run's partitions; a backfill of several is one run). "
            + (f"Its runs carry `{DB_SERVER_TAG}: {server}`." if server else "")
        ),
        executor_def=dg.in_process_executor,
    )
    return [snapshot, current_state], [duplicates], [merges, snapshots]
