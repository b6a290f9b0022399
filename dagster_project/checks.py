"""Asset checks per source table: lag behind the source, row counts, duplicate keys.

Two sets, by cost (audit F7):

* **Every minute** (in `micro_batches`): lag behind the source (its position now vs the lake's
  last commit; DynamoDB: per shard), and the lake's row count, read from its own Iceberg metadata,
  against the source's *estimate* (MySQL TABLE_ROWS, PostgreSQL reltuples, DynamoDB ItemCount).
  None of them reads a source table or a lake table's data.
* **Reconciliation** (`RECONCILIATION_CHECKS`, in the `reconcile_sources` job on its own
  schedule): exact `COUNT(*)` / Scan(Select=COUNT) of each source table, on the reader endpoint
  when one is configured, and duplicate keys, which reads every key of the current-state table.

Each check only reads, so each runs on its own from the UI or a job without materializing
anything: the multi-checks are subsettable and compute only the checks selected. Metadata holds
counts, positions and column names only, never a row's values.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from connectors.lake.current import KEY_PROPERTY, CurrentState
from connectors.offsets import parse_offset
from dagster_project.assets import changelog_key, current_key, lake_table_name
from dagster_project.lake_metadata import describe_position, md_table
from pipelines.capture.row_counts import (
    ESTIMATE_ORIGINS,
    RowTolerance,
    count_source_rows,
    estimate_source_rows,
)

MAX_LAG_SECONDS = 300.0
ROW_TOLERANCE = RowTolerance()
# The checks that read whole tables: run by this job, never by `micro_batches`.
RECONCILIATION_CHECKS = frozenset({"no_duplicate_keys", "rows_match_source"})
RECONCILIATION_JOB = "reconcile_sources"

LAG_DESCRIPTION = (
    "The lake keeps up with the source: passes when the source's current position is already "
    f"committed to the lake, or the lake's last commit is at most {MAX_LAG_SECONDS:.0f} s old. "
    "When it fails, nothing has committed this source lately: start `lakehouse stream` or the "
    "`every_minute` schedule, and read the last `micro_batches` run's logs for the error."
)
SHARD_LAG_DESCRIPTION = (
    "Every DynamoDB stream shard of the table is at most "
    f"{MAX_LAG_SECONDS:.0f} s behind: the age of the oldest record the lake lacks, shard by shard "
    "(read by peeking at each shard). When it fails, run the change log (or `lakehouse stream`); "
    "if it keeps failing, a shard is stuck: the `shards` metadata names it."
)
ESTIMATE_DESCRIPTION = (
    "Cheap enough for every minute: the current-state table's row count (from its Iceberg "
    "metadata) is near the source's own estimate (MySQL information_schema TABLE_ROWS, PostgreSQL "
    "pg_class.reltuples, DynamoDB DescribeTable ItemCount; no table is read), within "
    f"{ROW_TOLERANCE.relative:.0%} or {ROW_TOLERANCE.absolute} rows. A warning: estimates lag. "
    "When it persists, run the `reconcile_sources` job for the exact count."
)
DUPLICATES_DESCRIPTION = (
    "The current-state table holds each primary key once (reads every key: runs in the "
    "`reconcile_sources` job). When it fails the merge is broken: do not publish the table; "
    "`lakehouse resnapshot` the source table and report the keys listed."
)
ROWS_DESCRIPTION = (
    "The current-state table has exactly as many rows as the live source table: COUNT(*) or a "
    "DynamoDB Scan, on the reader endpoint when `reader_host` is set, in the `reconcile_sources` "
    "job (a warning: rows written since the last merge also differ). When it persists after a "
    "fresh sync, compare keys with the source and `lakehouse backfill` the table."
)


def build_source_checks(
    source: str, schema: str, tables: list[str], kind: str = "mysql", *, reader_host: str | None = None
) -> list[dg.AssetChecksDefinition]:
    """The checks of one source's tables; `reader_host` is where exact counts run (None: the
    resource's host)."""
    resource_key = f"source_{source}"
    countable = kind != "dynamodb_replay"  # replayed files have no live table to count
    lag_specs = [
        dg.AssetCheckSpec("lag_behind_source", asset=changelog_key(source, t), description=LAG_DESCRIPTION)
        for t in tables
    ]
    state_specs = [
        spec
        for t in tables
        for spec in (
            dg.AssetCheckSpec("no_duplicate_keys", asset=current_key(source, t), description=DUPLICATES_DESCRIPTION),
            dg.AssetCheckSpec("rows_match_source", asset=current_key(source, t), description=ROWS_DESCRIPTION),
        )
        if countable or spec.name != "rows_match_source"
    ]  # fmt: skip

    @dg.multi_asset_check(
        name=f"{source}_lag",
        specs=lag_specs,
        can_subset=True,
        required_resource_keys={"lake", resource_key},
    )
    def lag(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        """Compare the source's position now with the lake's last commit."""
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
        selected = context.selected_asset_check_keys
        for t in tables:
            key = dg.AssetCheckKey(changelog_key(source, t), "lag_behind_source")
            if key not in selected:
                continue
            yield dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=passed,
                metadata={
                    "source_position": describe_position(position.serialize()),
                    "lake_position": describe_position(latest.end if latest else None),
                    "caught_up": caught_up,
                    "seconds_since_last_commit": round(age, 1) if latest else -1.0,
                    "max_seconds_since_last_commit_allowed": MAX_LAG_SECONDS,
                },
            )

    @dg.multi_asset_check(
        name=f"{source}_reconciliation",
        specs=state_specs,
        can_subset=True,
        required_resource_keys={"lake", resource_key},
    )
    def reconciliation(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        """Read each current-state table's key columns; count the source's rows exactly."""
        current = context.resources.lake.lake().current(source)
        selected = context.selected_asset_check_keys
        # Only the row counts need the source (duplicate keys alone are checked without it), and
        # only the selected tables are counted: each count reads a whole table.
        counted = [
            t
            for t in tables
            if countable and dg.AssetCheckKey(current_key(source, t), "rows_match_source") in selected
        ]
        source_rows: dict[str, int | None] = {}
        if counted:
            config = getattr(context.resources, resource_key).source_config()
            if reader_host:  # the resource knows the writer endpoint only
                config = config.model_copy(update={"reader_host": reader_host})
            source_rows = count_source_rows(config, counted)
        for t in tables:
            dupes_key = dg.AssetCheckKey(current_key(source, t), "no_duplicate_keys")
            rows_key = dg.AssetCheckKey(current_key(source, t), "rows_match_source")
            if dupes_key not in selected and rows_key not in selected:
                continue
            rows, key = read_keys(current, lake_table_name(schema, t))
            if dupes_key in selected:
                dupes = count_duplicate_keys(rows, key)
                yield dg.AssetCheckResult(
                    asset_key=dupes_key.asset_key,
                    check_name=dupes_key.name,
                    passed=dupes == 0,
                    metadata={"duplicate_keys": dupes, "key": ",".join(key)},
                )
            if t not in counted:
                continue
            lake_rows = rows.num_rows if rows is not None else 0
            exact = source_rows.get(t)
            yield dg.AssetCheckResult(
                asset_key=rows_key.asset_key,
                check_name=rows_key.name,
                passed=lake_rows == exact,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "lake_rows": lake_rows,
                    "source_rows": exact if exact is not None else -1,
                    "counted_on": "reader endpoint" if reader_host else "source endpoint",
                },
            )

    checks = [reconciliation]
    if countable:
        checks.append(_estimate_check(source, schema, tables, resource_key))
    if kind == "dynamodb":
        return [_shard_lag_check(source, tables, resource_key), *checks]
    return [lag, *checks]


def read_keys(current: CurrentState, lake_table: str) -> tuple[pa.Table | None, list[str]]:
    """Every row's key columns of a current-state table (None: no table yet), and their names.

    The key columns are all the duplicate and row-count checks need; the rest is not read."""
    table = current.load(lake_table)
    if table is None:
        return None, []
    key = table.properties.get(KEY_PROPERTY, "").split(",")
    return table.scan(selected_fields=tuple(key)).to_arrow(), key


def count_duplicate_keys(rows: pa.Table | None, key: list[str]) -> int:
    """How many keys occur in more than one row."""
    if rows is None or not rows.num_rows:
        return 0
    counts = rows.group_by(key).aggregate([(key[0], "count")])
    return int(pc.sum(pc.greater(counts[f"{key[0]}_count"], 1)).as_py() or 0)


def _estimate_check(
    source: str, schema: str, tables: list[str], resource_key: str
) -> dg.AssetChecksDefinition:
    """Per table: the lake's row count (Iceberg metadata) near the source's own estimate."""
    specs = [
        dg.AssetCheckSpec("rows_near_source_estimate", asset=current_key(source, t), description=ESTIMATE_DESCRIPTION)
        for t in tables
    ]  # fmt: skip

    @dg.multi_asset_check(
        name=f"{source}_row_estimates",
        specs=specs,
        can_subset=True,
        required_resource_keys={"lake", resource_key},
    )
    def row_estimates(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        """Compare each current-state table's live rows (snapshot summary) with the source's estimate."""
        config = getattr(context.resources, resource_key).source_config()
        estimates = estimate_source_rows(config, tables)
        current = context.resources.lake.lake().current(source)
        selected = context.selected_asset_check_keys
        for t in tables:
            key = dg.AssetCheckKey(current_key(source, t), "rows_near_source_estimate")
            if key not in selected:
                continue
            lake_rows = current.live_rows(current.load(lake_table_name(schema, t)))
            estimate = estimates.get(t)
            yield dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=key.name,
                # No estimate yet (a table never analyzed): nothing to compare, so no warning.
                passed=estimate is None or ROW_TOLERANCE.accepts(lake_rows, estimate),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "lake_rows": lake_rows,
                    "source_rows_estimate": estimate if estimate is not None else -1,
                    "estimate_from": ESTIMATE_ORIGINS[config.kind]
                    if estimate is not None
                    else "no estimate yet",
                    "max_difference_allowed": ROW_TOLERANCE.allowed(lake_rows, estimate or 0),
                },
            )

    return row_estimates


def _shard_lag_check(source: str, tables: list[str], resource_key: str) -> dg.AssetChecksDefinition:
    """Per table: the age of the oldest stream record the lake lacks, shard by shard."""
    specs = [
        dg.AssetCheckSpec("shard_lag", asset=changelog_key(source, t), description=SHARD_LAG_DESCRIPTION)
        for t in tables
    ]

    @dg.multi_asset_check(
        name=f"{source}_shard_lag",
        specs=specs,
        can_subset=True,
        required_resource_keys={"lake", resource_key},
    )
    def shard_lag(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        """Peek at each shard after the lake's position: the age of its oldest record not in the lake."""
        from connectors.dynamodb.lag import shard_lags
        from connectors.dynamodb.offset import StreamPositions

        latest = context.resources.lake.lake().commit_log(source).latest()
        positions = parse_offset(latest.end) if latest is not None else StreamPositions.empty(tables)
        src = getattr(context.resources, resource_key).open()
        try:
            lags = shard_lags(src, positions)  # type: ignore[arg-type]
        finally:
            src.close()
        selected = context.selected_asset_check_keys
        for t in tables:
            key = dg.AssetCheckKey(changelog_key(source, t), "shard_lag")
            if key not in selected:
                continue
            mine = [lag for lag in lags if lag.table == t]
            worst = max((lag.lag_seconds for lag in mine), default=0.0)
            yield dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=latest is not None and worst <= MAX_LAG_SECONDS,
                metadata={
                    "worst_shard_lag_seconds": round(worst, 1),
                    "max_lag_seconds_allowed": MAX_LAG_SECONDS,
                    "shards": md_table(
                        ["shard", "last committed", "lag seconds"],
                        [
                            (lag.shard, lag.committed or "nothing yet", f"{lag.lag_seconds:.1f}")
                            for lag in mine
                        ],
                    ),
                },
            )

    return shard_lag
