"""One writer per source in Dagster: every asset that captures a source is in its writer pool,
every asset that merges its current state in its merge pool.

With each pool's limit at 1 (`concurrency: pools: default_limit: 1` in dagster.yaml, as the README
says), a second run's step that captures (or merges) the same source waits until the first one's
is done; a capture never waits for a merge.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from dagster_project.assets import merge_pool, writer_pool
from dagster_project.definitions import build_definitions
from dagster_project.resources import aws_secret_env_var, password_env_var
from dagster_project.search_assets import SYNONYMS_KEY
from dagster_project.table_assets import current_state_key, snapshot_key
from pipelines.config import load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def test_every_asset_that_writes_a_source_is_in_that_sources_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    config = load_config(REPO / "lakehouse.toml")
    defs = build_definitions(config)
    graph = defs.resolve_asset_graph()
    sources = {s.name for s in config.sources}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.group_name in sources and key.path[-1].endswith("_changelog"):
            assert node.pools == {writer_pool(node.group_name)}, key
        elif node.group_name in sources:  # current-state tables: maintenance, apart from capture
            assert node.pools == {merge_pool(node.group_name)}, key
        elif key in {snapshot_key(s) for s in sources}:  # a re-snapshot served in a run writes
            assert node.pools == {writer_pool(key.path[0])}, key
        elif key in {current_state_key(s) for s in sources}:  # a table partition's merge
            assert node.pools == {merge_pool(key.path[0])}, key
        elif key == SYNONYMS_KEY:  # merges the synonyms table's current state first
            assert node.pools == {merge_pool(config.search.synonyms.source)}
        else:  # publishing and search read the lake only
            assert not node.pools, key
    # As Dagster records them on a run (what its run queue and executors enforce): each source's
    # pool once, and none for the reconciliation, which only reads.
    for s in sources:  # a run's config names its secrets; nothing connects here
        monkeypatch.setenv(password_env_var(s), "unused")
        monkeypatch.setenv(aws_secret_env_var(s), "unused")
    instance = dg.DagsterInstance.ephemeral()
    run = instance.create_run_for_job(defs.resolve_job_def("micro_batches"))
    assert run.run_op_concurrency is not None
    assert run.run_op_concurrency.all_pools == {p(s) for s in sources for p in (writer_pool, merge_pool)}
    assert instance.create_run_for_job(defs.resolve_job_def("reconcile_sources")).run_op_concurrency is None


def test_a_second_writer_of_the_same_source_waits_for_the_pool(
    mysql_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of `micro_batches` while another run holds the source's pool slot: its change-log
    step waits, committing nothing, until the slot is free; then it runs."""
    conn = mysql_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(20))")
        cur.execute("INSERT INTO items VALUES (1, 'a'), (2, 'b')")
    conn.commit()
    name = "dg_pool"
    source = {
        "kind": "mysql",
        "name": name,
        "host": mysql_db.host,
        "port": mysql_db.port,
        "user": mysql_db.cdc_user,
        "database": mysql_db.name,
        "tables": ["items"],
    }
    config = parse_config({"lake": {"root": str(tmp_path / "lake")}, "sources": [source]})
    monkeypatch.setenv(password_env_var(name), mysql_db.cdc_password.get_secret_value())
    defs = build_definitions(config)
    pool = writer_pool(name)
    # The README's dagster.yaml setting, on a persistent (SQLite) instance.
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(
        str(home), overrides={"concurrency": {"pools": {"default_limit": 1}}}
    )
    storage = instance.event_log_storage
    storage.set_concurrency_slots(pool, 1)
    # Another run is writing this source: it holds the pool's only slot.
    assert storage.claim_concurrency_slot(pool, "other-run", "other_writer").is_claimed
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    seen: dict[str, Any] = {}

    def waiting() -> list[tuple[str, str]]:
        """(run id, step) of each step that waits for a slot of the pool."""
        steps = storage.get_concurrency_info(pool).pending_steps
        return [(step.run_id, step.step_key) for step in steps if step.assigned_timestamp is None]

    def release_once_waiting() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if waiting():
                time.sleep(2.0)  # the waiting run keeps waiting
                seen["waiting"] = waiting()
                seen["commits_while_waiting"] = lake.commit_log(name).latest_seq()
                break
            time.sleep(0.1)
        storage.free_concurrency_slots_for_run("other-run")

    releaser = threading.Thread(target=release_once_waiting)
    releaser.start()
    try:
        result = defs.resolve_job_def("micro_batches").execute_in_process(instance=instance)
    finally:
        releaser.join()
    assert seen["waiting"] == [(result.run_id, "dg_pool_changelog")]
    assert not seen["commits_while_waiting"]
    assert result.success and lake.commit_log(name).latest_seq()
    assert storage.get_concurrency_info(pool).active_slot_count == 0  # the run gave its slot back
