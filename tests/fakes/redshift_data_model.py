"""A fake Amazon Redshift Data API: statements that finish, fail, abort or stall, as tests script.

moto implements ``redshift-data`` but its statements never leave ``STARTED``-like limbo (no result,
no failure), so code that polls for an outcome cannot be tested against it. This model keeps each
statement's lifecycle as the Data API reports it: ``SUBMITTED`` -> ``PICKED`` -> ``STARTED`` -> a
final ``FINISHED`` / ``FAILED`` / ``ABORTED``, advancing one step per ``DescribeStatement`` call and
reaching the final status on the ``polls_to_finish``-th call. Tests script outcomes by matching the
SQL (``re.search``, case-insensitive): ``fail_when``, ``abort_when``, ``stall_when`` and ``respond``
(a result set served in pages by ``GetStatementResult``). Every submitted SQL is kept, in order, in
``executed``. With a ``catalog`` (``redshift_catalog.FakeRedshiftCatalog``), a statement no rule
matches runs against it when submitted, and ends as the catalog says (FINISHED with or without a
result set, or FAILED with its error). The HTTP front end is ``redshift_data_server``; import both
from ``tests.fakes.redshift_data``.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.redshift_catalog import FakeRedshiftCatalog, Outcome

RUNNING = ("SUBMITTED", "PICKED", "STARTED")


class RedshiftDataError(Exception):
    """An error the service answers with; ``extra`` holds the error shape's other members."""

    code = "InternalServerException"

    def __init__(self, message: str, **extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class ValidationError(RedshiftDataError):
    code = "ValidationException"


class ResourceNotFoundError(RedshiftDataError):
    code = "ResourceNotFoundException"  # its shape requires ResourceId as well as Message


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    outcome: str  # FAILED, ABORTED, STALL or RESULT
    error: str = ""
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()
    types: tuple[str, ...] = ()  # Data API type names; empty: guessed from the values


# The pattern of a rule built from the catalog's outcome for one statement; it is never matched.
_COMPUTED = re.compile(r"(?!)")


def _catalog_rule(outcome: Outcome) -> _Rule | None:
    if outcome.status == "FAILED":
        return _Rule(_COMPUTED, "FAILED", error=outcome.error)
    if outcome.rows is None:
        return None
    return _Rule(_COMPUTED, "RESULT", columns=outcome.columns, rows=outcome.rows, types=outcome.types)


@dataclass
class Statement:
    """One submitted statement and where it is in its lifecycle."""

    id: str
    sql: str
    target: dict[str, str]
    parameters: list[dict[str, str]] | None
    created_at: float
    rule: _Rule | None
    status: str = "SUBMITTED"
    polls: int = 0
    updated_at: float = 0.0
    cancelled: bool = False

    @property
    def has_result_set(self) -> bool:
        return self.status == "FINISHED" and self.rule is not None and self.rule.outcome == "RESULT"


@dataclass
class FakeRedshiftData:
    """The Data API's statements; thread-safe, since the server handles requests in threads."""

    polls_to_finish: int = 2
    page_size: int = 100
    clock: Any = time.time
    executed: list[str] = field(default_factory=list)
    statements: dict[str, Statement] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    catalog: FakeRedshiftCatalog | None = None
    _rules: list[_Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- scripting -------------------------------------------------------------------------------

    def fail_when(self, pattern: str, error: str) -> None:
        """Statements whose SQL matches ``pattern`` end FAILED with ``error`` as their Error text."""
        self._rules.append(_Rule(_compile(pattern), "FAILED", error=error))

    def abort_when(self, pattern: str) -> None:
        """Statements whose SQL matches ``pattern`` end ABORTED (as if WLM or a user cancelled them)."""
        self._rules.append(_Rule(_compile(pattern), "ABORTED"))

    def stall_when(self, pattern: str) -> None:
        """Statements whose SQL matches ``pattern`` stay STARTED until cancelled."""
        self._rules.append(_Rule(_compile(pattern), "STALL"))

    def respond(self, pattern: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Statements whose SQL matches ``pattern`` finish with this result set.

        Values map to Data API fields by Python type: None -> isNull, bool -> booleanValue,
        int -> longValue, float -> doubleValue, bytes -> blobValue, anything else -> stringValue.
        """
        if any(len(row) != len(columns) for row in rows):
            raise ValueError("every row needs one value per column")
        rule = _Rule(_compile(pattern), "RESULT", columns=tuple(columns), rows=tuple(map(tuple, rows)))
        self._rules.append(rule)

    def clear_rules(self) -> None:
        """Forget every scripted outcome (statements then finish, or go to the catalog)."""
        with self._lock:
            self._rules.clear()

    # -- operations ------------------------------------------------------------------------------

    def execute_statement(self, p: dict[str, Any]) -> dict[str, Any]:
        target = _target(p)
        with self._lock:
            now = self.clock()
            sql: str = p["Sql"]
            rule = next((r for r in self._rules if r.pattern.search(sql)), None)
            if rule is None and self.catalog is not None:
                # The catalog changes at submission, as the cluster would once the statement runs.
                rule = _catalog_rule(self.catalog.run(sql, p.get("Parameters")))
            statement = Statement(
                str(uuid.uuid4()), sql, target, p.get("Parameters"), now, rule, updated_at=now
            )
            self.statements[statement.id] = statement
            self.executed.append(sql)
            return {"Id": statement.id, "CreatedAt": now, **target}

    def describe_statement(self, statement_id: str) -> dict[str, Any]:
        with self._lock:
            s = self._statement(statement_id)
            if s.status in RUNNING:
                self._advance(s)
            result: dict[str, Any] = {
                "Id": s.id,
                "Status": s.status,
                "QueryString": s.sql,
                "CreatedAt": s.created_at,
                "UpdatedAt": s.updated_at,
                "HasResultSet": s.has_result_set,
                # Duration is in nanoseconds; the service reports -1 until the statement ends.
                "Duration": -1 if s.status in RUNNING else int((s.updated_at - s.created_at) * 1e9),
                "ResultRows": len(s.rule.rows) if s.has_result_set and s.rule else -1,
                "ResultSize": -1,
                "RedshiftPid": 1073741824,
                "RedshiftQueryId": 0 if s.status in RUNNING else 1000 + len(self.statements),
                **s.target,
            }
            if s.status == "FAILED" and s.rule is not None:
                result["Error"] = s.rule.error
            if s.parameters:
                result["QueryParameters"] = s.parameters
            return result

    def get_statement_result(self, statement_id: str, next_token: str | None) -> dict[str, Any]:
        with self._lock:
            s = self._statement(statement_id)
            if s.status != "FINISHED":
                raise ValidationError(f"Query {statement_id} has not finished; its status is {s.status}.")
            if not s.has_result_set or s.rule is None:
                raise ValidationError(f"Query {statement_id} does not have a result set.")
            start = _page_start(next_token, statement_id)
            rows = s.rule.rows
            if start > len(rows):
                raise ValidationError("The NextToken is invalid.")
            end = start + self.page_size
            page: dict[str, Any] = {
                "Records": [[_field(v) for v in row] for row in rows[start:end]],
                "ColumnMetadata": [
                    _column(name, rows, i, s.rule.types[i] if s.rule.types else None)
                    for i, name in enumerate(s.rule.columns)
                ],
                "TotalNumRows": len(rows),
            }
            if end < len(rows):
                page["NextToken"] = base64.b64encode(f"{statement_id}/{end}".encode()).decode()
            return page

    def cancel_statement(self, statement_id: str) -> dict[str, Any]:
        with self._lock:
            s = self._statement(statement_id)
            if s.status not in RUNNING:
                raise ValidationError(f"Could not cancel a query that is already in {s.status} state.")
            s.status, s.cancelled, s.updated_at = "ABORTED", True, self.clock()
            return {"Status": True}

    # -- internals -------------------------------------------------------------------------------

    def _statement(self, statement_id: str) -> Statement:
        s = self.statements.get(statement_id)
        if s is None:
            raise ResourceNotFoundError(f"Query {statement_id} does not exist.", ResourceId=statement_id)
        return s

    def _advance(self, s: Statement) -> None:
        s.polls += 1
        s.updated_at = self.clock()
        outcome = "FINISHED" if s.rule is None or s.rule.outcome == "RESULT" else s.rule.outcome
        if s.polls >= self.polls_to_finish and outcome != "STALL":
            s.status = outcome
        else:
            s.status = RUNNING[min(s.polls, len(RUNNING) - 1)]


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE | re.DOTALL)


def _target(p: dict[str, Any]) -> dict[str, str]:
    """The connection members, checked the way the service does beyond the model's shapes."""
    # The model makes every member optional; the service wants exactly one of cluster/workgroup.
    if "ClusterIdentifier" in p and "WorkgroupName" in p:
        raise ValidationError("ClusterIdentifier and WorkgroupName cannot both be specified.")
    if "ClusterIdentifier" not in p and "WorkgroupName" not in p and "SessionId" not in p:
        raise ValidationError("Either ClusterIdentifier or WorkgroupName must be specified.")
    if "SessionId" in p:
        raise ValidationError("The fake does not model sessions (SessionId).")
    if "Database" not in p:
        raise ValidationError("Database must be specified.")
    keys = ("ClusterIdentifier", "WorkgroupName", "Database", "DbUser", "SecretArn")
    return {k: p[k] for k in keys if k in p}


def _page_start(token: str | None, statement_id: str) -> int:
    if token is None:
        return 0
    try:
        owner, _, offset = base64.b64decode(token, validate=True).decode().partition("/")
        if owner == statement_id:
            return int(offset)
    except ValueError:
        pass
    raise ValidationError("The NextToken is invalid.")


def _field(value: Any) -> dict[str, Any]:
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, bytes):
        return {"blobValue": base64.b64encode(value).decode()}
    return {"stringValue": str(value)}


_TYPE_NAMES = {bool: "bool", int: "int8", float: "float8", bytes: "varbyte"}


def _column(
    name: str, rows: tuple[tuple[Any, ...], ...], index: int, type_name: str | None
) -> dict[str, Any]:
    if type_name is None:
        sample = next((row[index] for row in rows if row[index] is not None), "")
        type_name = _TYPE_NAMES.get(type(sample), "varchar")
    return {"name": name, "label": name, "typeName": type_name, "nullable": 1}
