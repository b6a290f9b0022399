"""Asset checks per source table: lag behind the source, duplicate keys, row counts vs the source."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pyarrow.compute as pc

from connectors.lake.current import KEY_PROPERTY
from connectors.offsets import parse_offset
from dagster_project.assets import lake_table_name, table_key

MAX_LAG_SECONDS = 300.0


def build_source_checks(
    source: str, schema: str, tables: list[str], kind: str = "mysql"
) -> list[dg.AssetChecksDefinition]:
    resource_key = f"source_{source}"
    countable = kind != "dynamodb_replay"  # replayed files have no live table to count
    lag_specs = [
        dg.AssetCheckSpec("lag_behind_source", asset=table_key(source, t, "changelog")) for t in tables
    ]
    state_specs = [
        spec
        for t in tables
        for spec in (
            dg.AssetCheckSpec("no_duplicate_keys", asset=table_key(source, t, "current")),
            dg.AssetCheckSpec("rows_match_source", asset=table_key(source, t, "current")),
        )
        if countable or spec.name != "rows_match_source"
    ]

    @dg.multi_asset_check(
        name=f"{source}_lag", specs=lag_specs, required_resource_keys={"lake", resource_key}
    )
    def lag(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        lake = context.resources.lake.lake()
        src = getattr(context.resources, resource_key).open()
        try:
            position = src.current_position()
        finally:
            src.close()
        latest = lake.commit_log(source).latest()
        try:
            caught_up = latest is not None and position <= parse_offset(latest.end)
        except TypeError:  # a position only a read can compare (DynamoDB: "the tip as of now")
            caught_up = False
        age = (dt.datetime.now(dt.UTC) - latest.committed_at).total_seconds() if latest else float("inf")
        passed = caught_up or age <= MAX_LAG_SECONDS
        for t in tables:
            yield dg.AssetCheckResult(
                asset_key=table_key(source, t, "changelog"),
                check_name="lag_behind_source",
                passed=passed,
                metadata={
                    "source_position": position.serialize(),
                    "lake_position": latest.end if latest else "",
                    "caught_up": caught_up,
                    "seconds_since_last_commit": round(age, 1) if latest else -1.0,
                },
            )

    @dg.multi_asset_check(
        name=f"{source}_state", specs=state_specs, required_resource_keys={"lake", resource_key}
    )
    def state(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        current = context.resources.lake.lake().current(source)
        src = getattr(context.resources, resource_key).open()
        try:
            ids = {t.name: t for t in src.tables()}
            for t in tables:
                name = lake_table_name(schema, t)
                table = current.load(name)
                key = table.properties.get(KEY_PROPERTY, "").split(",") if table is not None else []
                # The key columns are all these checks need; the rest of the table is not read.
                rows = table.scan(selected_fields=tuple(key)).to_arrow() if table is not None else None
                dupes = 0
                if rows is not None and rows.num_rows:
                    counts = rows.group_by(key).aggregate([(key[0], "count")])
                    dupes = pc.sum(pc.greater(counts[f"{key[0]}_count"], 1)).as_py() or 0
                yield dg.AssetCheckResult(
                    asset_key=table_key(source, t, "current"),
                    check_name="no_duplicate_keys",
                    passed=dupes == 0,
                    metadata={"duplicate_keys": dupes, "key": ",".join(key)},
                )
                if not countable:
                    continue
                lake_rows = rows.num_rows if rows is not None else 0
                source_rows = src.count_rows(ids[t]) if t in ids else -1
                yield dg.AssetCheckResult(
                    asset_key=table_key(source, t, "current"),
                    check_name="rows_match_source",
                    passed=lake_rows == source_rows,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={"lake_rows": lake_rows, "source_rows": source_rows},
                )
        finally:
            src.close()

    if kind == "dynamodb":
        return [_shard_lag_check(source, tables, resource_key), state]
    return [lag, state]


def _shard_lag_check(source: str, tables: list[str], resource_key: str) -> dg.AssetChecksDefinition:
    """Per table: the age of the oldest stream record the lake lacks, shard by shard."""
    specs = [dg.AssetCheckSpec("shard_lag", asset=table_key(source, t, "changelog")) for t in tables]

    @dg.multi_asset_check(
        name=f"{source}_shard_lag", specs=specs, required_resource_keys={"lake", resource_key}
    )
    def shard_lag(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        from connectors.dynamodb.lag import shard_lags
        from connectors.dynamodb.offset import StreamPositions

        latest = context.resources.lake.lake().commit_log(source).latest()
        positions = parse_offset(latest.end) if latest is not None else StreamPositions.empty(tables)
        src = getattr(context.resources, resource_key).open()
        try:
            lags = shard_lags(src, positions)  # type: ignore[arg-type]
        finally:
            src.close()
        for t in tables:
            mine = [lag for lag in lags if lag.table == t]
            worst = max((lag.lag_seconds for lag in mine), default=0.0)
            yield dg.AssetCheckResult(
                asset_key=table_key(source, t, "changelog"),
                check_name="shard_lag",
                passed=latest is not None and worst <= MAX_LAG_SECONDS,
                metadata={
                    "max_lag_seconds": round(worst, 1),
                    "shards": dg.MetadataValue.json(
                        {
                            lag.shard: {"committed": lag.committed, "lag_seconds": round(lag.lag_seconds, 1)}
                            for lag in mine
                        }
                    ),
                },
            )

    return shard_lag
