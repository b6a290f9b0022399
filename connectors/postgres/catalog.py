"""What the source's catalog says about tables and types, and the resulting table layouts.

A `TableLayout` is one table under one schema version: the `TableSchema` the lake sees plus the
converter of each column. The snapshot builds it from pg_attribute; the stream builds it from a
pgoutput Relation message (names, type OIDs and typmods as of that point in the WAL), so both
paths map types through the same `connectors.postgres.types.column_type`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from connectors.events import Column, TableId, TableSchema
from connectors.postgres.types import ColumnType, TypeInfo, column_type


@dataclass(frozen=True, slots=True)
class RelationColumn:
    """A column as pgoutput's Relation message (or pg_attribute) describes it."""

    name: str
    type_oid: int
    typmod: int
    in_identity: bool = False  # part of the replica identity (the key for REPLICA IDENTITY DEFAULT)


@dataclass(frozen=True, slots=True)
class TableLayout:
    """One table under one schema version: the lake schema and how to convert each column."""

    schema: TableSchema
    types: tuple[ColumnType, ...]
    replica_identity: str  # 'd' default, 'f' full, 'i' index, 'n' nothing

    @property
    def table(self) -> TableId:
        return self.schema.table

    @property
    def key_indexes(self) -> tuple[int, ...]:
        names = self.schema.column_names
        return tuple(names.index(k) for k in self.schema.key)


def qualified(table: TableId) -> sql.Composed:
    """``"schema"."table"`` as a safely quoted SQL fragment."""
    return sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name))


class Catalog:
    """Catalog queries over one SQL connection, with the type information cached."""

    def __init__(self, conn: Any, timezone: str) -> None:
        self._conn = conn
        self._timezone = timezone
        self._types: dict[int, TypeInfo] = {}
        self._type_text: dict[tuple[int, int], str] = {}

    def _fetchall(self, query: str | sql.Composable, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    # --- types ---------------------------------------------------------------------------------

    def load_types(self, oids: Iterable[int]) -> dict[int, TypeInfo]:
        """`TypeInfo` for `oids` and, transitively, their array element and domain base types."""
        wanted = {o for o in oids if o not in self._types}
        while wanted:
            rows = self._fetchall(
                "SELECT t.oid, n.nspname, t.typname, t.typtype, t.typcategory, t.typelem, t.typbasetype, t.typtypmod"
                " FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
                " WHERE t.oid = ANY(%s::oid[])",
                (sorted(wanted),),
            )
            for oid, nsp, name, typtype, category, elem, base, base_typmod in rows:
                self._types[oid] = TypeInfo(oid, nsp, name, typtype, category, elem, base, base_typmod)
            missing = wanted - self._types.keys()
            if missing:
                raise LookupError(
                    f"type OID(s) {sorted(missing)} not found in pg_type (dropped concurrently?)"
                )
            wanted = {
                ref for oid in wanted for ref in (self._types[oid].element, self._types[oid].base) if ref
            } - self._types.keys()
        return self._types

    def loaded_type_oids(self) -> tuple[int, ...]:
        """Every type OID loaded so far (columns' types with their element and base types)."""
        return tuple(sorted(self._types))

    def type_texts(self, pairs: Sequence[tuple[int, int]]) -> list[str]:
        """``format_type(oid, typmod)`` for each pair, e.g. ``numeric(18,2)``."""
        missing = [p for p in pairs if p not in self._type_text]
        if missing:
            rows = self._fetchall(
                "SELECT o, m, format_type(o, m) FROM unnest(%s::oid[], %s::int[]) AS u(o, m)",
                ([p[0] for p in missing], [p[1] for p in missing]),
            )
            for oid, typmod, text in rows:
                self._type_text[(oid, typmod)] = text
        return [self._type_text[p] for p in pairs]

    # --- tables --------------------------------------------------------------------------------

    def list_tables(self, schema: str) -> list[str]:
        """Base tables of `schema` (partitioned tables as a whole, not their partitions)."""
        rows = self._fetchall(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname",
            (schema,),
        )
        return [r[0] for r in rows]

    def primary_key(self, table: TableId) -> tuple[str, ...]:
        """The primary key's columns in key order, or () when the table has none."""
        rows = self._fetchall(
            "SELECT a.attname FROM pg_catalog.pg_index i"
            " JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true"
            " JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            # to_regclass: a Relation message may describe a table dropped since (no key then).
            " WHERE i.indrelid = to_regclass(%s) AND i.indisprimary ORDER BY k.ord",
            (qualified(table).as_string(self._conn),),
        )
        return tuple(r[0] for r in rows)

    def replica_identity(self, table: TableId) -> str:
        rows = self._fetchall(
            "SELECT relreplident FROM pg_catalog.pg_class WHERE oid = %s::regclass",
            (qualified(table).as_string(self._conn),),
        )
        return str(rows[0][0])

    def estimated_rows(self, table: TableId) -> int | None:
        """pg_class.reltuples (None before the first VACUUM/ANALYZE): for progress messages only."""
        rows = self._fetchall(
            "SELECT reltuples::bigint FROM pg_catalog.pg_class WHERE oid = %s::regclass",
            (qualified(table).as_string(self._conn),),
        )
        value = rows[0][0] if rows else None
        return int(value) if value is not None and value >= 0 else None

    def table_columns(self, table: TableId) -> list[RelationColumn]:
        """The columns pgoutput publishes (not dropped, not generated), in attribute order."""
        rows = self._fetchall(
            "SELECT attname, atttypid, atttypmod FROM pg_catalog.pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''"
            " ORDER BY attnum",
            (qualified(table).as_string(self._conn),),
        )
        return [RelationColumn(name, oid, typmod) for name, oid, typmod in rows]

    # --- layouts -------------------------------------------------------------------------------

    def layout(self, table: TableId, columns: Sequence[RelationColumn], replica_identity: str) -> TableLayout:
        """The layout of `table` with `columns` (from pg_attribute or a Relation message).

        The key is the primary key when the table has one (with REPLICA IDENTITY FULL pgoutput flags
        every column as identity, which is not a useful merge key); otherwise the identity columns.
        """
        types = self.load_types(c.type_oid for c in columns)
        texts = self.type_texts([(c.type_oid, c.typmod) for c in columns])
        mapped = [column_type(c.type_oid, c.typmod, types, self._timezone) for c in columns]
        names = [c.name for c in columns]
        key = self.primary_key(table)
        if not key or not set(key) <= set(names):
            key = tuple(c.name for c in columns if c.in_identity)
        schema = TableSchema(
            table=table,
            columns=tuple(
                Column(c.name, m.arrow_type, nullable=True, source_type=text)
                for c, m, text in zip(columns, mapped, texts, strict=True)
            ),
            key=key,
        )
        return TableLayout(schema, tuple(mapped), replica_identity)

    def describe(self, table: TableId) -> TableLayout:
        """The table's current layout from the catalog (for snapshots)."""
        return self.layout(table, self.table_columns(table), self.replica_identity(table))
