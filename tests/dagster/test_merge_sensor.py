"""The commit-log sensor requests a merge run for each table that changed, and only for those."""

from __future__ import annotations

import dagster as dg

from dagster_project.merge_sensor import merge_sensor_name
from dagster_project.table_assets import TABLE_TAG, merge_job_name
from tests.dagster.conftest import SOURCE, World


def _tick(world: World, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    sensor = world.defs.resolve_sensor_def(merge_sensor_name(SOURCE))
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=world.defs)
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_the_sensor_requests_merges_of_the_changed_tables_only(world: World) -> None:
    instance = dg.DagsterInstance.ephemeral()
    # First tick, no cursor: every table is merged up to its last commit, so nothing to do.
    first = _tick(world, instance, None)
    assert not first.run_requests
    seq = world.lake.commit_log(SOURCE).latest_seq()
    assert first.cursor == str(seq)

    world.change(["alpha", "gamma"])
    second = _tick(world, instance, first.cursor)
    requests = second.run_requests or []
    assert sorted(r.partition_key for r in requests) == ["alpha", "gamma"]  # type: ignore[type-var]
    assert int(second.cursor or 0) == world.lake.commit_log(SOURCE).latest_seq() > seq
    assert {r.run_key for r in requests} == {f"alpha@{world.head('alpha')}", f"gamma@{world.head('gamma')}"}
    # Resolved against the merge job, as the sensor daemon does: each run is tagged with its table.
    job = world.defs.resolve_job_def(merge_job_name(SOURCE))
    resolved = requests[0].with_resolved_tags_and_config(job, [], None)
    assert resolved.tags[TABLE_TAG] == f"{SOURCE}/{requests[0].partition_key}"

    assert not _tick(world, instance, second.cursor).run_requests  # no new commits: nothing

    # A table whose merge run has not started yet is left to that run (it reads the newest commit).
    instance.create_run_for_job(
        job, status=dg.DagsterRunStatus.NOT_STARTED, tags=job.get_tags_for_partition_key("alpha", None)
    )
    world.change(["alpha", "beta"])
    third = _tick(world, instance, second.cursor)
    assert [r.partition_key for r in third.run_requests or []] == ["beta"]


def test_a_first_tick_requests_the_tables_not_merged_yet(world: World) -> None:
    """No cursor (a new or reset sensor): the tables whose Iceberg table lags their last commit."""
    world.change(["beta"])
    result = _tick(world, dg.DagsterInstance.ephemeral(), None)
    assert [r.partition_key for r in result.run_requests or []] == ["beta"]
    assert result.cursor == str(world.lake.commit_log(SOURCE).latest_seq())
