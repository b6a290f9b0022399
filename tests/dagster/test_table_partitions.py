"""Per-table partitions: a merge run of one table merges that table only; a second merge run of
it waits for the pool; a re-snapshot of table partitions goes through `lakehouse backfill`'s
request path (served in the run, or by a running stream)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_project import table_work
from dagster_project.assets import merge_pool, writer_pool
from dagster_project.definitions import build_definitions
from dagster_project.lake_metadata import lake_table_name
from dagster_project.merge_sensor import merge_sensor_name
from dagster_project.stream_observations import stream_key
from dagster_project.table_assets import (
    TABLE_TAG,
    by_table_group,
    current_state_key,
    merge_job_name,
    snapshot_key,
)
from pipelines.capture import requests
from pipelines.capture.runner import stream_configured
from pipelines.config import load_config
from tests.dagster.conftest import SOURCE, TABLES, World

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_configuration_has_table_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    config = load_config(REPO / "lakehouse.toml")
    defs = build_definitions(config)
    graph = defs.resolve_asset_graph()
    for source in config.sources:
        tables = [str(t) for t in source.tables]
        for key, pool in (
            (current_state_key(source.name), merge_pool),
            (snapshot_key(source.name), writer_pool),
        ):
            node = graph.get(key)
            assert node.partitions_def is not None
            assert node.partitions_def.get_partition_keys() == tables  # the config's tables, in order
            assert node.group_name == by_table_group(source.name)
            assert node.pools == {pool(source.name)}
        assert graph.get(snapshot_key(source.name)).backfill_policy == dg.BackfillPolicy.single_run()
        job = defs.resolve_job_def(merge_job_name(source.name))
        # The merge job merges only (not the duplicates check, which reads every key)...
        assert [node.name for node in job.nodes] == [f"{source.name}__current_state"]
        # ...and tags each run with its table, for a run-queue limit per table.
        assert job.get_tags_for_partition_key(tables[0], None)[TABLE_TAG] == f"{source.name}/{tables[0]}"
        assert defs.resolve_sensor_def(merge_sensor_name(source.name)).job_name == job.name
        # The stream: an external asset, observed, never materialized.
        stream = graph.get(stream_key(source.name))
        assert not stream.is_materializable and not stream.is_executable
    partitioned = dg.AssetCheckKey(current_state_key("aurora_mysql"), "no_duplicate_keys")
    assert graph.get_check_spec(partitioned).partitions_def is not None


def _merge_run(world: World, table: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = world.defs.resolve_job_def(merge_job_name(SOURCE))
    return job.execute_in_process(partition_key=table, instance=instance)


def test_a_partition_merge_merges_that_table_only(world: World) -> None:
    world.change(TABLES)
    before = {t: (world.applied(t), world.rows(t)) for t in TABLES}
    assert all(world.applied(t) < world.head(t) for t in TABLES)

    instance = dg.DagsterInstance.ephemeral()
    result = _merge_run(world, "beta", instance)
    assert result.success
    assert world.applied("beta") == world.head("beta")
    assert world.rows("beta").column("label").to_pylist() == ["changed", "two"]
    for t in ("alpha", "gamma"):  # not merged: their Iceberg tables are as they were
        assert (world.applied(t), world.rows(t)) == before[t]
    [materialization] = result.asset_materializations_for_node(f"{SOURCE}__current_state")
    assert materialization.partition == "beta"
    assert materialization.metadata["table_last_commit"].value == world.head("beta")
    assert materialization.metadata["upserts"].value == 1
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags[TABLE_TAG] == f"{SOURCE}/beta"

    # The partitioned check runs on its own, for one table.
    job = world.defs.resolve_implicit_job_def_def_for_assets([current_state_key(SOURCE)])
    assert job is not None
    check = dg.AssetCheckKey(current_state_key(SOURCE), "no_duplicate_keys")
    checked = job.get_subset(asset_selection=set(), asset_check_selection={check}).execute_in_process(
        partition_key="gamma", instance=instance
    )
    [evaluation] = checked.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.partition == "gamma"
    assert not checked.get_asset_materialization_events()


def test_a_second_merge_of_the_same_table_waits_for_the_pool(world: World, tmp_path: Path) -> None:
    """While a merge run of `beta` holds the source's merge pool, a second merge run of `beta`
    waits without merging; it merges once the slot is free."""
    world.change(["beta"])
    merged_before = world.applied("beta")
    pool = merge_pool(SOURCE)
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(
        str(home), overrides={"concurrency": {"pools": {"default_limit": 1}}}
    )
    storage = instance.event_log_storage
    storage.set_concurrency_slots(pool, 1)
    job = world.defs.resolve_job_def(merge_job_name(SOURCE))
    first = instance.create_run_for_job(
        job, status=dg.DagsterRunStatus.STARTED, tags=job.get_tags_for_partition_key("beta", None)
    )
    assert storage.claim_concurrency_slot(pool, first.run_id, f"{SOURCE}__current_state").is_claimed
    seen: dict[str, Any] = {}

    def waiting() -> list[str]:
        return [
            s.run_id for s in storage.get_concurrency_info(pool).pending_steps if s.assigned_timestamp is None
        ]

    def release_once_waiting() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not waiting():
            time.sleep(0.1)
        time.sleep(1.0)  # the waiting run keeps waiting
        seen["waiting"] = waiting()
        seen["merged_while_waiting"] = world.applied("beta")
        storage.free_concurrency_slots_for_run(first.run_id)

    releaser = threading.Thread(target=release_once_waiting)
    releaser.start()
    try:
        second = _merge_run(world, "beta", instance)
    finally:
        releaser.join()
    assert seen["waiting"] == [second.run_id]
    assert seen["merged_while_waiting"] == merged_before
    assert second.success and world.applied("beta") == world.head("beta") > merged_before


def test_a_resnapshot_is_a_backfill_of_table_partitions(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served in the run when no stream runs; handed to the stream runner when one does."""
    monkeypatch.setattr(table_work, "BACKFILL_WAIT_SECONDS", 120.0)  # not hours, if the stream fails
    defs = world.defs
    snapshot = defs.resolve_assets_def(snapshot_key(SOURCE))  # with its resources bound
    log = world.lake.commit_log(SOURCE)
    before = log.latest_seq()

    result = dg.materialize([snapshot], partition_key="gamma")
    assert result.success
    meta = result.asset_materializations_for_node(f"{SOURCE}__snapshot")[0].metadata
    assert meta["served_by"].value == "this run" and meta["tables"].value == "gamma"
    gamma = lake_table_name(world.schema, "gamma")
    after = [log.read(seq) for seq in range(before + 1, log.latest_seq() + 1)]
    assert after and {name for r in after for name in r.tables} == {gamma}
    assert any(r.tables[gamma].snapshot for r in after)
    assert not requests.pending(world.lake.storage, SOURCE)  # the request's outcome is recorded
    assert world.rows("gamma").num_rows == 2

    stop = threading.Event()
    stream = threading.Thread(
        target=stream_configured,
        args=(world.lake, world.config.sources[0]),
        kwargs={"stop": stop, "merge_every_seconds": 1.0},
    )
    stream.start()
    try:
        deadline = time.monotonic() + 60
        while not requests.runner_alive(world.lake.storage, SOURCE):
            assert time.monotonic() < deadline, "the stream did not start"
            time.sleep(0.2)
        handed = dg.materialize([snapshot], partition_key="alpha")
    finally:
        stop.set()
        stream.join(timeout=60)
    assert handed.success
    meta = handed.asset_materializations_for_node(f"{SOURCE}__snapshot")[0].metadata
    assert meta["served_by"].value == "stream runner" and meta["tables"].value == "alpha"
    seq = meta["lake_commit_seq"].value
    assert isinstance(seq, int)
    finished = log.read(seq)
    assert lake_table_name(world.schema, "alpha") in finished.tables
