"""Builders of synthetic change batches for lake tests (PostgreSQL LSNs as offsets)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from connectors.events import Batch, Column, TableChanges, TableId, TableSchema
from connectors.postgres.offset import Lsn

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
PATIENTS = TableId("src", "health", "patients")


def schema(
    columns: Sequence[tuple[str, pa.DataType]] = (("id", pa.int64()), ("name", pa.string())),
    table: TableId = PATIENTS,
) -> TableSchema:
    return TableSchema(table, tuple(Column(n, t) for n, t in columns), ("id",))


def changes(
    rows: Sequence[tuple[str, int, dict[str, Any]]], sch: TableSchema | None = None, ts: dt.datetime = T0
) -> TableChanges:
    """rows: (op, lsn, values)."""
    sch = sch or schema()
    return TableChanges.from_rows(
        sch,
        [
            {"Op": op, "_commit_ts": ts, "_position": str(Lsn(lsn)), "_txid": str(lsn), **vals}
            for op, lsn, vals in rows
        ],
    )


def stream_batch(start: int, end: int, *tcs: TableChanges, complete: bool = True) -> Batch:
    return Batch(start=Lsn(start), end=Lsn(end) if complete else None, changes=tuple(tcs), complete=complete)


def snapshot_batch(
    end: int, *tcs: TableChanges, tables: Sequence[TableId] = (PATIENTS,), start: int | None = None
) -> Batch:
    return Batch(
        start=Lsn(start) if start is not None else None,
        end=Lsn(end),
        changes=tuple(tcs),
        snapshot=frozenset(tables),
        floors={t: Lsn(end) for t in tables},
    )
