"""What a workload run changed: row counts per table and operation, and an optional journal."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


class ChangeKind(enum.StrEnum):
    """Row operation; the values match ``connectors.events.Op`` (DMS codes I/U/D)."""

    INSERT = "I"
    UPDATE = "U"
    DELETE = "D"


@dataclass(frozen=True, slots=True)
class Change:
    """One committed row change: table, operation and primary key values (in key column order)."""

    table: str
    kind: ChangeKind
    key: tuple[Any, ...]


@dataclass(frozen=True)
class WorkloadStats:
    """Committed row changes of one workload run (or of all runs so far).

    ``rows`` counts changed rows per (table, kind): a patient deletion counts its claims,
    assessments and other children too. ``operations`` counts workload operations and
    ``transactions`` committed transactions. ``journal`` lists every change in commit order when
    the workload was asked to keep one.
    """

    rows: Mapping[tuple[str, ChangeKind], int] = field(default_factory=lambda: MappingProxyType({}))
    operations: int = 0
    transactions: int = 0
    elapsed_seconds: float = 0.0
    journal: tuple[Change, ...] = ()

    def count(self, table: str | None = None, kind: ChangeKind | str | None = None) -> int:
        """Changed rows, optionally only of one table and/or one kind."""
        return sum(
            n
            for (t, k), n in self.rows.items()
            if (table is None or t == table) and (kind is None or k == kind)
        )

    def net_rows(self, table: str) -> int:
        """Inserted minus deleted rows of ``table``: how much its row count grew."""
        return self.count(table, ChangeKind.INSERT) - self.count(table, ChangeKind.DELETE)

    @property
    def tables(self) -> frozenset[str]:
        """Tables that received at least one change."""
        return frozenset(t for (t, _), n in self.rows.items() if n)

    def by_table(self) -> dict[str, dict[str, int]]:
        """``{table: {"I": n, "U": n, "D": n}}`` for logs and reports."""
        out: dict[str, dict[str, int]] = {}
        for (table, kind), n in sorted(self.rows.items()):
            out.setdefault(table, {k.value: 0 for k in ChangeKind})[kind.value] = n
        return out

    def __str__(self) -> str:
        return (
            f"{self.operations} operations, {self.transactions} transactions, {self.count()} rows "
            f"(I={self.count(kind=ChangeKind.INSERT)} U={self.count(kind=ChangeKind.UPDATE)} "
            f"D={self.count(kind=ChangeKind.DELETE)}) in {self.elapsed_seconds:.1f}s"
        )


class Tally:
    """Mutable accumulator behind ``WorkloadStats`` (committed changes only)."""

    def __init__(self, *, keep_journal: bool) -> None:
        self.rows: Counter[tuple[str, ChangeKind]] = Counter()
        self.operations = 0
        self.transactions = 0
        self.keep_journal = keep_journal
        self.journal: list[Change] = []

    def commit(self, changes: Iterable[Change], operations: int) -> None:
        """Add one committed transaction."""
        self.transactions += 1
        self.operations += operations
        for change in changes:
            self.rows[(change.table, change.kind)] += 1
            if self.keep_journal:
                self.journal.append(change)

    def freeze(self, elapsed_seconds: float) -> WorkloadStats:
        """An immutable snapshot."""
        return WorkloadStats(
            rows=MappingProxyType(dict(self.rows)),
            operations=self.operations,
            transactions=self.transactions,
            elapsed_seconds=elapsed_seconds,
            journal=tuple(self.journal),
        )
