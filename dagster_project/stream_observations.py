"""Long-running streams, observed: each source's `lakehouse stream` as an external asset.

Streams run outside Dagster, as services (`lakehouse stream --source X`, one per source), as
Dagster advises for long-running processes: Dagster observes them rather than runs them. Each
source has an external asset `streams/<source>` (Dagster never materializes it), and the
`stream_positions` sensor records an observation of it whenever the source's commit log moved
or its stream started or stopped: the last commit seq, the source position it reached (as short
text), when it was committed, how far behind the source it was then, and its age now.

All of it comes from the lake (the commit log's newest record and the stream's heartbeat file,
`pipelines.capture.requests`); the sensor never connects to a source database. Metadata holds
positions, counts and times only, never a row's values or a credential.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import dagster as dg

from connectors.lake.commits import CommitRecord
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from dagster_project.lake_events import LakeSource
from dagster_project.lake_metadata import COMMIT_SEQ, describe_position
from pipelines.capture import requests

SENSOR_NAME = "stream_positions"
GROUP = "streams"


def stream_key(source: str) -> dg.AssetKey:
    """`streams/<source>`: the lineage graph labels it with the source's name."""
    return dg.AssetKey([GROUP, source])


def build_stream_specs(sources: Sequence[LakeSource]) -> list[dg.AssetSpec]:
    """One external asset per source's stream."""
    return [
        dg.AssetSpec(
            stream_key(s.name),
            group_name=GROUP,
            kinds={"stream"},
            description=(
                f"The `{s.name}` stream, run outside Dagster (`lakehouse stream --source {s.name}`, "
                "a one-replica service). Observed by the `stream_positions` sensor from the lake's "
                "commit log: last commit, source position, commit time and lag."
            ),
        )
        for s in sources
    ]


def stream_observation(
    source: str, latest: CommitRecord, running: bool, now: dt.datetime
) -> dg.AssetObservation:
    """The observation of a source's stream at `latest`, its newest commit."""
    metadata: dict[str, Any] = {
        COMMIT_SEQ: latest.seq,
        "position": describe_position(latest.end),
        "committed_at": dg.MetadataValue.timestamp(latest.committed_at),
        "seconds_since_commit": round(max((now - latest.committed_at).total_seconds(), 0.0), 1),
        "stream_running": running,
        "commit_kind": latest.kind,
        "snapshots_under_way": len(latest.snapshots),
    }
    if latest.source_lag_seconds is not None:
        # How far behind the source the commit's data was when it was committed.
        metadata["source_lag_seconds_at_commit"] = round(latest.source_lag_seconds, 1)
    return dg.AssetObservation(asset_key=stream_key(source), metadata=metadata)


def build_stream_sensor(lake_config: LakeConfig, sources: Sequence[LakeSource]) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Observes each source's stream (`streams/<source>`) from the lake's commit log: last "
            "commit seq, source position, commit time and lag. Reads the lake only; launches no runs."
        ),
    )
    def stream_positions(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        lake = Lake(lake_config)
        # Per source, the (commit seq, stream running) last observed: an unchanged one is not
        # observed again, so an idle source adds nothing to the event log.
        seen: dict[str, list[Any]] = json.loads(context.cursor) if context.cursor else {}
        now = dt.datetime.now(dt.UTC)
        events: list[dg.AssetObservation] = []
        for source in sources:
            latest = lake.commit_log(source.name).latest()
            if latest is None:
                continue
            running = requests.runner_alive(lake.storage, source.name)
            if seen.get(source.name) == [latest.seq, running]:
                continue
            seen[source.name] = [latest.seq, running]
            events.append(stream_observation(source.name, latest, running, now))
        if not events:
            return dg.SensorResult(skip_reason="no stream moved since the last tick")
        return dg.SensorResult(asset_events=events, cursor=json.dumps(seen, sort_keys=True))

    return stream_positions
