"""`<source>_tables_changed`: a merge run per table that the lake's commit log shows changed.

The cursor is the last commit seq of the source the sensor has seen. A tick reads the newest
commit record only: its `heads` name, per table, the last commit that touched it, so the tables
changed since the cursor are those whose head is past it, however many commits came between.
Each becomes a `RunRequest` for that table's partition of `<source>/current_state` (run key:
table and head, so a tick replayed after a lost cursor launches nothing twice). Skipped:

* tables whose chunked snapshot is under way: they are merged once the last chunk is committed,
  and that commit moves their head again;
* tables with a merge run of this job that has not started yet: it reads the newest commit when
  it starts, so a second run would merge nothing.

On the first tick (no cursor), or after the lake's log restarted below the cursor, the tables
whose last commit is past their Iceberg table's merged commit are requested, once.

Ships stopped: a `lakehouse stream` merges its source itself every `merge_every_seconds`, and two
mergers of one table only make one of them redo its work (compare-and-swap, decisions §16). Turn
it on where Dagster does the merges (streams run with a long `merge_every_seconds`, or only
capture runs outside Dagster).
"""

from __future__ import annotations

import dagster as dg

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from dagster_project.lake_events import LakeSource

_NOT_STARTED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
]


def merge_sensor_name(source: str) -> str:
    return f"{source}_tables_changed"


def changed_tables(lake: Lake, source: LakeSource, after: int | None) -> tuple[dict[str, int], int]:
    """({table: its last commit} changed after commit `after` and mergeable now, the newest seq).

    `after` None: the tables not merged up to their last commit (reads each one's Iceberg
    metadata; a tick with a cursor reads one commit record and nothing else)."""
    latest = lake.commit_log(source.name).latest()
    if latest is None:
        return {}, 0
    names = source.lake_tables()
    heads = {t: latest.heads.get(name, 0) for t, name in names.items() if name not in latest.snapshots}
    if after is None or after > latest.seq:
        current = lake.current(source.name)
        merged = {t: current.applied_seq(current.load(names[t])) for t, head in heads.items() if head}
        return {t: head for t, head in heads.items() if head > merged.get(t, 0)}, latest.seq
    return {t: head for t, head in heads.items() if head > after}, latest.seq


def build_merge_sensor(
    lake_config: LakeConfig, source: LakeSource, job: dg.UnresolvedAssetJobDefinition
) -> dg.SensorDefinition:
    """The sensor that requests `job` (the source's merge job) for each changed table."""

    @dg.sensor(
        name=merge_sensor_name(source.name),
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Requests a `{job.name}` run for each `{source.name}` table the lake's commit log shows "
            "changed since the last tick (one partition per table); reads the newest commit record "
            "only. Off by default: turn it on where Dagster, not `lakehouse stream`, merges."
        ),
    )
    def tables_changed(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        after = int(context.cursor) if context.cursor else None
        changed, seq = changed_tables(Lake(lake_config), source, after)
        waiting = _not_started_partitions(context.instance, job.name)
        run_requests = [
            dg.RunRequest(partition_key=table, run_key=f"{table}@{head}")
            for table, head in sorted(changed.items())
            if table not in waiting
        ]
        return dg.SensorResult(
            run_requests=run_requests,
            cursor=str(seq),
            skip_reason=None if run_requests else f"no table of {source.name} to merge after commit {seq}",
        )

    return tables_changed


def _not_started_partitions(instance: dg.DagsterInstance, job_name: str) -> set[str]:
    """Partitions with a run of `job_name` queued or starting (it will read the newest commit)."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=_NOT_STARTED))
    return {run.tags["dagster/partition"] for run in runs if "dagster/partition" in run.tags}
