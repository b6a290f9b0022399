"""Which tenant each change-log row belongs to, so a tenant's rows land under its own prefix (issue 16).

A tenant-owned table's change log is laid out ``changelog/<source>/<table>/<tag_key>=<tenant>/
commit_date=<day>/...``, so an IAM policy on the prefix (``${aws:PrincipalTag/<tag_key>}``) is
enough to isolate a tenant (docs/decisions.md §25). `TenantRouter` splits a table's staged rows by
tenant:

* a table with its own tenant `column`: the row's value (a delete's before-image; when that lacks
  the column, as a PostgreSQL delete under REPLICA IDENTITY DEFAULT does, the key's tenant from an
  earlier row of the batch, else from the lake);
* a `via` table: the tenant of the parent row whose `key` equals the row's `column`, as of the end
  of the batch: first the parent rows of the same batch (`note` runs over a whole batch before any
  of it is staged; matched as arrays), then a cache of every parent row this writer has staged,
  then the lake (`TenantLookup`: the parent's current state plus its committed change log not
  merged yet). The cache is written through by every parent row staged, so it never goes stale
  while this writer holds the source's lease (it is the source's only writer); past `max_cached`
  keys its oldest half is forgotten (the lake has them). With `defer`, a row whose parent is not
  known yet is handed back as pending: its parent may come later in the same commit unit.

A row whose tenant is missing (NULL or empty), not a safe id, or not found is not written to any
prefix: it is returned for quarantine with a reason naming the table and column.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.events import (
    COMMIT_TS_COLUMN,
    OP_COLUMN,
    POSITION_COLUMN,
    QuarantinedRow,
    TableChanges,
    TableId,
)
from connectors.tenancy import TenancyConfig, TenantTable

# The same ids the warehouse accepts (`connectors.catalog.tenant_views.check_tenant_id`), so a
# tenant is one name in every layer; also a safe S3 key segment and Hive partition value as is
# (no escaping: the IAM policy substitutes the raw principal tag value into the prefix).
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
TENANT_ID_RULE = "lower-case letters, digits, '_' or '-', at most 48"
# Zero-row change-log files of a tenant-owned table (they only record its schema and key) go here:
# no tenant's prefix, and engines skip directories starting with '_'.
SCHEMA_ONLY_DIR = "_schema"

# (lake table, key column, tenant column, keys) -> {key: tenant} for the keys the lake knows
TenantLookup = Callable[[str, str, str, Sequence[Any]], dict[Any, str | None]]


def tenant_segment(tag_key: str, tenant: str) -> str:
    """The path segment of a tenant's rows: ``<tag_key>=<tenant>`` (a Hive partition)."""
    return f"{tag_key}={tenant}"


def is_tenant_id(value: object) -> bool:
    return isinstance(value, str) and TENANT_ID.match(value) is not None


@dataclass
class TenantSplit:
    """A table's staged rows split by tenant, and the rows that go to quarantine instead."""

    parts: list[tuple[str, pa.Table]] = field(default_factory=list)
    quarantined: list[QuarantinedRow] = field(default_factory=list)
    # `via` rows whose parent is not known yet (split with `defer`): the writer keeps them staged
    # and splits them again when the unit commits, after the unit's later batches were noted.
    pending: pa.Table | None = None


class TenantRouter:
    """Routes one source's rows of tenant-owned tables to their tenant (see module docstring)."""

    def __init__(
        self,
        tenancy: TenancyConfig,
        source: str,
        lookup: TenantLookup | None = None,
        *,
        max_cached: int = 1_000_000,
    ) -> None:
        self.tag_key = tenancy.tag_key
        self.source = source
        self._owned = tenancy.owned(source)
        self._lookup = lookup
        self._max_cached = max_cached
        # (table name, key column) -> {key value: tenant}; for parents and self-lookups of deletes
        self._cache: dict[tuple[str, str], dict[Any, str | None]] = {}
        self._recent: dict[str, tuple[pa.Array, pa.Array]] = {}  # parent -> (keys, tenants) last noted
        self._unnoted: dict[tuple[str, str], list[tuple[pa.Array, pa.Array]]] = {}  # not in _cache yet
        # A snapshot's chunks are staged in a worker thread beside the stream's batches.
        self._lock = threading.RLock()
        self._cached = 0
        # parent table name -> (key column, tenant column) that children resolve through
        self._parents: dict[str, tuple[str, str]] = {}
        for declared in self._owned.values():
            if declared.via is not None:
                parent = self._owned[declared.via.table]
                assert parent.column is not None  # TenancyConfig checks it
                self._parents[declared.via.table] = (declared.via.key, parent.column)

    def is_parent(self, lake_table: str) -> bool:
        """Whether `lake_table` gives `via` tables their tenant (snapshots read it first)."""
        return any(lake_table.endswith(f"__{parent.lower()}") for parent in self._parents)

    def owns(self, table: TableId) -> bool:
        return table.name in self._owned

    def declared(self, table: TableId) -> TenantTable | None:
        return self._owned.get(table.name)

    # -- the cache -------------------------------------------------------------------------------
    def note(self, changes: Iterable[TableChanges]) -> None:
        """Remember the tenant of every parent row in `changes` (the tables `via` tables go
        through), by the key children reference; later rows of a key overwrite earlier ones."""
        with self._lock:
            self._note(changes)

    def _note(self, changes: Iterable[TableChanges]) -> None:
        local: dict[str, list[tuple[pa.Array, pa.Array]]] = {}
        for tc in changes:
            parent = self._parents.get(tc.table.name)
            if parent is None or tc.num_rows == 0:
                continue
            key, column = parent
            if key not in tc.data.column_names or column not in tc.data.column_names:
                continue
            tenants, keys = _tenant_strings(tc.data[column]), tc.data[key].combine_chunks()
            known = pc.and_(pc.is_valid(keys), pc.is_valid(tenants))
            keys, tenants = keys.filter(known), tenants.filter(known)
            local.setdefault(tc.table.name, []).append((keys, tenants))
            # Into the cache only when a child misses the batch's own parents (`_resolve`):
            # building a dict row by row costs as much as staging the rows.
            unnoted = self._unnoted.setdefault((tc.table.name, key), [])
            unnoted.append((keys, tenants))
            while len(unnoted) > 1 and sum(len(k) for k, _ in unnoted) > self._max_cached:
                unnoted.pop(0)  # the oldest: the lake has them once their unit is committed
        # The newest parent rows as arrays too, newest first (`index_in` takes the first match):
        # children in the same batch are resolved without a Python lookup per row.
        for name, pairs in local.items():
            keys = pa.concat_arrays([k for k, _ in pairs])
            tenants = pa.concat_arrays([t for _, t in pairs])
            reverse = pa.array(range(len(keys) - 1, -1, -1), pa.int64())
            self._recent[name] = (keys.take(reverse), tenants.take(reverse))

    def _cache_of(self, table: str, key: str) -> dict[Any, str | None]:
        cache = self._cache.setdefault((table, key), {})
        for keys, tenants in self._unnoted.pop((table, key), []):
            before = len(cache)
            cache.update(zip(keys.to_pylist(), tenants.to_pylist(), strict=True))
            self._cached += len(cache) - before
        if self._cached > self._max_cached:
            # Forget the oldest half of each cache (dicts keep insertion order); the lake has them.
            for each in self._cache.values():
                for old in list(itertools.islice(each, len(each) // 2)):
                    del each[old]
            self._cached = sum(len(each) for each in self._cache.values())
        return cache

    def _resolve(
        self, table: TableId, key: str, tenant_column: str, values: Sequence[Any], use_lake: bool = True
    ) -> dict[Any, str | None]:
        """Tenants of `table`'s rows with `key` in `values` (distinct): cache first, then the lake."""
        cache = self._cache_of(table.name, key)
        tenants = list(map(cache.get, values))
        missing = [v for v, t in zip(values, tenants, strict=True) if t is None and v is not None]
        if missing and use_lake and self._lookup is not None:
            found = self._lookup(table.lake_name, key, tenant_column, missing)
            for value, tenant in found.items():
                if tenant:
                    cache[value] = tenant
                    self._cached += 1
            tenants = list(map(cache.get, values))
        return dict(zip(values, tenants, strict=True))

    # -- splitting -------------------------------------------------------------------------------
    def split(
        self,
        table: TableId,
        key: Sequence[str],
        data: pa.Table,
        *,
        defer: bool = False,
        use_lake: bool = True,
    ) -> TenantSplit:
        """`data` (rows of `table`, whose key columns are `key`) split by tenant. With `defer`,
        `via` rows whose parent neither this writer nor the lake knows are returned as `pending`
        instead of quarantined; `use_lake=False` consults only what this writer has noted."""
        with self._lock:
            return self._split(table, tuple(key), data, defer, use_lake)

    def _split(
        self, table: TableId, key: tuple[str, ...], data: pa.Table, defer: bool, use_lake: bool
    ) -> TenantSplit:
        declared = self.declared(table)
        assert declared is not None
        out = TenantSplit()
        if data.num_rows == 0:
            return out
        if declared.column is not None:
            tenants = self._own_tenants(table, tuple(key), data, declared.column, use_lake)
        else:
            tenants = self._via_tenants(table, data, declared, use_lake)
            if defer and declared.via is not None and declared.via.column in data.column_names:
                unknown = pc.and_(pc.is_valid(data[declared.via.column]), pc.is_null(tenants))
                if pc.any(unknown).as_py():
                    out.pending = data.filter(unknown)
                    known = pc.invert(unknown)
                    data, tenants = data.filter(known), tenants.filter(known)
        if isinstance(tenants, pa.ChunkedArray):
            tenants = tenants.combine_chunks()
        # A batch holds few distinct tenants: check and group their dictionary codes, not strings.
        encoded = tenants.dictionary_encode()
        ids, codes = encoded.dictionary.to_pylist(), encoded.indices
        safe = pa.array([is_tenant_id(t) for t in ids], pa.bool_())
        bad = pc.fill_null(pc.invert(pc.take(safe, codes)), True)
        if codes.null_count or not all(safe.to_pylist()):
            out.quarantined = self._quarantine(table, declared, data, bad, tenants)
            keep = pc.invert(bad)
            data, codes = data.filter(keep), codes.filter(keep)
        if data.num_rows == 0:
            return out
        first, last = pc.min_max(codes).values()
        if first == last:
            out.parts.append((ids[first.as_py()], data))
            return out
        # One stable sort by tenant, then contiguous slices: each tenant keeps its rows' order.
        order = pc.sort_indices(codes)
        data, codes = data.take(order), codes.take(order)
        runs = pc.run_end_encode(codes)
        ends = runs.run_ends.to_pylist()  # type: ignore[attr-defined]
        values = runs.values.to_pylist()  # type: ignore[attr-defined]
        start = 0
        for end, code in zip(ends, values, strict=True):
            out.parts.append((ids[code], data.slice(start, end - start)))
            start = end
        return out

    def _own_tenants(
        self, table: TableId, key: tuple[str, ...], data: pa.Table, column: str, use_lake: bool
    ) -> pa.Array:
        tenants = _tenant_strings(data[column])
        # A delete whose before-image lacks the tenant (only the key was logged): the key's tenant.
        if not tenants.null_count or len(key) != 1:
            return tenants
        need = pc.and_(pc.is_null(tenants), pc.equal(data[OP_COLUMN], "D"))
        if pc.any(need).as_py():
            rows = pc.indices_nonzero(need).to_pylist()
            keys = data[key[0]].take(rows).to_pylist()
            # The key's tenant from an earlier row of this batch, else the lake.
            here = pc.is_valid(tenants)
            found = dict(
                zip(data[key[0]].filter(here).to_pylist(), tenants.filter(here).to_pylist(), strict=True)
            )
            rest = [k for k in keys if k not in found]
            if rest:
                found.update(self._resolve(table, key[0], column, rest, use_lake))
            values = tenants.to_pylist()
            for row, k in zip(rows, keys, strict=True):
                values[row] = found.get(k)
            tenants = pa.array(values, pa.string())
        return tenants

    def _via_tenants(self, table: TableId, data: pa.Table, declared: TenantTable, use_lake: bool) -> pa.Array:
        via = declared.via
        assert via is not None
        if via.column not in data.column_names:
            return pa.nulls(data.num_rows, pa.string())
        parent = TableId(table.source, table.schema, via.table)
        _, tenant_column = self._parents[via.table]
        refs = data[via.column].combine_chunks()
        tenants = pa.nulls(len(refs), pa.string())
        recent = self._recent.get(via.table)
        if recent is not None:
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                tenants = pc.take(recent[1], pc.index_in(refs, value_set=recent[0].cast(refs.type)))
        unresolved = pc.and_(pc.is_valid(refs), pc.is_null(tenants))
        if not pc.any(unresolved).as_py():
            return tenants
        keys = pc.unique(refs.filter(unresolved))
        listed = keys.to_pylist()
        found = self._resolve(parent, via.key, tenant_column, listed, use_lake)
        by_key = pa.array(list(map(found.get, listed)), pa.string())
        return pc.coalesce(tenants, pc.take(by_key, pc.index_in(refs, value_set=keys)))

    def _reason(self, table: TableId, declared: TenantTable, rec: dict[str, Any], tenant: str | None) -> str:
        """Why a row has no usable tenant, naming the table and the column it comes from."""
        if declared.column is not None:
            column = declared.column
            if tenant is None or tenant == "":
                return (
                    f"{table}: tenant column {column!r} is NULL or empty "
                    f'(tenancy.tables."{self.source}.{table.name}")'
                )
            return (
                f"{table}: tenant {tenant!r} in column {column!r} is not a safe tenant id ({TENANT_ID_RULE})"
            )
        via = declared.via
        assert via is not None
        value = rec.get(via.column)
        if value is None:
            return f"{table}: column {via.column!r} is NULL; the row's tenant comes from {via.table}"
        if tenant is None:
            return (
                f"{table}: no tenant for {via.column}={value!r}: no row of {via.table} with "
                f"{via.key}={value!r} in this batch or the lake"
            )
        return (
            f"{table}: the tenant {tenant!r} of {via.table} {via.key}={value!r} is not a safe tenant id "
            f"({TENANT_ID_RULE})"
        )

    def _quarantine(
        self, table: TableId, declared: TenantTable, data: pa.Table, bad: pa.Array, tenants: pa.Array
    ) -> list[QuarantinedRow]:
        rows = pc.indices_nonzero(bad)
        picked = data.take(rows).to_pylist()
        out = []
        for rec, tenant in zip(picked, tenants.take(rows).to_pylist(), strict=True):
            ts: dt.datetime = rec[COMMIT_TS_COLUMN]
            payload = {k: v for k, v in rec.items() if not k.startswith("_")}
            reason = self._reason(table, declared, rec, tenant)
            out.append(QuarantinedRow(table, rec[POSITION_COLUMN], ts, reason, repr(payload)))
        return out


def _tenant_strings(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A tenant column as strings (integer ids too), nulls kept."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_large_string(array.type) or pa.types.is_integer(array.type):
        return pc.cast(array, pa.string())
    return pa.array([None if v is None else str(v) for v in array.to_pylist()], pa.string())
