"""A workload that keeps changing the world: inserts, updates and deletes at a chosen rate.

Operations are drawn from a seeded ``random.Random``: which table (``table_weights``), which kind
(``mix``), and now and then several operations in one transaction. With ``clock_start`` set,
timestamps come from a simulated clock too, so the same seed on the same world writes the same
rows. A ``Workload`` is single-threaded and owns its two connections while it runs.

Stopping: a ``stop`` event is checked between transactions, so a stopped run never leaves one
half done. A KeyboardInterrupt (or any error) rolls back the open transaction before it propagates;
if even the rollback fails, the connection is closed, which makes the server discard the
transaction. ``totals`` always counts committed changes only. An interrupt that lands inside
COMMIT leaves that transaction's outcome unknown: it is not counted and the workload reloads its
picture of the world before running again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.world.actions import Actions, StaleStateError
from pipelines.world.pacing import Pacer
from pipelines.world.schema import TABLES, TABLES_BY_NAME, WorldError, WorldTable
from pipelines.world.session import mysql_utc_session, transactional
from pipelines.world.state import WorldState
from pipelines.world.stats import ChangeKind, Tally, WorkloadStats

__all__ = ["DEFAULT_TABLE_WEIGHTS", "OperationMix", "Workload", "WorkloadConfig", "WorkloadError"]

log = logging.getLogger(__name__)

DEFAULT_TABLE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "patients": 12,
        "assessments": 14,
        "surveys": 10,
        "plan_enrollments": 8,
        "health_preferences": 10,
        "insurance_claims": 20,
        "fitness_plans": 2,
        "SynonymsTable": 3,
        "tenant_metadata": 6,
        "care_providers": 10,
    }
)


class WorkloadError(WorldError):
    """The workload could not apply an operation (the transaction was rolled back)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OperationMix(_Frozen):
    """Relative weights of inserts, updates and deletes (they need not sum to 1)."""

    insert: float = Field(default=0.3, ge=0, description="Weight of inserts.")
    update: float = Field(default=0.6, ge=0, description="Weight of updates.")
    delete: float = Field(default=0.1, ge=0, description="Weight of deletes.")

    @model_validator(mode="after")
    def _some_weight(self) -> OperationMix:
        if self.insert + self.update + self.delete <= 0:
            raise ValueError("at least one of insert, update, delete must have a positive weight")
        return self


class WorkloadConfig(_Frozen):
    """What the workload does; the same config on the same world does the same thing."""

    seed: int = Field(default=0, description="Seed of every random choice the workload makes.")
    mix: OperationMix = Field(
        default_factory=lambda: OperationMix(), description="Insert/update/delete weights."
    )
    table_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_TABLE_WEIGHTS),
        description="Relative share of operations per table; tables left out get none.",
    )
    multi_row_probability: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Chance that a transaction holds several operations instead of one.",
    )
    max_operations_per_transaction: int = Field(
        default=10, ge=2, description="Upper bound of a multi-operation transaction."
    )
    clock_start: dt.datetime | None = Field(
        default=None,
        description="Simulated clock: operation i is stamped clock_start + i * clock_step. None uses the wall clock.",
    )
    clock_step: dt.timedelta = Field(
        default=dt.timedelta(seconds=1, microseconds=3),
        gt=dt.timedelta(0),
        description="Tick of the simulated clock.",
    )
    keep_journal: bool = Field(
        default=False, description="Keep every committed change in the stats (tests; memory grows)."
    )
    log_every_seconds: float = Field(default=10.0, gt=0, description="Interval of progress log lines.")

    @field_validator("table_weights")
    @classmethod
    def _known_tables(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(TABLES_BY_NAME))
        if unknown:
            raise ValueError(f"unknown tables {unknown}; choose from {sorted(TABLES_BY_NAME)}")
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("table weights must be >= 0 with a positive sum")
        return v

    @field_validator("clock_start")
    @classmethod
    def _aware(cls, v: dt.datetime | None) -> dt.datetime | None:
        if v is not None and v.utcoffset() is None:
            raise ValueError("clock_start must be timezone-aware")
        return v


class Workload:
    """Runs seeded operations against the world's two databases and counts what it committed.

    ``mysql_conn`` is a PyMySQL connection (utf8mb4) to the health database and ``pg_conn`` a
    psycopg2 connection to the tenants database, both idle (no transaction open) and not in
    autocommit mode. The world must already exist (``create_world``).
    """

    def __init__(
        self, mysql_conn: Any, pg_conn: Any, config: WorkloadConfig | None = None, *, seed: int | None = None
    ) -> None:
        if config is not None and seed is not None:
            raise ValueError("pass either config or seed, not both")
        self.config = config or WorkloadConfig(seed=seed or 0)
        self._conns = {"mysql": mysql_conn, "postgres": pg_conn}
        self._rng = random.Random(f"workload/{self.config.seed}")
        self._actions: Actions | None = None
        self._ticks = 0
        self._tally = Tally(keep_journal=self.config.keep_journal)
        self._elapsed = 0.0
        self._broken = ""
        weights = self.config.table_weights
        self._tables: list[WorldTable] = [t for t in TABLES if weights.get(t.name, 0) > 0]
        self._table_weights = [weights[t.name] for t in self._tables]
        mix = self.config.mix
        self._kinds = [ChangeKind.INSERT, ChangeKind.UPDATE, ChangeKind.DELETE]
        self._kind_weights = [mix.insert, mix.update, mix.delete]

    # ------------------------------------------------------------------ public API

    @property
    def totals(self) -> WorkloadStats:
        """Committed changes of every run of this workload so far."""
        return self._tally.freeze(self._elapsed)

    def reload(self) -> None:
        """Re-read which rows exist (after someone else changed the world)."""
        self._actions_for_run(force=True)

    def run_ops(self, operations: int) -> WorkloadStats:
        """Run ``operations`` operations back to back, without sleeping (tests and benchmarks)."""
        return self.run(operations=operations)

    def run(
        self,
        *,
        rate: float | None = None,
        duration: float | None = None,
        operations: int | None = None,
        stop: threading.Event | None = None,
    ) -> WorkloadStats:
        """Run until ``operations`` are done, ``duration`` seconds pass or ``stop`` is set.

        ``rate`` is in operations per second (None: as fast as possible). Pacing sleeps on the stop
        event, so a stop request ends a pause at once. With no bound and no event it runs until
        interrupted. Returns the committed changes of this run.
        """
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if operations is not None and operations < 0:
            raise ValueError(f"operations must be >= 0, got {operations}")
        if self._broken:
            raise WorkloadError(self._broken)
        run_tally = Tally(keep_journal=self.config.keep_journal)
        pacer = Pacer(
            rate, duration=duration, operations=operations, stop=stop, log_every=self.config.log_every_seconds
        )
        done = 0
        try:
            with (
                transactional(self._conns["mysql"]),
                transactional(self._conns["postgres"]),
                mysql_utc_session(self._conns["mysql"]),
            ):
                while pacer.next(done):
                    budget = self.config.max_operations_per_transaction
                    if operations is not None:
                        budget = min(budget, operations - done)
                    # Fetched each time: a stale picture is replaced inside _transaction.
                    done += self._transaction(self._actions_for_run(), budget, run_tally)
                    pacer.progress("workload", done, lambda: sum(run_tally.rows.values()), "rows")
        finally:
            elapsed = pacer.elapsed
            self._elapsed += elapsed
        stats = run_tally.freeze(elapsed)
        log.debug("workload finished: %s", stats)  # the caller reports the run
        return stats

    # ------------------------------------------------------------------ internals

    def _actions_for_run(self, *, force: bool = False) -> Actions:
        if self._actions is None or force:
            try:
                state = WorldState.load(self._conns["mysql"], self._conns["postgres"])
            except Exception as exc:
                for conn in self._conns.values():
                    with contextlib.suppress(Exception):
                        conn.rollback()
                raise WorkloadError(
                    f"could not read the world's keys (has create_world run?): {exc}"
                ) from exc
            self._actions = Actions(state, self._rng)
        return self._actions

    def _now(self) -> dt.datetime:
        start = self.config.clock_start
        if start is None:
            return dt.datetime.now(dt.UTC)
        return (start + self._ticks * self.config.clock_step).astimezone(dt.UTC)

    def _pick_table(self, engine: str | None) -> WorldTable:
        if engine is None:
            return self._rng.choices(self._tables, self._table_weights)[0]
        pairs = [(t, w) for t, w in zip(self._tables, self._table_weights, strict=True) if t.engine == engine]
        return self._rng.choices([t for t, _ in pairs], [w for _, w in pairs])[0]

    def _transaction(self, actions: Actions, budget: int, run_tally: Tally) -> int:
        """Run one transaction of 1..budget operations on one database; return operations committed."""
        rng = self._rng
        first = self._pick_table(None)
        count = 1
        if budget > 1 and rng.random() < self.config.multi_row_probability:
            count = rng.randint(2, budget)
        conn = self._conns[first.engine]
        actions.pending = []
        table, kind = first.name, ChangeKind.INSERT
        try:
            with conn.cursor() as cur:
                for i in range(count):
                    table = first.name if i == 0 else self._pick_table(first.engine).name
                    kind = rng.choices(self._kinds, self._kind_weights)[0]
                    actions.now = self._now()
                    self._ticks += 1
                    actions.run(cur, table, kind)
            conn.commit()
        except StaleStateError as exc:
            self._abort(conn)
            log.warning("workload: %s; reloading the world's keys", exc)
            self._actions_for_run(force=True)
            return 0
        except Exception as exc:
            self._abort(conn)
            self._actions = None  # the picture already holds the rolled-back changes
            raise WorkloadError(f"{kind.name.lower()} on {table} failed and was rolled back: {exc}") from exc
        except BaseException:
            # KeyboardInterrupt, SystemExit: possibly in the middle of a driver call.
            self._abort(conn)
            self._actions = None
            raise
        for tally in (self._tally, run_tally):
            tally.commit(actions.pending, count)
        return count

    def _abort(self, conn: Any) -> None:
        """Roll back; if that fails, close the connection so the server discards the transaction."""
        try:
            conn.rollback()
        except BaseException:  # noqa: B036 - whatever happens, the transaction must not stay open
            log.warning("workload: rollback failed; closing the connection", exc_info=True)
            with contextlib.suppress(Exception):
                conn.close()
            self._broken = (
                "a rollback failed and the connection was closed; start a new Workload with new connections"
            )
