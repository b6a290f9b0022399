"""Rows of Python values -> Arrow columns, with per-row quarantine of unconvertible values.

Used by the snapshot reader (values from PyMySQL) and the binlog decoder (values from
mysql-replication); each origin has its own fix-ups (connectors.mysql.types) but the Arrow
conversion is shared, so both give the lake identical values.
"""

from __future__ import annotations

import datetime as dt
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from connectors.events import UTC_MICROS
from connectors.mysql.schema import TableDefinition
from connectors.mysql.types import (
    Fixup,
    InvalidTemporal,
    MySQLType,
    UnconvertibleValueError,
    binlog_fixup,
    snapshot_fixup,
    to_arrow,
)

# Errors a fix-up or pyarrow raises for one bad value (not programming errors elsewhere).
_VALUE_ERRORS = (
    UnconvertibleValueError,
    ValueError,
    TypeError,
    ArithmeticError,
    pa.ArrowInvalid,
    pa.ArrowTypeError,
)


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row left out of the Arrow columns: its index in the input, why, and the raw values."""

    index: int
    reason: str
    payload: str


@dataclass(slots=True)
class ConvertedRows:
    """Arrow columns (one per schema column) for the rows that converted, and their ops."""

    ops: list[str]
    arrays: list[pa.Array]
    rejected: list[RejectedRow] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return len(self.ops)


class RowConverter:
    """Converts row images of one table definition into Arrow arrays."""

    def __init__(self, definition: TableDefinition, fixups: Sequence[Fixup | None], zone: str) -> None:
        self.definition = definition
        self.names = definition.schema.column_names
        self.types: tuple[MySQLType, ...] = definition.types
        self._fixups = [(i, fn) for i, fn in enumerate(fixups) if fn is not None]
        self._zone = zone

    @classmethod
    def for_binlog(cls, definition: TableDefinition, zone: str) -> RowConverter:
        """For values decoded by mysql-replication (with connectors.mysql.patches applied)."""
        return cls(definition, [binlog_fixup(t) for t in definition.types], zone)

    @classmethod
    def for_snapshot(cls, definition: TableDefinition, zone: str) -> RowConverter:
        """For values read by PyMySQL from `snapshot_select_expression` columns."""
        return cls(definition, [snapshot_fixup(t) for t in definition.types], zone)

    def convert(
        self, rows: Sequence[Sequence[Any]], ops: list[str], rejected: Mapping[int, str] | None = None
    ) -> ConvertedRows:
        """Convert `rows` (one value per column, in column order); `rejected` pre-marks bad rows."""
        n = len(rows)
        bad: dict[int, str] = dict(rejected or {})
        columns: list[list[Any]] = (
            [list(c) for c in zip(*rows, strict=True)] if n else [[] for _ in self.names]
        )
        for i, fn in self._fixups:
            columns[i] = self._fix_column(i, fn, columns[i], bad)
        arrays = [self._to_arrow(i, col, bad) for i, col in enumerate(columns)]
        if not bad:
            return ConvertedRows(ops, arrays)
        keep = pa.array([r not in bad for r in range(n)])
        return ConvertedRows(
            [op for r, op in enumerate(ops) if r not in bad],
            [a.filter(keep) for a in arrays],
            [RejectedRow(r, reason, self._payload(rows[r])) for r, reason in sorted(bad.items())],
        )

    def _fix_column(self, i: int, fn: Fixup, values: list[Any], bad: dict[int, str]) -> list[Any]:
        try:
            return [None if v is None else fn(v) for v in values]
        except _VALUE_ERRORS:
            pass  # find the culprits one by one (rare path)
        fixed: list[Any] = []
        for r, v in enumerate(values):
            try:
                fixed.append(None if v is None else fn(v))
            except _VALUE_ERRORS as exc:
                bad.setdefault(r, f"column {self.names[i]!r} value {_show(v)}: {exc}")
                fixed.append(None)
        return fixed

    def _to_arrow(self, i: int, values: list[Any], bad: dict[int, str]) -> pa.Array:
        t = self.types[i]
        try:
            return to_arrow(values, t, self._zone)
        except (*_VALUE_ERRORS, OverflowError):
            pass
        kept: list[Any] = []
        for r, v in enumerate(values):
            try:
                to_arrow([v], t, self._zone)
            except (*_VALUE_ERRORS, OverflowError) as exc:
                bad.setdefault(
                    r, f"column {self.names[i]!r} value {_show(v)} does not fit {t.source_type}: {exc}"
                )
                v = None
            kept.append(v)
        return to_arrow(kept, t, self._zone)

    def _payload(self, row: Sequence[Any]) -> str:
        return repr(dict(zip(self.names, row, strict=False)))


def _show(value: Any) -> str:
    return repr(str(value)) if isinstance(value, InvalidTemporal) else repr(value)


def changes_table(
    definition: TableDefinition,
    converted: ConvertedRows,
    commit_ts: dt.datetime,
    position: str,
    txid: str | None,
) -> pa.Table:
    """The `TableChanges.data` table: metadata columns (one value for all rows) then the row columns."""
    n = converted.num_rows
    meta = [
        pa.array(converted.ops, pa.string()),
        pa.repeat(pa.scalar(commit_ts, UTC_MICROS), n),
        pa.repeat(pa.scalar(position, pa.string()), n),
        pa.nulls(n, pa.string()) if txid is None else pa.repeat(pa.scalar(txid, pa.string()), n),
    ]
    return pa.Table.from_arrays([*meta, *converted.arrays], schema=definition.schema.arrow_schema())


@dataclass(frozen=True, slots=True)
class RowsOrigin:
    """The transaction a span of change rows belongs to: the metadata column values of its rows."""

    commit_ts: dt.datetime
    position: str
    txid: str | None


def spans_changes_table(
    definition: TableDefinition, converted: ConvertedRows, spans: Sequence[tuple[int, RowsOrigin]]
) -> pa.Table:
    """`changes_table` for rows of several transactions: `spans` are (row count, origin), in order.

    The metadata columns are built by one `take` from the few distinct origins, not per row.
    """
    if len(spans) == 1:
        origin = spans[0][1]
        return changes_table(definition, converted, origin.commit_ts, origin.position, origin.txid)
    origins: list[RowsOrigin] = []
    indexes = array("i")
    for count, origin in spans:
        if not origins or origins[-1] is not origin:
            origins.append(origin)
        indexes += array("i", [len(origins) - 1]) * count
    n = converted.num_rows
    if len(indexes) != n:
        raise ValueError(f"{definition.table}: spans cover {len(indexes)} rows, the columns {n}")
    take = pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(indexes)], 0)
    meta = [
        pa.array(converted.ops, pa.string()),
        pa.array([o.commit_ts for o in origins], UTC_MICROS).take(take),
        pa.array([o.position for o in origins], pa.string()).take(take),
        pa.array([o.txid for o in origins], pa.string()).take(take),
    ]
    return pa.Table.from_arrays([*meta, *converted.arrays], schema=definition.schema.arrow_schema())
