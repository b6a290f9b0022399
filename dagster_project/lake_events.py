"""Commits made outside Dagster (`lakehouse sync`, `stream`, `demo`) reported to Dagster.

The lake's commit log is the record of what was committed, so Dagster learns of outside commits
by reading it, rather than the CLI writing into a Dagster instance: the CLI needs neither Dagster
nor DAGSTER_HOME, nothing is lost while Dagster is not running (the sensor catches up on its next
tick), and a new or wiped instance is told the lake's state on its first tick.

Each tick, per source: the newest commit the instance already knows of (the `lake_commit_seq` of
the source's latest change-log materializations, whoever reported them) is compared with the
commit log, and the newer commits become one materialization per table they touched, with the
metadata a Dagster run reports. Current-state tables merged outside Dagster likewise: their
Iceberg snapshot names the commit merged. A source with a Dagster run in progress is left to
that run, which reports its own commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from dagster_project.assets import changelog_key, current_key
from dagster_project.checks import RECONCILIATION_JOB
from dagster_project.lake_metadata import COMMIT_SEQ, changelog_metadata, current_metadata, lake_table_name
from pipelines.capture.runner import SyncReport

SENSOR_NAME = "lake_commits"
# At most this many commits are read per source and tick (a first tick over a long history
# summarises the newest ones; the table's row count and schema are exact either way).
MAX_COMMITS_PER_TICK = 1000
OUTSIDE = "Committed outside Dagster (`lakehouse sync`, `stream` or `demo`), read from the lake's commit log."
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dataclass(frozen=True)
class LakeSource:
    """A configured source as the sensor needs it: its tables and their lake names."""

    name: str
    schema: str
    tables: tuple[str, ...]
    streams: bool = False

    def lake_tables(self) -> dict[str, str]:
        return {t: lake_table_name(self.schema, t) for t in self.tables}


def build_lake_commits_sensor(lake_config: LakeConfig, sources: Sequence[LakeSource]) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Reports lake commits made outside Dagster (`lakehouse sync`, `stream`, `demo`) as "
            "materializations of the change-log and current-state assets, read from the lake's "
            "commit log. Launches no runs."
        ),
    )
    def lake_commits(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        lake = Lake(lake_config)
        busy = _assets_of_active_runs(context.instance)
        events: list[dg.AssetMaterialization] = []
        for source in sources:
            if busy is None or any(changelog_key(source.name, t) in busy for t in source.tables):
                continue
            events += outside_commit_events(lake, context.instance, source)
        if not events:
            return dg.SensorResult(skip_reason="no commits outside Dagster since the last tick")
        return dg.SensorResult(asset_events=events)

    return lake_commits


def outside_commit_events(
    lake: Lake, instance: dg.DagsterInstance, source: LakeSource
) -> list[dg.AssetMaterialization]:
    """Materializations for the commits and merges of `source` that `instance` does not know of."""
    log = lake.commit_log(source.name)
    latest = log.latest()
    if latest is None:
        return []
    names = source.lake_tables()
    events: list[dg.AssetMaterialization] = []
    changelog_keys = {t: changelog_key(source.name, t) for t in source.tables}
    current_keys = {t: current_key(source.name, t) for t in source.tables}
    known_all = _known_seqs(instance, [*changelog_keys.values(), *current_keys.values()])
    known = {key: known_all[key] for key in changelog_keys.values()}
    reported = max((s for s in known.values() if s is not None), default=0)
    if latest.seq > reported:
        first = max(reported, latest.seq - MAX_COMMITS_PER_TICK)
        report = SyncReport(source.name, offset_before=log.read(first).end if first else None)
        for seq in range(first + 1, latest.seq + 1):
            report.add(latest if seq == latest.seq else log.read(seq))
        for t, name in names.items():
            key = changelog_keys[t]
            touched = name in report.rows_by_table
            if touched or (known[key] is None and name in latest.heads):
                metadata = changelog_metadata(
                    lake, source.name, name, report, latest.seq, stream_table=t if source.streams else None
                )
                events.append(dg.AssetMaterialization(asset_key=key, description=OUTSIDE, metadata=metadata))
    # A table's merge applies at most its last touching commit (`heads`): one known to be merged
    # that far has nothing new, and its Iceberg table is not loaded.
    unmerged = {
        t: name for t, name in names.items() if (known_all[current_keys[t]] or 0) < latest.heads.get(name, 0)
    }
    if unmerged:
        current = lake.current(source.name)
        for t, name in unmerged.items():
            key = current_keys[t]
            table = current.load(name)
            if table is not None and current.applied_seq(table) > (known_all[key] or 0):
                metadata = current_metadata(current, name, table, None, changed=True)
                events.append(dg.AssetMaterialization(asset_key=key, description=OUTSIDE, metadata=metadata))
    return events


def _known_seqs(
    instance: dg.DagsterInstance, keys: Iterable[dg.AssetKey]
) -> Mapping[dg.AssetKey, int | None]:
    """Per asset: the lake commit its latest materialization covers (None: never materialized)."""
    keys = list(keys)
    latest = instance.get_latest_materialization_events(keys)
    out: dict[dg.AssetKey, int | None] = {}
    for key in keys:
        entry = latest.get(key)
        materialization = entry.asset_materialization if entry is not None else None
        if materialization is None:
            out[key] = None
            continue
        value = materialization.metadata.get(COMMIT_SEQ)
        out[key] = int(value.value) if value is not None else 0  # type: ignore[arg-type]
    return out


def _assets_of_active_runs(instance: dg.DagsterInstance) -> set[dg.AssetKey] | None:
    """Assets that runs in progress will report themselves (None: a run that may touch any)."""
    busy: set[dg.AssetKey] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_ACTIVE)):
        if run.job_name == RECONCILIATION_JOB:  # checks only: it reports no materialization
            continue
        if run.asset_selection is None:
            return None
        busy |= set(run.asset_selection)
    return busy
