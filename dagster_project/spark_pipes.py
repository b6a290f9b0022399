"""A large table's Spark merge launched through Dagster Pipes, as the run's `CurrentState.large_tables`.

`CurrentState.merge_table` keeps choosing the engine by size, so a `current_state` partition run
merges small tables in its own process and hands large ones to `PipesSparkMerger.merge`, which
launches `connectors/lake/spark/pipes_job.py` with the table, its head commit and the lake's
settings (no secrets) and turns the job's reported materialization back into a `MergeResult`:

* `local_pipes`: `PipesSubprocessClient`, the job in a subprocess of the run with Spark
  `spark_master` (local[2]); Pipes context and messages in temporary files. The lake's explicit
  keys, if any, go to the subprocess as the standard AWS environment variables, never as params.
* `glue`: `PipesGlueClient` starts a run of `glue_job_name` (Glue 5.1), the Pipes context and
  messages in `pipes_bucket` (`PipesS3ContextInjector`, `PipesS3MessageReader`); Pipes' bootstrap
  parameters are the job run's arguments.
* `emr_serverless`: `PipesEMRServerlessClient` starts a job run of `entry_point` in
  `emr_application_id` as `execution_role_arn`, context and messages in `pipes_bucket` as for
  Glue; the bootstrap parameters are driver environment variables (``--conf
  spark.emr-serverless.driverEnv.*``). The client warns that it reads CloudWatch only: messages
  come from S3 here, which it does not need to know.

The launch clients talk to Glue jobs, EMR Serverless and the Pipes bucket (this module is Dagster
Pipes' boundary, as the catalog publisher is Glue's catalog boundary). A job that finds the table
unsupported by Spark (`time` columns) raises `MergerUnsupportedError` here, so the table is merged
in-process; a job that lost twice to another merger raises `MergeConflictError`.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import dagster as dg

import connectors
from connectors.aws import aws_session, make_client
from connectors.lake.catalog import glue_region
from connectors.lake.current import CurrentState, MergeConflictError, MergeResult, MergerUnsupportedError
from connectors.lake.lake import Lake
from connectors.lake.s3_storage import S3Access
from connectors.lake.spark import pipes_job
from connectors.lake.spark.pipes_job import MergeOutcome, SessionKind, job_params

# Pipes' S3 message reader polls for the job's message chunks this often (a GET each time).
MESSAGE_POLL_SECONDS = 2.0


class PipesSparkMerger:
    """`CurrentState.large_tables` of one Dagster run: each merge is a Spark job through Pipes."""

    def __init__(self, context: dg.AssetExecutionContext, lake: Lake) -> None:
        if lake.config.spark_merge_min_rows is None:
            raise ValueError("lake.spark_merge_min_rows is not set")
        self.min_rows = lake.config.spark_merge_min_rows
        self.launch = lake.config.spark
        self._context, self._lake = context, lake
        self.reported: dict[str, Any] = {}  # the last job's metadata, for the run's materialization

    def merge(self, current: CurrentState, lake_table: str, head: int) -> MergeResult | None:
        if head <= current.applied_seq(current.load(lake_table)):
            return None  # merged already: no job (a Glue or EMR run is billed for a minute at least)
        launcher = self.launch.launcher
        session: SessionKind = "local" if launcher == "local_pipes" else "cluster"
        params = job_params(self._lake.config, current.source, lake_table, head, session)
        self._context.log.info(f"{lake_table}: Spark merge up to commit {head} through Pipes ({launcher})")
        if launcher == "local_pipes":
            invocation = self._run_subprocess(params)
        elif launcher == "glue":
            invocation = self._run_glue(params)
        elif launcher == "emr_serverless":
            invocation = self._run_emr_serverless(params, current.source, lake_table)
        else:
            raise ValueError(f"lake.spark.launcher {launcher!r} launches nothing through Pipes")
        # The job's metadata, and the launcher's own (Glue or EMR job run id, console URL).
        launched = dict(invocation.metadata)
        reported = invocation.get_materialize_result().metadata or {}
        metadata = {k: getattr(v, "value", v) for k, v in reported.items() if k not in launched}
        outcome = MergeOutcome.of(metadata)
        self.reported = {
            "spark_launcher": launcher,
            **{f"spark_{k}": v for k, v in metadata.items()},
            **launched,
        }
        if outcome.status == "unsupported":
            raise MergerUnsupportedError(outcome.reason)
        if outcome.status == "conflict":
            raise MergeConflictError(outcome.reason)
        return outcome.result()

    # -- launchers -----------------------------------------------------------------------------

    def _run_subprocess(self, params: dict[str, Any]) -> dg.PipesClientCompletedInvocation:
        script = self.launch.entry_point
        command = [sys.executable, script] if script else [sys.executable, "-m", pipes_job.__name__]
        return dg.PipesSubprocessClient(env=self._subprocess_env()).run(
            context=self._context, command=command, extras=params
        )

    def _subprocess_env(self) -> dict[str, str]:
        """This process's code first on the path; the lake's explicit keys as the AWS chain's
        variables; the rest of the environment as is."""
        code = str(Path(connectors.__file__).resolve().parent.parent)
        env = {"PYTHONPATH": os.pathsep.join(p for p in (code, os.environ.get("PYTHONPATH")) if p)}
        s3 = self._lake.config.s3
        if not self._lake.storage.is_s3 or s3.secret_access_key is None or s3.access_key_id is None:
            return env
        env |= {
            "AWS_ACCESS_KEY_ID": s3.access_key_id,
            "AWS_SECRET_ACCESS_KEY": s3.secret_access_key.get_secret_value(),
        }
        if s3.session_token is not None:
            env["AWS_SESSION_TOKEN"] = s3.session_token.get_secret_value()
        elif "AWS_SESSION_TOKEN" in os.environ:
            env["AWS_SESSION_TOKEN"] = ""  # not another identity's token beside these keys
        return env

    def _run_glue(self, params: dict[str, Any]) -> dg.PipesClientCompletedInvocation:
        from dagster_aws.pipes import PipesGlueClient

        client = PipesGlueClient(
            client=self._aws_client("glue"),
            context_injector=self._context_injector(),
            message_reader=self._message_reader(),
        )
        return client.run(
            context=self._context,
            start_job_run_params={"JobName": str(self.launch.glue_job_name), "Arguments": {}},
            extras=params,
        )

    def _run_emr_serverless(
        self, params: dict[str, Any], source: str, lake_table: str
    ) -> dg.PipesClientCompletedInvocation:
        from dagster_aws.pipes import PipesEMRServerlessClient

        client = PipesEMRServerlessClient(
            client=self._aws_client("emr-serverless"),
            context_injector=self._context_injector(),
            message_reader=self._message_reader(),
        )
        return client.run(
            context=self._context,
            start_job_run_params={
                "applicationId": str(self.launch.emr_application_id),
                "executionRoleArn": str(self.launch.execution_role_arn),
                "clientToken": uuid.uuid4().hex,
                "name": f"lakehouse-merge {source}.{lake_table}"[:256],
                "jobDriver": {
                    "sparkSubmit": {
                        "entryPoint": str(self.launch.entry_point),
                        "sparkSubmitParameters": self.launch.spark_submit_parameters,
                    }
                },
            },
            extras=params,
        )

    def _aws_client(self, service: str) -> Any:
        """A client of the launcher's service, as the lake's identity, in the job's region."""
        config = self._lake.config
        region = self.launch.region or glue_region(config, self._lake.storage)
        return make_client(
            aws_session(config.s3, region),
            service,
            region=region,
            endpoint_url=self.launch.endpoint_url,
            retries=config.s3.retries,
        )

    def _pipes_s3(self) -> Any:
        return S3Access(str(self.launch.pipes_bucket), self._lake.config.s3).client

    def _context_injector(self) -> Any:
        from dagster_aws.pipes import PipesS3ContextInjector

        return PipesS3ContextInjector(
            bucket=str(self.launch.pipes_bucket), client=self._pipes_s3(), key_prefix=self.launch.pipes_prefix
        )

    def _message_reader(self) -> Any:
        from dagster_aws.pipes import PipesS3MessageReader

        return PipesS3MessageReader(
            bucket=str(self.launch.pipes_bucket), client=self._pipes_s3(), interval=MESSAGE_POLL_SECONDS
        )
