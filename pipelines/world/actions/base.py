"""Plumbing shared by the workload's operations (one insert, update or delete of an entity per call).

Each operation runs on a cursor inside a transaction the workload owns, records the rows it changed
as ``Change`` values, and updates the ``WorldState`` right away (so later operations in the same
transaction see it). Where an operation is impossible (nothing left to delete, every patient
already has preferences) it falls back to another one on the same database, so every call changes
at least one row. Updates always change a value (``updated_at`` or a toggled column), because
MySQL does not log an UPDATE that changes nothing, and the counts must match what CDC sees.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from typing import Any

from pipelines.world.rows import Row, RowFactory
from pipelines.world.schema import TABLES_BY_NAME, WorldError, insert_sql, quote
from pipelines.world.state import WorldState
from pipelines.world.stats import Change, ChangeKind
from pipelines.world.timeutil import utc_wall

INSERT, UPDATE, DELETE = ChangeKind.INSERT, ChangeKind.UPDATE, ChangeKind.DELETE

# Random tries to find a deletable (unreferenced) row before falling back to an update.
DELETE_TRIES = 12

# (column, SQL expression with %s placeholders, parameters)
Assignment = tuple[str, str, tuple[Any, ...]]


class StaleStateError(WorldError):
    """A row the workload believed in was not there: someone else changed the world."""


def assign(column: str, value: Any) -> Assignment:
    """``column = %s`` with ``value`` as the parameter."""
    return (column, "%s", (value,))


class ActionBase:
    """State, random source and SQL helpers every group of operations uses."""

    def __init__(self, state: WorldState, rng: random.Random) -> None:
        self.state = state
        self.rng = rng
        self.rows = RowFactory(rng)
        self.now = dt.datetime.now(dt.UTC)  # set by the workload before each operation
        self.pending: list[Change] = []

    def _record(self, table: str, kind: ChangeKind, *key: Any) -> None:
        self.pending.append(Change(table, kind, tuple(key)))

    def _insert(self, cur: Any, table: str, row: Row, *, returning: str | None = None) -> Any:
        """Insert one row; return the generated id (lastrowid, or the RETURNING column)."""
        engine = TABLES_BY_NAME[table].engine
        sql = insert_sql(engine, table, list(row))
        if returning:
            sql += f" RETURNING {quote(engine, returning)}"
        cur.execute(sql, tuple(row.values()))
        if returning:
            return cur.fetchone()[0]
        return cur.lastrowid

    def _update(self, cur: Any, table: str, assignments: Sequence[Assignment], *key: Any) -> int:
        """UPDATE one row by primary key; return the number of rows changed."""
        spec = TABLES_BY_NAME[table]
        sets = ", ".join(f"{quote(spec.engine, col)} = {expr}" for col, expr, _ in assignments)
        where = " AND ".join(f"{quote(spec.engine, col)} = %s" for col in spec.key)
        params = tuple(p for _, _, ps in assignments for p in ps) + key
        cur.execute(f"UPDATE {quote(spec.engine, table)} SET {sets} WHERE {where}", params)
        changed = int(cur.rowcount)
        if changed:
            self._record(table, UPDATE, *key)
        return changed

    def _delete(self, cur: Any, table: str, *key: Any) -> None:
        """DELETE one row by primary key; it must exist."""
        spec = TABLES_BY_NAME[table]
        where = " AND ".join(f"{quote(spec.engine, col)} = %s" for col in spec.key)
        cur.execute(f"DELETE FROM {quote(spec.engine, table)} WHERE {where}", key)
        if cur.rowcount != 1:
            raise StaleStateError(f"{table} row {key} was not there to delete")
        self._record(table, DELETE, *key)

    def _delete_children(
        self, cur: Any, table: str, patient_id: int, keys: Sequence[tuple[Any, ...]]
    ) -> None:
        """DELETE a patient's rows in ``table``; ``keys`` (sorted) are the ones the state knows."""
        cur.execute(f"DELETE FROM {quote('mysql', table)} WHERE patient_id = %s", (patient_id,))
        if cur.rowcount != len(keys):
            raise StaleStateError(
                f"patient {patient_id} had {cur.rowcount} {table} rows, expected {len(keys)}"
            )
        for key in keys:
            self._record(table, DELETE, *key)

    @property
    def _wall(self) -> dt.datetime:
        """``now`` as a naive UTC wall time for MySQL DATETIME/TIMESTAMP columns."""
        return utc_wall(self.now)

    def _pick_patient(self) -> int:
        return self.state.patients.choice(self.rng)

    def _sign_up(self, cur: Any) -> None:
        """Insert a new patient: the fallback that is always possible on the health database."""
        raise NotImplementedError
