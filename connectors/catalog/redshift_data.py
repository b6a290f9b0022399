"""Run SQL on Amazon Redshift through the Redshift Data API: submit, poll, surface the outcome.

The Data API is asynchronous: ``ExecuteStatement`` only queues the SQL and returns an id; the
statement's fate (``FINISHED``, ``FAILED`` with an ``Error`` text, ``ABORTED``) is learned by polling
``DescribeStatement``, and rows are fetched page by page with ``GetStatementResult``. This module
hides that behind a blocking ``DataApiRunner.execute`` with a bounded wait, so the federated-schema
publisher can apply DDL one statement at a time and stop at the first one Redshift rejects.

Only the caller's boto3 ``redshift-data`` client is used (no connection, no driver); credentials are
never handled here: the target names a database user or a Secrets Manager secret *by ARN*.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from pydantic import Field, field_validator, model_validator

from connectors.config import FrozenModel

log = logging.getLogger(__name__)

# DescribeStatement statuses after which the statement will not change again.
TERMINAL_STATUSES = frozenset({"FINISHED", "FAILED", "ABORTED"})
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 300.0
_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+")


class RedshiftTarget(FrozenModel):
    """Where statements run: a provisioned cluster or a Redshift Serverless workgroup.

    A cluster is reached as a database user (``db_user``, temporary credentials from
    ``redshift:GetClusterCredentials``) or with a Secrets Manager secret; a workgroup with the
    caller's IAM identity or a secret. The Data API rejects a request naming both a cluster and a
    workgroup, so the model does too.
    """

    cluster_identifier: str | None = Field(
        None, pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$", max_length=63, description="Provisioned cluster."
    )
    workgroup_name: str | None = Field(
        None, min_length=3, max_length=128, description="Redshift Serverless workgroup name or ARN."
    )
    database: str = Field(min_length=1, description="Database the statements run in.")
    db_user: str | None = Field(None, min_length=1, description="Database user (clusters only).")
    secret_arn: str | None = Field(
        None, description="ARN of a Secrets Manager secret with username and password (never the secret)."
    )
    statement_timeout_seconds: float = Field(
        DEFAULT_STATEMENT_TIMEOUT_SECONDS,
        gt=0,
        allow_inf_nan=False,
        description="Longest wait for one statement to finish; it is then cancelled and the run stops.",
    )

    @field_validator("statement_timeout_seconds", mode="before")
    @classmethod
    def _seconds_not_bool(cls, v: object) -> object:
        # pydantic reads `true` as 1.0; a flag in a number's place is a mistake, not one second.
        if isinstance(v, bool):
            raise ValueError(f"must be a positive number of seconds, not {str(v).lower()}")
        return v

    @model_validator(mode="after")
    def _one_way_in(self) -> RedshiftTarget:
        if self.secret_arn is not None and not _SECRET_ARN.fullmatch(self.secret_arn):
            raise ValueError("secret_arn: must be a Secrets Manager secret ARN (arn:aws:secretsmanager:...)")
        if self.cluster_identifier and self.workgroup_name:
            raise ValueError("workgroup_name: give either cluster_identifier or workgroup_name, not both")
        if not self.cluster_identifier and not self.workgroup_name:
            raise ValueError("cluster_identifier: give cluster_identifier or workgroup_name (serverless)")
        if self.workgroup_name and self.db_user:
            raise ValueError("db_user: a serverless workgroup takes secret_arn or IAM identity, not db_user")
        if self.cluster_identifier and not (self.db_user or self.secret_arn):
            raise ValueError("db_user: a cluster needs db_user or secret_arn")
        if self.db_user and self.secret_arn:
            raise ValueError("secret_arn: give either db_user or secret_arn, not both")
        return self

    def request_params(self) -> dict[str, str]:
        """The target as ExecuteStatement parameters (only the members that are set)."""
        params = {
            "ClusterIdentifier": self.cluster_identifier,
            "WorkgroupName": self.workgroup_name,
            "Database": self.database,
            "DbUser": self.db_user,
            "SecretArn": self.secret_arn,
        }
        return {k: v for k, v in params.items() if v is not None}


class RedshiftDataError(Exception):
    """Base of the errors a statement run through the Data API can end in."""

    def __init__(self, message: str, statement_id: str, sql: str) -> None:
        super().__init__(message)
        self.statement_id = statement_id
        self.sql_first_line = first_line(sql)


class StatementFailedError(RedshiftDataError):
    """Redshift ran the statement and it failed; ``error`` is the statement's ``Error`` text."""

    def __init__(self, statement_id: str, sql: str, error: str) -> None:
        super().__init__(f"statement failed: {error} (SQL: {first_line(sql)})", statement_id, sql)
        self.error = error


class StatementAbortedError(RedshiftDataError):
    """The statement was cancelled (by a user, a WLM rule or a timeout) before it finished."""

    def __init__(self, statement_id: str, sql: str) -> None:
        super().__init__(f"statement aborted (SQL: {first_line(sql)})", statement_id, sql)


class StatementTimeoutError(RedshiftDataError):
    """The statement had not finished within the runner's timeout; a cancel was requested."""

    def __init__(self, statement_id: str, sql: str, timeout_seconds: float, status: str) -> None:
        super().__init__(
            f"statement still {status} after {timeout_seconds:g}s (redshift.target.statement_timeout_seconds); "
            f"cancel requested (SQL: {first_line(sql)})",
            statement_id,
            sql,
        )
        self.timeout_seconds = timeout_seconds
        self.status = status


@dataclass(frozen=True)
class StatementResult:
    """A finished statement: its id, affected/returned row count and, for queries, the rows."""

    statement_id: str
    has_result_set: bool
    result_rows: int | None  # DescribeStatement's ResultRows: rows returned or affected (-1: unknown)
    columns: tuple[str, ...] = ()
    records: tuple[tuple[Any, ...], ...] = ()

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The records as ``{column: value}`` (a repeated column name keeps its last value)."""
        return [dict(zip(self.columns, record, strict=True)) for record in self.records]


def first_line(sql: str) -> str:
    """The first non-blank line of ``sql``, for error messages that must stay short."""
    return next((line.strip() for line in sql.splitlines() if line.strip()), "")


def field_value(field: Mapping[str, Any]) -> Any:
    """A Data API ``Field`` (a union: exactly one member set) as a Python value.

    Redshift sends DECIMAL, DATE and TIMESTAMP columns as ``stringValue``; they stay strings here,
    because only the caller knows the column's intended type (ColumnMetadata has ``typeName``).
    """
    if field.get("isNull"):
        return None
    for member in ("stringValue", "longValue", "doubleValue", "booleanValue", "blobValue"):
        if member in field:
            return field[member]
    raise ValueError(f"unknown Data API field: {sorted(field)}")


class DataApiRunner:
    """Run statements on ``target`` with a boto3 ``redshift-data`` client and wait for each.

    ``sleep`` and ``clock`` are injectable so tests need not wait; the timeout (by default the
    target's ``statement_timeout_seconds``) counts from submission, and on expiry the statement is
    cancelled rather than left running.
    """

    def __init__(
        self,
        client: Any,
        target: RedshiftTarget,
        *,
        timeout_seconds: float | None = None,
        poll_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._target = target
        self._timeout = target.statement_timeout_seconds if timeout_seconds is None else timeout_seconds
        self._poll = poll_seconds
        self._sleep = sleep
        self._clock = clock

    def execute(self, sql: str, parameters: Mapping[str, str] | None = None) -> StatementResult:
        """Submit ``sql`` (with ``:name`` parameters), wait for it and return its outcome and rows."""
        request: dict[str, Any] = {**self._target.request_params(), "Sql": sql}
        if parameters:
            request["Parameters"] = [{"name": k, "value": v} for k, v in parameters.items()]
        log.debug("Redshift Data API: executing %s", sql)
        statement_id: str = self._client.execute_statement(**request)["Id"]
        described = self._wait(statement_id, sql)
        status = described["Status"]
        if status == "FAILED":
            raise StatementFailedError(statement_id, sql, described.get("Error", "(no error text)"))
        if status == "ABORTED":
            raise StatementAbortedError(statement_id, sql)
        has_result_set = bool(described.get("HasResultSet"))
        result = StatementResult(statement_id, has_result_set, described.get("ResultRows"))
        if not has_result_set:
            return result
        columns, records = self._fetch(statement_id)
        return StatementResult(statement_id, True, result.result_rows, columns, records)

    def execute_batch(self, sqls: Iterable[str]) -> list[StatementResult]:
        """Run ``sqls`` one after another, stopping at (and raising) the first that does not finish.

        Sequential ``ExecuteStatement`` rather than ``BatchExecuteStatement``: the failing statement
        and its own error text are then known exactly, and nothing after it is submitted.
        """
        return [self.execute(sql) for sql in sqls]

    def query(self, sql: str, parameters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """The rows of a query as ``{column: value}`` dictionaries."""
        return self.execute(sql, parameters).rows

    def _wait(self, statement_id: str, sql: str) -> dict[str, Any]:
        deadline = self._clock() + self._timeout
        while True:
            described: dict[str, Any] = self._client.describe_statement(Id=statement_id)
            if described["Status"] in TERMINAL_STATUSES:
                return described
            if self._clock() >= deadline:
                self._cancel(statement_id)
                raise StatementTimeoutError(statement_id, sql, self._timeout, described["Status"])
            self._sleep(self._poll)

    def _cancel(self, statement_id: str) -> None:
        try:
            self._client.cancel_statement(Id=statement_id)
        except ClientError as exc:
            # It may have finished between the last poll and the cancel; the timeout still stands.
            log.warning("could not cancel Redshift statement %s: %s", statement_id, exc)

    def _fetch(self, statement_id: str) -> tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]]:
        columns: tuple[str, ...] = ()
        records: list[tuple[Any, ...]] = []
        request: dict[str, Any] = {"Id": statement_id}
        while True:
            page = self._client.get_statement_result(**request)
            if not columns and page.get("ColumnMetadata"):
                columns = tuple(c.get("name") or c.get("label", "") for c in page["ColumnMetadata"])
            records += [tuple(field_value(f) for f in record) for record in page.get("Records", [])]
            token = page.get("NextToken")
            if not token:
                return columns, tuple(records)
            request["NextToken"] = token
