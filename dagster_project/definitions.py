"""Dagster definitions of the project: `dagster dev` (or `dg dev`) in the repository root loads them.

pyproject.toml's `[tool.dg.project]` names this module. Built lazily (`@dg.definitions`), so
importing it reads no file and opens no connection; Dagster calls `defs()` when it loads the code
location. The config file is $LAKEHOUSE_CONFIG or ./lakehouse.toml; Dagster source assets need
each source's `tables` listed explicitly.
"""

from __future__ import annotations

import warnings

import dagster as dg

from connectors.dynamodb.source import SCHEMA as DYNAMODB_SCHEMA
from dagster_project.assets import build_source_assets
from dagster_project.catalog_assets import build_catalog_definitions
from dagster_project.checks import RECONCILIATION_CHECKS, RECONCILIATION_JOB, build_source_checks
from dagster_project.lake_events import LakeSource, build_lake_commits_sensor
from dagster_project.merge_sensor import build_merge_sensor
from dagster_project.resources import (
    dynamodb_resource,
    lake_resource,
    replay_resource,
    source_resource,
    spark_merge_resource,
)
from dagster_project.search_assets import build_search_definitions
from dagster_project.stream_observations import build_stream_sensor, build_stream_specs
from dagster_project.table_assets import SPARK_MERGES, build_table_definitions
from pipelines.config import LakehouseConfig, load_config


def build_definitions(config: LakehouseConfig) -> dg.Definitions:
    """Assets, checks, resources, jobs, schedules and sensors for a configuration: per source its
    per-table assets (`micro_batches`), the same tables as partitions (`table_assets`) with a
    merge sensor on the commit log, and its stream as an observed external asset."""
    assets: list[dg.AssetsDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    resources: dict[str, object] = {}
    lake_sources: list[LakeSource] = []
    table_jobs: list[dg.UnresolvedAssetJobDefinition] = []
    # Checks of one table partition each: run per partition, never by the unpartitioned jobs.
    partitioned_checks: list[dg.AssetChecksDefinition] = []
    table_sensors: list[dg.SensorDefinition] = []
    for source in config.sources:
        if not source.tables:
            raise ValueError(
                f"source {source.name!r}: list its `tables` in the config to get Dagster assets for them"
            )
        if source.kind == "dynamodb":
            schema = DYNAMODB_SCHEMA
            resources[f"source_{source.name}"] = dynamodb_resource(source)
        elif source.kind == "dynamodb_replay":
            schema = DYNAMODB_SCHEMA
            resources[f"source_{source.name}"] = replay_resource(source)
        else:
            schema = source.database if source.kind == "mysql" else source.schema_name  # type: ignore[union-attr]
            resources[f"source_{source.name}"] = source_resource(source)
        tables = [str(t) for t in source.tables]
        assets += build_source_assets(
            source.name, schema, tables, kind=source.kind, lake_root=config.lake.root, prices=config.costs
        )
        checks += build_source_checks(
            source.name, schema, tables, kind=source.kind, reader_host=getattr(source, "reader_host", None)
        )
        lake_source = LakeSource(source.name, schema, tuple(tables), streams=source.kind == "dynamodb")
        lake_sources.append(lake_source)
        # The same tables as partitions: merges and re-snapshots table by table.
        table_assets, table_checks, jobs = build_table_definitions(
            source, schema, tables, lake_root=config.lake.root
        )
        merge_job = jobs[0]
        assets += table_assets
        partitioned_checks += table_checks
        table_jobs += jobs
        table_sensors.append(build_merge_sensor(config.lake, lake_source, merge_job))
    lake = config.lake
    # The AWS credential chain unless the config names keys (then read from the environment at run time).
    resources["lake"] = lake_resource(lake, config.tenancy)
    # Where the per-table merges run a large table's Spark merge (docs/decisions.md §21).
    resources[SPARK_MERGES] = spark_merge_resource(lake)
    # Glue, Athena, Redshift and the local warehouse: each only when configured.
    catalog_assets, catalog_checks = build_catalog_definitions(config)
    assets += catalog_assets
    checks += catalog_checks
    search_jobs: list[dg.UnresolvedAssetJobDefinition] = []
    sensors: list[dg.SensorDefinition] = [
        build_lake_commits_sensor(config.lake, lake_sources),
        build_stream_sensor(config.lake, lake_sources),
        *table_sensors,
    ]
    if config.search.mysql_source in {s.name for s in config.sources}:
        search_assets, search_checks, search_jobs, search_sensors = build_search_definitions(config)
        assets += search_assets
        checks += search_checks
        sensors += search_sensors
    # Checks that read whole tables (exact source counts, every key of the lake) are not run every
    # minute: they have their own job and schedule (audit F7).
    reconciliation_keys = [key for c in checks for key in c.check_keys if key.name in RECONCILIATION_CHECKS]
    micro_batches = dg.define_asset_job(
        "micro_batches",
        selection=dg.AssetSelection.groups(*(s.name for s in config.sources))
        - dg.AssetSelection.checks(*reconciliation_keys),
        description="Every source's change logs and current-state tables, with their cheap checks "
        "(lag, row counts against the sources' estimates).",
        # One process for the whole run: a subprocess per step cost ~4 s of imports each, most of
        # a run's time; the steps themselves are short and mostly wait on the databases.
        executor_def=dg.in_process_executor,
    )
    schedule = dg.ScheduleDefinition(
        name="every_minute",
        job=micro_batches,
        cron_schedule="* * * * *",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Runs `micro_batches` every minute (off by default; `lakehouse stream` is the low-latency path).",
    )
    reconcile_sources = dg.define_asset_job(
        RECONCILIATION_JOB,
        selection=dg.AssetSelection.checks(*reconciliation_keys),
        description="Exact reconciliation: each source table's COUNT(*) (DynamoDB: a Scan) against the "
        "lake, on the reader endpoint when `reader_host` is set, and duplicate keys in the lake.",
        executor_def=dg.in_process_executor,
    )
    nightly = dg.ScheduleDefinition(
        name="nightly_reconciliation",
        job=reconcile_sources,
        cron_schedule="17 3 * * *",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Runs `reconcile_sources` every night at 03:17 (off by default): exact counts "
        "read every source table in full, so run them where and when that costs least.",
    )
    with warnings.catch_warnings():  # code references are a beta API in Dagster 1.13
        warnings.simplefilter("ignore", dg.BetaWarning)
        referenced = dg.with_source_code_references(assets)
    return dg.Definitions(
        # The streams are external assets: observed (`stream_positions`), never materialized.
        assets=[*referenced, *build_stream_specs(lake_sources)],
        asset_checks=[*checks, *partitioned_checks],
        resources=resources,
        jobs=[micro_batches, reconcile_sources, *table_jobs, *search_jobs],
        schedules=[schedule, nightly],
        sensors=sensors,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_config())
