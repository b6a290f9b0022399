"""The Spark merge of one table as a job launched through Dagster Pipes: Glue 5.1, EMR Serverless, or a subprocess.

Run as a script (``spark-submit pipes_job.py``, a Glue job's script, or ``python pipes_job.py``
under `PipesSubprocessClient`). Dagster hands it, as the Pipes session's extras (`job_params`),
the source, the lake table, the head commit to merge up to and the lake's settings without
secrets; S3 and the catalog are reached with the job's own identity (the Glue job's or EMR job
run's IAM role; locally the environment the launcher passes). It runs `merge_with_spark`, the
merge the in-process path would run, and reports one materialization: what the merge did
(`MergeOutcome`), in `metadata` Dagster's `current_state` partition turns back into a
`MergeResult`.

Pipes parameters arrive as ``--dagster-pipes-*`` arguments (Glue job arguments) or environment
variables (EMR Serverless ``spark.emr-serverless.driverEnv.*``, a subprocess); the context and
messages are S3 objects when their parameters name a bucket (Glue, EMR Serverless), else files.

What the job's Python needs (docs/decisions.md §21): this package and its runtime dependencies
(pyiceberg, pyarrow, pydantic, sqlglot, boto3) and ``dagster-pipes`` (pure Python, no other
dependency); pyspark is the cluster's. The Iceberg runtime and AWS bundle jars are the cluster's
too (Glue ``--datalake-formats iceberg``; EMR 7.x ``--conf spark.jars=...iceberg...``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from dagster_pipes import (
    PipesCliArgsParamsLoader,
    PipesContext,
    PipesContextData,
    PipesContextLoader,
    PipesDefaultContextLoader,
    PipesDefaultMessageWriter,
    PipesEnvVarParamsLoader,
    PipesParams,
    PipesParamsLoader,
    PipesS3ContextLoader,
    PipesS3MessageWriter,
    open_dagster_pipes,
)

from connectors.lake.config import LakeConfig
from connectors.lake.current import MergeConflictError, MergeResult, MergerUnsupportedError
from connectors.lake.lake import Lake

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

SessionKind = Literal["local", "cluster"]
# The lake's S3 secrets never travel as Pipes parameters (they land in S3 objects and job
# arguments): the job uses its own identity.
_SECRET_FIELDS = {"access_key_id", "secret_access_key", "session_token"}


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    """What one job did: `status` is 'merged', 'up_to_date', 'unsupported' (merge in-process) or
    'conflict' (another merger committed first, twice); then the `MergeResult` fields."""

    status: str
    lake_table: str
    merged_seq: int
    upserts: int = 0
    deletes: int = 0
    rows: int = 0
    replaced: bool = False
    seconds: float = 0.0
    reason: str = ""

    def metadata(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, metadata: Mapping[str, Any]) -> MergeOutcome:
        return cls(**{name: metadata[name] for name in cls.__dataclass_fields__ if name in metadata})

    def result(self) -> MergeResult | None:
        """The `MergeResult` the in-process merge would have returned (None: nothing to merge)."""
        if self.status != "merged":
            return None
        return MergeResult(
            self.lake_table, self.merged_seq, self.upserts, self.deletes, self.rows, self.replaced
        )


def job_params(
    config: LakeConfig, source: str, lake_table: str, head: int, session: SessionKind
) -> dict[str, Any]:
    """The job's Pipes extras: what to merge, and the lake's settings without its S3 secrets."""
    lake = config.model_dump(mode="json", exclude={"s3": _SECRET_FIELDS})
    return {"source": source, "lake_table": lake_table, "head": head, "session": session, "lake": lake}


def spark_session(lake: Lake, kind: SessionKind) -> SparkSession:
    """A local session (`spark_master`, the jars of `spark_jars_dir`, the lake's keys), or the
    cluster's (Glue, EMR Serverless) with the lake's catalog and the job role's credentials."""
    if kind == "local":
        from pathlib import Path

        from connectors.lake.spark.session import local_spark_session

        jars = sorted(Path(str(lake.config.spark_jars_dir)).glob("*.jar"))
        return local_spark_session(lake, jars, master=lake.config.spark_master)
    from pyspark.sql import SparkSession

    from connectors.lake.spark.session import spark_conf

    conf = spark_conf(lake, static_credentials=False)
    builder = SparkSession.builder.appName("lakehouse-merge")
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # A session the platform started first ignored the builder: catalogs are session settings.
    for key, value in conf.items():
        if key.startswith("spark.sql.catalog."):
            spark.conf.set(key, value)
    return spark


def merge_table_job(
    params: Mapping[str, Any], spark_for: Callable[[Lake], Any] | None = None
) -> MergeOutcome:
    """Merge one table with Spark as `params` (`job_params`) say; the outcome to report.

    As `table_work.merge_one_table`: a merge that loses to another merger's commit is run once
    more, from that commit.
    """
    from connectors.lake.spark.merge import merge_with_spark

    lake = Lake(LakeConfig.model_validate(params["lake"]))
    source, lake_table, head = str(params["source"]), str(params["lake_table"]), int(params["head"])
    current = lake.current(source)
    started = time.monotonic()

    def outcome(status: str, result: MergeResult | None = None, reason: str = "") -> MergeOutcome:
        seconds = round(time.monotonic() - started, 3)
        if result is None:
            merged = current.applied_seq(current.load(lake_table))
            return MergeOutcome(status, lake_table, merged, seconds=seconds, reason=reason)
        return MergeOutcome(
            status, lake_table, result.commit_seq, result.upserts, result.deletes, result.rows,
            result.replaced, seconds,
        )  # fmt: skip

    if head <= current.applied_seq(current.load(lake_table)):
        return outcome("up_to_date")  # a replayed job: no Spark session
    spark = (spark_for or (lambda lk: spark_session(lk, params["session"])))(lake)
    try:
        for attempt in (1, 2):
            try:
                result = merge_with_spark(spark, current, lake_table, head)
            except MergeConflictError as e:
                if attempt == 2:
                    return outcome("conflict", reason=str(e)[:500])
                log.info("%s: %s; merging again from the other merger's commit", lake_table, e)
                continue
            return outcome("merged", result) if result is not None else outcome("up_to_date")
    except MergerUnsupportedError as e:
        return outcome("unsupported", reason=str(e)[:500])
    raise AssertionError("unreachable")


# -- Dagster Pipes --------------------------------------------------------------------------------


def _params_loader() -> PipesParamsLoader:
    """Glue passes job arguments on the command line; EMR Serverless and a subprocess, the environment."""
    cli = PipesCliArgsParamsLoader()
    return cli if cli.is_dagster_pipes_process() else PipesEnvVarParamsLoader()


def _s3_client(bucket: str) -> Any:
    """An S3 client for the Pipes bucket: the job's identity, the bucket's region, botocore's
    endpoint settings (``AWS_ENDPOINT_URL_S3``)."""
    from connectors.lake.s3_storage import S3Access
    from connectors.lake.storage import S3Options

    return S3Access(bucket, S3Options()).client


class _ContextLoader(PipesContextLoader):
    """The Pipes context from S3 when its parameters name a bucket, else Pipes' default (a file)."""

    @contextmanager
    def load_context(self, params: PipesParams) -> Iterator[PipesContextData]:
        loader: PipesContextLoader = (
            PipesS3ContextLoader(_s3_client(str(params["bucket"])))
            if "bucket" in params
            else PipesDefaultContextLoader()
        )
        with loader.load_context(params) as data:
            yield data


def open_pipes() -> PipesContext:
    """The Pipes context of this job, over S3 or files as the launcher's parameters say."""
    params_loader = _params_loader()
    messages = params_loader.load_messages_params()
    writer: PipesS3MessageWriter | PipesDefaultMessageWriter = (
        # Chunks every second: a merge of seconds reports before the launcher stops reading.
        PipesS3MessageWriter(_s3_client(str(messages["bucket"])), interval=1.0)
        if "bucket" in messages
        else PipesDefaultMessageWriter()
    )
    return open_dagster_pipes(
        params_loader=params_loader, context_loader=_ContextLoader(), message_writer=writer
    )


def main(merge: Callable[[Mapping[str, Any]], MergeOutcome] = merge_table_job) -> None:
    """The job: read the Pipes extras, merge, report the outcome as the materialization's metadata."""
    with open_pipes() as pipes:
        params = pipes.extras
        pipes.log.info(f"merging {params['source']}.{params['lake_table']} up to commit {params['head']}")
        outcome = merge(params)
        pipes.log.info(
            f"{outcome.lake_table}: {outcome.status} (commit {outcome.merged_seq}, {outcome.seconds} s)"
        )
        pipes.report_asset_materialization(metadata=outcome.metadata())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
