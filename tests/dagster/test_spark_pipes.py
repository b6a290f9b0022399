"""A large table's `current_state` partition merged by the Spark job through Dagster Pipes, in a subprocess.

`[lake.spark] launcher = "local_pipes"`: the partition run launches
`connectors/lake/spark/pipes_job.py` with `PipesSubprocessClient`, which merges with Spark
`local[2]` against the same catalog (SQLite) and storage (moto S3) and reports what it did. The
change log is the Spark merge tests' PostgreSQL ``typed`` world (every type, deletes, repeated
updates, unsent TOAST values), written to two lakes: one merged in-process, one through Pipes.
One Spark JVM in all: the replay is answered without a job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions
from dagster_project.resources import aws_secret_env_var
from dagster_project.table_assets import merge_job_name
from pipelines.config import parse_config
from tests.lake.helpers import snapshot_batch, stream_batch
from tests.lake.test_spark_merge import (
    PG,
    SOURCE,
    assert_same_state,
    snapshot_rows,
    stream_changes,
    summary,
    two_lakes,
)

pytestmark = pytest.mark.spark


def _materialized(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [event] = result.asset_materializations_for_node(f"{SOURCE}__current_state")
    return {key: value.value for key, value in event.metadata.items()}


def test_a_large_tables_partition_is_merged_by_the_pipes_job_as_in_process(
    stack: Any, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devstack.spark import install

    jars = install(stack).jars
    ref, lake = two_lakes(tmp_path, request, on_s3=True)
    for each in (ref, lake):
        writer = each.writer(SOURCE)
        writer.write(snapshot_batch(16, snapshot_rows(PG, 16, range(1, 10)), tables=(PG,)))
        each.current(SOURCE).merge()  # 9 rows, merged in-process: now past the threshold
        writer.write(stream_batch(16, 64, stream_changes(PG, 32)))
    [want] = ref.current(SOURCE).merge()

    s3 = lake.config.s3
    assert s3.secret_access_key is not None
    config = parse_config(
        {
            "lake": {
                "root": lake.config.root,
                "catalog_uri": lake.config.catalog_uri,
                "s3": {
                    "endpoint_url": s3.endpoint_url,
                    "access_key_id": s3.access_key_id,
                    "secret_access_key": s3.secret_access_key.get_secret_value(),
                },
                "spark_merge_min_rows": 5,
                "spark_jars_dir": str(jars[0].parent),
                "spark": {"launcher": "local_pipes"},
            },
            "sources": [
                {
                    "kind": "postgres",
                    "name": SOURCE,
                    "host": "db.invalid",  # never opened: a merge reads the lake only
                    "user": "cdc",
                    "database": "shop",
                    "tables": ["typed"],
                }
            ],
        }
    )
    # The lake's secret reaches the run as an EnvVar, and the job only as AWS_SECRET_ACCESS_KEY.
    monkeypatch.setenv(aws_secret_env_var("lake"), s3.secret_access_key.get_secret_value())
    job = build_definitions(config).resolve_job_def(merge_job_name(SOURCE))
    instance = dg.DagsterInstance.ephemeral()

    result = job.execute_in_process(partition_key="typed", instance=instance)

    assert result.success
    got = _materialized(result)
    assert got["spark_launcher"] == "local_pipes" and got["spark_status"] == "merged"
    assert got["spark_merged_seq"] == want.commit_seq == got["lake_commit_seq"]
    assert (got["spark_upserts"], got["spark_deletes"], got["spark_rows"]) == (
        want.upserts,
        want.deletes,
        want.rows,
    )
    assert got["spark_seconds"] > 0
    assert_same_state(ref, lake, [PG])
    assert summary(lake, PG.lake_name)["engine-name"] == "spark"
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(f"merging {SOURCE}.{PG.lake_name} up to commit {want.commit_seq}" in m for m in logs)

    # Replayed: merged already, so no job is launched and nothing is committed.
    again = job.execute_in_process(partition_key="typed", instance=instance)
    assert again.success and "spark_status" not in _materialized(again)
    assert summary(lake, PG.lake_name)["engine-name"] == "spark"
