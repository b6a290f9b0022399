"""The change-event model every source produces and every sink consumes.

Sources decode their wire format straight into columnar `TableChanges` (one Arrow table per source
table and schema version) because per-row Python objects are the cost of a CDC pipeline; the
row-oriented `ChangeEvent` view exists for code that wants one change at a time (search indexing,
tests). Nothing here imports a driver or an SDK.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from connectors.offsets import Offset


class Op(enum.StrEnum):
    """DMS-style operation codes, as analysts already know them from AWS DMS change files."""

    INSERT = "I"
    UPDATE = "U"
    DELETE = "D"


# Metadata columns written beside the row's own columns in every change-log file.
OP_COLUMN = "Op"
COMMIT_TS_COLUMN = "_commit_ts"
POSITION_COLUMN = "_position"
TXID_COLUMN = "_txid"
SEQ_COLUMN = "_seq"
# Present only in change-log files with updates whose source left some values out (unchanged
# PostgreSQL TOAST values): the names of those columns; the merge keeps the lake's values for them.
UNCHANGED_COLUMN = "_unchanged"
META_COLUMNS = (OP_COLUMN, COMMIT_TS_COLUMN, POSITION_COLUMN, TXID_COLUMN)
RESERVED_COLUMNS = frozenset(c.lower() for c in (*META_COLUMNS, SEQ_COLUMN, UNCHANGED_COLUMN))

UTC_MICROS = pa.timestamp("us", tz="UTC")
META_FIELDS = (
    pa.field(OP_COLUMN, pa.string(), nullable=False),
    pa.field(COMMIT_TS_COLUMN, UTC_MICROS, nullable=False),
    pa.field(POSITION_COLUMN, pa.string(), nullable=False),
    pa.field(TXID_COLUMN, pa.string(), nullable=True),
)


@dataclass(frozen=True, slots=True, order=True)
class TableId:
    """A source table: the source's configured name, the database or schema, and the table."""

    source: str
    schema: str
    name: str

    @property
    def lake_name(self) -> str:
        """The table's name in the lake: unique within a source, safe as a path segment."""
        return f"{self.schema}__{self.name}".lower()

    def __str__(self) -> str:
        return f"{self.source}:{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, Arrow type, and the source's own type text (for docs and errors)."""

    name: str
    type: pa.DataType
    nullable: bool = True
    source_type: str = ""


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A table's columns at one point in the stream, and its key columns."""

    table: TableId
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        clash = [n for n in names if n.lower() in RESERVED_COLUMNS]
        if clash:
            raise ValueError(f"{self.table}: column name(s) {clash} clash with the lake's metadata columns")
        missing = [k for k in self.key if k not in names]
        if missing:
            raise ValueError(f"{self.table}: key column(s) {missing} are not among the columns {names}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def arrow_schema(self) -> pa.Schema:
        """Metadata columns first (DMS puts `Op` first), then the row's columns."""
        return pa.schema([*META_FIELDS, *(pa.field(c.name, c.type, nullable=True) for c in self.columns)])


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One row change, as a row: the lingua franca for code that wants one change at a time."""

    op: Op
    table: TableId
    key: tuple[Any, ...]
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    position: str
    commit_ts: dt.datetime
    txid: str | None = None

    @property
    def row(self) -> Mapping[str, Any]:
        """The image the lake stores: the after-image, or the before-image for a delete."""
        image = self.before if self.op is Op.DELETE else self.after
        assert image is not None
        return image


@dataclass(frozen=True, slots=True)
class TableChanges:
    """Changes to one table under one schema version, in source order, as an Arrow table.

    `data` has the metadata columns (`Op`, `_commit_ts`, `_position`, `_txid`) followed by the
    schema's columns. A delete carries its before-image (at least the key).

    `unchanged` lists updates whose source did not send some column values (PostgreSQL leaves
    unchanged TOASTed values out of an UPDATE unless the table has REPLICA IDENTITY FULL): each
    entry is ``(row index in data, column names)``; those cells are null in `data` and the sink
    must keep the values it already has for that key.
    """

    schema: TableSchema
    data: pa.Table
    unchanged: tuple[tuple[int, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        expected = self.schema.arrow_schema()
        if self.data.schema.names != expected.names:
            raise ValueError(
                f"{self.schema.table}: data columns {self.data.schema.names} do not match the schema {expected.names}"
            )
        if self.unchanged:
            names = set(self.schema.column_names)
            for row, columns in self.unchanged:
                if not 0 <= row < self.data.num_rows or not set(columns) <= names:
                    raise ValueError(
                        f"{self.schema.table}: unchanged entry {(row, columns)} is outside the data"
                    )

    @property
    def table(self) -> TableId:
        return self.schema.table

    @property
    def num_rows(self) -> int:
        return self.data.num_rows

    @classmethod
    def from_rows(cls, schema: TableSchema, rows: Sequence[Mapping[str, Any]]) -> TableChanges:
        """Build from dicts holding the metadata columns and the row's columns (slow path, for tests)."""
        arrow_schema = schema.arrow_schema()
        columns = {f.name: [r.get(f.name) for r in rows] for f in arrow_schema}
        return cls(schema, pa.Table.from_pydict(columns, schema=arrow_schema))

    def events(self) -> Iterator[ChangeEvent]:
        """The same changes one at a time."""
        names = self.schema.column_names
        for rec in self.data.to_pylist():
            image = {n: rec[n] for n in names}
            op = Op(rec[OP_COLUMN])
            yield ChangeEvent(
                op=op,
                table=self.table,
                key=tuple(image[k] for k in self.schema.key),
                before=image if op is Op.DELETE else None,
                after=None if op is Op.DELETE else image,
                position=rec[POSITION_COLUMN],
                commit_ts=rec[COMMIT_TS_COLUMN],
                txid=rec[TXID_COLUMN],
            )


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    """A row the source could not convert, kept with the reason instead of being dropped."""

    table: TableId
    position: str
    commit_ts: dt.datetime
    reason: str
    payload: str  # the raw row rendered as text (repr of the decoded values or the wire bytes in hex)


@dataclass(frozen=True, slots=True)
class Batch:
    """A slice of a source's change stream.

    A batch with `complete=True` ends at a transaction boundary: the sink commits everything it has
    staged since its last commit together with `end`. A batch with `complete=False` is part of a
    larger unit (a huge transaction, a snapshot) that the sink stages but does not commit yet, so
    memory stays bounded and the lake never shows half a transaction.

    `snapshot` names tables whose rows in this commit unit are a full snapshot: the current state is
    replaced by them. `floors` says, per table, the source position up to which changes are already
    contained in the lake (set by snapshots and backfills): the source skips that table's changes at
    or below its floor.
    """

    start: Offset | None
    end: Offset | None
    changes: tuple[TableChanges, ...] = ()
    complete: bool = True
    snapshot: frozenset[TableId] = frozenset()
    floors: Mapping[TableId, Offset] = field(default_factory=dict)
    quarantined: tuple[QuarantinedRow, ...] = ()
    source_lag_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.complete and self.end is None:
            raise ValueError("a complete batch needs an end offset")

    @property
    def num_rows(self) -> int:
        return sum(c.num_rows for c in self.changes)

    def events(self) -> Iterator[ChangeEvent]:
        for changes in self.changes:
            yield from changes.events()
