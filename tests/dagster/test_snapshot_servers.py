"""Snapshot runs are bounded per database server, across the sources that read it.

Every run of a source's `<source>_snapshot_tables` job carries `lakehouse/db-server: host:port`;
the shipped dagster.yaml limits runs per value of that tag. Here a real instance's run queue
(`QueuedRunCoordinator`, the daemon's dequeue pass, a launcher that only records) holds snapshot
runs of sources on one server and of a source on another: the server's runs start `limit` at a
time, the other server's run does not wait for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from dagster_project.definitions import build_definitions
from dagster_project.resources import password_env_var
from dagster_project.table_assets import DB_SERVER_TAG, db_server, snapshot_job_name
from pipelines.config import parse_config

DAGSTER_YAML = Path(__file__).resolve().parents[2] / "deploy" / "dagster" / "k8s" / "dagster.yaml"


def _origin(job_name: str) -> RemoteJobOrigin:
    """Where a queued run's job comes from (the daemon hands it to the launcher, which here only records it)."""
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="dagster_project.definitions"), location_name="lakehouse"
    )
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job_name)


def _source(name: str, kind: str, host: str, port: int) -> dict[str, Any]:
    return {
        "kind": kind,
        "name": name,
        "host": host,
        "port": port,
        "user": "cdc",
        "database": "shop",
        "tables": ["orders"],
    }


def test_the_db_server_tag_is_host_and_port_and_dynamodb_has_none() -> None:
    config = parse_config(
        {
            "sources": [
                _source("a", "postgres", "DB-A.internal", 5432),
                _source("b", "mysql", "db-a.internal", 3306),
                {"kind": "dynamodb", "name": "d", "tables": ["events"]},
            ]
        }
    )
    assert [db_server(s) for s in config.sources] == ["db-a.internal:5432", "db-a.internal:3306", None]
    defs = build_definitions(config)
    assert defs.resolve_job_def(snapshot_job_name("a")).run_tags[DB_SERVER_TAG] == "db-a.internal:5432"
    assert DB_SERVER_TAG not in defs.resolve_job_def(snapshot_job_name("d")).run_tags


def test_snapshot_runs_of_sources_on_one_server_queue_while_another_servers_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = yaml.safe_load(DAGSTER_YAML.read_text())["concurrency"]["runs"]["tag_concurrency_limits"]
    [limit] = [rule["limit"] for rule in shipped if rule["key"] == DB_SERVER_TAG]
    same = [f"shop_{i}" for i in range(limit + 1)]  # one more source on db-a than it may serve
    config = parse_config(
        {
            "sources": [
                *(_source(name, "postgres", "db-a.internal", 5432) for name in same),
                _source("other", "postgres", "db-b.internal", 5432),
            ]
        }
    )
    for source in config.sources:  # resolved when a run is created; never used (no run executes)
        monkeypatch.setenv(password_env_var(source.name), "unused")
    defs = build_definitions(config)
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = dg.DagsterInstance.local_temp(
        str(home),
        overrides={
            "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
            "run_launcher": {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"},
            "concurrency": {"runs": {"tag_concurrency_limits": shipped}},
        },
    )

    def queue(source: str) -> str:
        """A queued run of the source's snapshot job, tagged as a launch tags it (job, partition)."""
        job = defs.resolve_job_def(snapshot_job_name(source))
        tags = {**job.run_tags, **job.get_tags_for_partition_key("orders", None)}
        run = instance.create_run_for_job(
            job, status=dg.DagsterRunStatus.QUEUED, tags=tags, remote_job_origin=_origin(job.name)
        )
        return run.run_id

    runs = {source: queue(source) for source in [*same, "other"]}
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)

    def dequeue() -> set[str]:
        """One pass of the daemon; the sources whose run has been launched by now."""
        with create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as workspace:
            list(daemon.run_iteration(workspace))
        launched = instance.run_launcher.queue()  # type: ignore[attr-defined]
        ids = {run.run_id for run in launched}
        return {source for source, run_id in runs.items() if run_id in ids}

    started = dequeue()
    assert "other" in started  # another server: not held up
    assert len(started & set(same)) == limit  # db-a: `limit` runs at once, the rest queued
    [waiting] = set(same) - started
    assert instance.get_run_by_id(runs[waiting]).status == dg.DagsterRunStatus.QUEUED  # type: ignore[union-attr]
    assert dequeue() == started  # still running: still waiting

    finished = sorted(started & set(same))[0]
    instance.report_dagster_event(
        DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name=snapshot_job_name(finished)),
        run_id=runs[finished],
    )
    assert dequeue() == started | {waiting}
