"""Streams run outside Dagster are observed from the lake's commit log: position, time and lag."""

from __future__ import annotations

from typing import Any

import dagster as dg

from dagster_project.lake_metadata import COMMIT_SEQ
from dagster_project.stream_observations import SENSOR_NAME, stream_key
from pipelines.capture import requests
from tests.dagster.conftest import SOURCE, World


def _tick(world: World, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    sensor = world.defs.resolve_sensor_def(SENSOR_NAME)
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=world.defs))
    assert isinstance(result, dg.SensorResult) and not result.run_requests
    return result


def _observed(result: dg.SensorResult) -> dict[str, Any]:
    [event] = result.asset_events or []
    assert isinstance(event, dg.AssetObservation) and event.asset_key == stream_key(SOURCE)
    return {k: v.value for k, v in event.metadata.items()}


def test_the_stream_is_observed_at_its_last_commit(world: World) -> None:
    instance = dg.DagsterInstance.ephemeral()
    log = world.lake.commit_log(SOURCE)
    first = _tick(world, instance, None)
    meta = _observed(first)
    latest = log.latest()
    assert latest is not None
    assert meta[COMMIT_SEQ] == latest.seq
    assert meta["committed_at"] == latest.committed_at.timestamp()
    assert meta["position"].startswith("GTID ") and "{" not in meta["position"]
    assert meta["stream_running"] is False and meta["seconds_since_commit"] >= 0
    assert not _tick(world, instance, first.cursor).asset_events  # nothing moved: not observed again

    world.change(["beta"])
    requests.beat(world.lake.storage, SOURCE)  # what a running `lakehouse stream` writes
    second = _tick(world, instance, first.cursor)
    meta = _observed(second)
    assert meta[COMMIT_SEQ] == log.latest_seq() > latest.seq
    assert meta["stream_running"] is True
    assert meta["source_lag_seconds_at_commit"] >= 0
    # Positions, counts and times only: no row values, no credentials.
    text = repr(second.asset_events)
    assert "changed" not in text and world.config.sources[0].password.get_secret_value() not in text  # type: ignore[union-attr]
