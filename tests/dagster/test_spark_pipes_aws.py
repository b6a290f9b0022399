"""The Pipes protocol of a large table's merge launched on Glue or EMR Serverless, against the moto server.

A `current_state` partition run with `[lake.spark] launcher = "glue"` (or "emr_serverless") starts
a job run through `PipesGlueClient` (`PipesEMRServerlessClient`); moto validates the StartJobRun
request against botocore's model and keeps it. There is no Glue or EMR compute here, so the test
plays the worker as the service would start it: once the job run is accepted it reads the run
back from moto (GetJobRun), starts `pipes_job.main` with the run's arguments (Glue) or driver
environment (EMR Serverless), and the job's Pipes side reads its context from S3 and writes its
messages there. The merge itself is stubbed in this test only; tests/dagster/test_spark_pipes.py
runs the real one through Pipes. The Dagster side must pick the reported outcome up as the
partition's materialization.
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import dagster as dg
import pytest
from dagster_pipes import PipesContext

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.lake.spark import pipes_job
from connectors.lake.spark.pipes_job import MergeOutcome
from dagster_project import spark_pipes
from dagster_project.definitions import build_definitions
from dagster_project.resources import aws_secret_env_var
from dagster_project.table_assets import merge_job_name
from pipelines.config import parse_config
from tests.lake.helpers import PATIENTS, changes, snapshot_batch, stream_batch

ROLE = "arn:aws:iam::123456789012:role/lakehouse-merge"  # moto's account: no cross-account pass role


@dataclass
class Launch:
    """What the played worker saw: the job's Pipes params and the StartJobRun request moto kept."""

    request: dict[str, Any]
    params: dict[str, Any] | None = None


@pytest.fixture
def source() -> str:
    """Glue on the moto server is shared by every test: a database (source) of this test's own."""
    return f"pipes_{uuid.uuid4().hex[:8]}"


def _lake_world(source: str, s3_lake: Any, moto_endpoint: str) -> tuple[Lake, int]:
    """A table past the threshold (1 row) with an unmerged commit: (lake, the table's head)."""
    lake = Lake(
        LakeConfig(root=s3_lake.root, s3=s3_lake.options, catalog="glue", glue_endpoint_url=moto_endpoint)
    )
    writer = lake.writer(source)
    writer.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": f"p{i}"}) for i in range(3)])))
    lake.current(source).merge()
    writer.write(stream_batch(10, 20, changes([("U", 11, {"id": 1, "name": "pipes"})])))
    latest = lake.commit_log(source).latest()
    assert latest is not None
    return lake, latest.heads[PATIENTS.lake_name]


def _definitions(source: str, s3_lake: Any, moto_endpoint: str, spark: dict[str, Any]) -> dg.Definitions:
    config = parse_config(
        {
            "lake": {
                "root": s3_lake.root,
                "catalog": "glue",
                "glue_endpoint_url": moto_endpoint,
                "s3": {
                    "endpoint_url": moto_endpoint,
                    "access_key_id": "testing",
                    "secret_access_key": "testing",
                },
                "spark_merge_min_rows": 1,
                "spark": {"endpoint_url": moto_endpoint, "pipes_bucket": s3_lake.bucket, **spark},
            },
            "sources": [
                {
                    "kind": "postgres",
                    "name": source,
                    "host": "db.invalid",  # never opened: a merge reads the lake only
                    "user": "cdc",
                    "database": "clinic",
                    "schema": PATIENTS.schema,
                    "tables": [PATIENTS.name],
                }
            ],
        }
    )
    return build_definitions(config)


def _play_worker(
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    on_start: Callable[[dict[str, Any], Any], Launch],
    launches: list[Launch],
) -> None:
    """Once moto accepts a StartJobRun of `service`, run the job's Pipes side as the service would."""
    make = spark_pipes.PipesSparkMerger._aws_client

    def with_worker(self: spark_pipes.PipesSparkMerger, name: str) -> Any:
        client = make(self, name)
        if name == service:

            def started(parsed: dict[str, Any], **_: Any) -> None:
                if "Error" not in parsed:
                    launches.append(on_start(parsed, client))

            client.meta.events.register(f"after-call.{service}.StartJobRun", started)
            if service == "emr-serverless":
                client.meta.events.register(
                    "after-call.emr-serverless.GetApplication", _spark_as_aws_names_it
                )
        return client

    monkeypatch.setattr(spark_pipes.PipesSparkMerger, "_aws_client", with_worker)


def _spark_as_aws_names_it(parsed: dict[str, Any], **_: Any) -> None:
    """EMR Serverless takes the type as "SPARK" and answers GetApplication with "Spark" (which
    `PipesEMRServerlessClient` expects); moto echoes the request's "SPARK"."""
    application = parsed.get("application", {})
    if application.get("type") == "SPARK":
        application["type"] = "Spark"


def _run_job(launch: Launch) -> None:
    """`pipes_job.main` with the merge stubbed: report a merge up to the requested head."""

    def merge(params: Mapping[str, Any]) -> MergeOutcome:
        launch.params = dict(params)
        return MergeOutcome("merged", params["lake_table"], params["head"], upserts=1, rows=3, seconds=0.25)

    try:
        pipes_job.main(merge=merge)
    finally:
        # A job process opens one Pipes context; this test process plays several jobs.
        PipesContext._instance = None


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch, s3_lake: Any, moto_endpoint: str) -> None:
    """The job's identity and S3 endpoint, as a job role and botocore's endpoint setting give them."""
    monkeypatch.setenv(aws_secret_env_var("lake"), "testing")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)


def _assert_reported(
    result: dg.ExecuteInProcessResult, source: str, launcher: str, head: int
) -> dict[str, Any]:
    assert result.success
    [event] = result.asset_materializations_for_node(f"{source}__current_state")
    got = {key: value.value for key, value in event.metadata.items()}
    assert got["spark_launcher"] == launcher and got["spark_status"] == "merged"
    assert (got["spark_merged_seq"], got["spark_upserts"], got["spark_rows"]) == (head, 1, 3)
    assert got["spark_seconds"] == 0.25  # (the stub merged nothing: the table stays at its commit)
    return got


def _assert_no_secrets(params: dict[str, Any] | None, source: str, head: int) -> None:
    assert params is not None
    assert (params["source"], params["lake_table"], params["head"], params["session"]) == (
        source, PATIENTS.lake_name, head, "cluster",
    )  # fmt: skip
    assert "testing" not in json.dumps(params)  # the lake's keys stay with the launcher
    assert LakeConfig.model_validate(params["lake"]).spark.launcher in {"glue", "emr_serverless"}


def test_a_glue_job_run_carries_the_pipes_arguments_and_its_messages_come_back(
    s3_lake: Any,
    moto_endpoint: str,
    aws_client_kwargs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    worker_env: None,
    source: str,
) -> None:
    _, head = _lake_world(source, s3_lake, moto_endpoint)
    job_name = f"lakehouse-merge-{uuid.uuid4().hex[:8]}"
    glue = boto3.client("glue", **aws_client_kwargs)
    glue.create_job(
        Name=job_name,
        Role=ROLE,
        Command={
            "Name": "glueetl",
            "ScriptLocation": f"s3://{s3_lake.bucket}/jobs/pipes_job.py",
            "PythonVersion": "3",
        },
        GlueVersion="5.1",
        DefaultArguments={"--datalake-formats": "iceberg"},
    )

    def start(parsed: dict[str, Any], _: Any) -> Launch:
        # Glue starts the script with the run's arguments (default and run arguments) on its command line.
        run = glue.get_job_run(JobName=job_name, RunId=parsed["JobRunId"])["JobRun"]
        launch = Launch(request=run)
        argv = ["pipes_job.py", "--JOB_RUN_ID", run["Id"]]
        for name, value in run["Arguments"].items():
            argv += [name, value]
        with monkeypatch.context() as m:
            m.setattr("sys.argv", argv)
            _run_job(launch)
        return launch

    launches: list[Launch] = []
    _play_worker(monkeypatch, "glue", start, launches)
    defs = _definitions(source, s3_lake, moto_endpoint, {"launcher": "glue", "glue_job_name": job_name})

    result = defs.resolve_job_def(merge_job_name(source)).execute_in_process(
        partition_key=PATIENTS.name, instance=dg.DagsterInstance.ephemeral()
    )

    got = _assert_reported(result, source, "glue", head)
    assert got["AWS Glue Job Name"] == job_name
    [launch] = launches
    arguments = launch.request["Arguments"]
    assert {"--dagster-pipes-context", "--dagster-pipes-messages", "--datalake-formats"} <= set(arguments)
    _assert_no_secrets(launch.params, source, head)


def test_an_emr_serverless_job_run_carries_the_pipes_environment_and_its_messages_come_back(
    s3_lake: Any,
    moto_endpoint: str,
    aws_client_kwargs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    worker_env: None,
    source: str,
) -> None:
    _, head = _lake_world(source, s3_lake, moto_endpoint)
    emr = boto3.client("emr-serverless", **aws_client_kwargs)
    application = emr.create_application(name="lakehouse-merges", releaseLabel="emr-7.9.0", type="SPARK")
    entry_point = f"s3://{s3_lake.bucket}/jobs/pipes_job.py"

    def start(parsed: dict[str, Any], _: Any) -> Launch:
        run = emr.get_job_run(applicationId=parsed["applicationId"], jobRunId=parsed["jobRunId"])["jobRun"]
        launch = Launch(request=run)
        # EMR Serverless sets spark.emr-serverless.driverEnv.<NAME> as the driver's environment.
        prefix = "spark.emr-serverless.driverEnv."
        words = shlex.split(run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"])
        with monkeypatch.context() as m:
            for word in words:
                if word.startswith(prefix):
                    name, value = word[len(prefix) :].split("=", 1)
                    m.setenv(name, value)
            _run_job(launch)
        return launch

    launches: list[Launch] = []
    _play_worker(monkeypatch, "emr-serverless", start, launches)
    defs = _definitions(
        source,
        s3_lake,
        moto_endpoint,
        {
            "launcher": "emr_serverless",
            "emr_application_id": application["applicationId"],
            "execution_role_arn": ROLE,
            "entry_point": entry_point,
            "spark_submit_parameters": "--conf spark.sql.shuffle.partitions=64",
        },
    )

    result = defs.resolve_job_def(merge_job_name(source)).execute_in_process(
        partition_key=PATIENTS.name, instance=dg.DagsterInstance.ephemeral()
    )

    got = _assert_reported(result, source, "emr_serverless", head)
    assert got["AWS EMR Serverless Application ID"] == application["applicationId"]
    [launch] = launches
    submit = launch.request["jobDriver"]["sparkSubmit"]
    assert submit["entryPoint"] == entry_point and launch.request["executionRole"] == ROLE
    assert "--conf spark.sql.shuffle.partitions=64" in submit["sparkSubmitParameters"]
    assert "spark.emr-serverless.driverEnv.DAGSTER_PIPES_CONTEXT=" in submit["sparkSubmitParameters"]
    assert launch.request["tags"]["dagster/run-id"] == result.run_id  # Pipes' invocation tags
    _assert_no_secrets(launch.params, source, head)
