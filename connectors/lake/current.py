"""Current-state tables: the change log merged into one row per key, as Apache Iceberg tables.

Each source table has an Iceberg table ``<source>.<schema>__<table>`` whose latest snapshot carries
the change-log commit it reflects in its summary (``lakehouse.commit-seq``). A merge reads only the
commits after that one which touched the table (the commit records chain them), keeps the latest
change per key, applies deletes, and commits the result as one Iceberg snapshot together with the
new commit seq — so the merge is atomic and re-running it is a no-op. Iceberg's own optimistic
concurrency rejects a second merger that raced on the same snapshot.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.table import Table as IcebergTable

from connectors.events import OP_COLUMN, SEQ_COLUMN, TXID_COLUMN, UNCHANGED_COLUMN
from connectors.lake.commits import CommitLog, CommitRecord
from connectors.lake.storage import Storage

log = logging.getLogger(__name__)

COMMIT_SEQ_PROPERTY = "lakehouse.commit-seq"
KEY_PROPERTY = "lakehouse.key"
# Change-log metadata columns the current state drops (it keeps _seq, _commit_ts, _position).
_DROP_FROM_STATE = (OP_COLUMN, TXID_COLUMN, UNCHANGED_COLUMN)
KEEP_SNAPSHOTS = 3


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What one merge did to one current-state table."""

    table: str
    commit_seq: int
    upserts: int
    deletes: int
    rows: int
    replaced: bool


class CurrentState:
    """The current-state tables of one source."""

    def __init__(self, storage: Storage, catalog: Catalog, source: str) -> None:
        self.storage = storage
        self.catalog = catalog
        self.source = source
        self.log = CommitLog(storage, source)
        with contextlib.suppress(NamespaceAlreadyExistsError):
            catalog.create_namespace(source)

    def identifier(self, lake_table: str) -> str:
        return f"{self.source}.{lake_table}"

    def load(self, lake_table: str) -> IcebergTable | None:
        try:
            return self.catalog.load_table(self.identifier(lake_table))
        except NoSuchTableError:
            return None

    def applied_seq(self, table: IcebergTable | None) -> int:
        if table is None or table.current_snapshot() is None:
            return 0
        summary = table.current_snapshot().summary  # type: ignore[union-attr]
        return int(summary.additional_properties.get(COMMIT_SEQ_PROPERTY, 0)) if summary else 0

    def read(self, lake_table: str) -> pa.Table:
        """The table's current rows (empty table if it does not exist yet)."""
        table = self.load(lake_table)
        if table is None:
            return pa.table({})
        return table.scan().to_arrow()

    def merge(self, latest: CommitRecord | None = None) -> list[MergeResult]:
        """Bring every table up to the latest commit; returns what changed."""
        latest = latest or self.log.latest()
        if latest is None:
            return []
        results = []
        for lake_table, head in sorted(latest.heads.items()):
            result = self.merge_table(lake_table, head)
            if result is not None:
                results.append(result)
        return results

    def merge_table(self, lake_table: str, head: int) -> MergeResult | None:
        table = self.load(lake_table)
        applied = self.applied_seq(table)
        if head <= applied:
            return None
        commits = self.log.walk_table(lake_table, head, applied)
        # A snapshot replaces the state: nothing before the latest one matters.
        start = max((i for i, c in enumerate(commits) if c.tables[lake_table].snapshot), default=None)
        replace = start is not None
        if replace:
            commits = commits[start:]
        changes = self._read_changes(lake_table, commits)
        key = self._key_columns(table, lake_table, commits)
        existing = None if (table is None or replace) else table.scan().to_arrow()
        latest = _latest_per_key(changes, key) if changes is not None else None
        if latest is not None and UNCHANGED_COLUMN in latest.column_names:
            assert changes is not None
            latest = _fill_unchanged(latest, changes, existing, key)
        deletes = 0
        upserts = pa.table({})
        if latest is not None and latest.num_rows:
            is_delete = pc.equal(latest[OP_COLUMN], "D")
            deletes = pc.sum(is_delete).as_py() or 0
            upserts = _state_columns(latest.filter(pc.invert(is_delete)))
        if table is None:
            if latest is None:
                return None
            schema = _nullable(_state_columns(latest).schema)
            table = self.catalog.create_table(
                self.identifier(lake_table), schema=schema, properties={KEY_PROPERTY: ",".join(key)}
            )
        if latest is not None and latest.num_rows:
            self._evolve_schema(table, _nullable(_state_columns(latest).schema))
        target_schema = table.schema().as_arrow()
        parts = []
        if existing is not None and existing.num_rows:
            keep = existing
            if latest is not None and latest.num_rows:
                keep = existing.filter(
                    pc.invert(pc.is_in(_key_array(existing, key), _key_array(latest, key)))
                )
            parts.append(_conform(keep, target_schema))
        if upserts.num_rows:
            parts.append(_conform(upserts, target_schema))
        new = pa.concat_tables(parts) if parts else target_schema.empty_table()
        with warnings.catch_warnings():
            # pyiceberg warns when the overwrite's implicit delete matches nothing (an empty table).
            warnings.filterwarnings("ignore", message="Delete operation did not match any records")
            table.overwrite(new, snapshot_properties={COMMIT_SEQ_PROPERTY: str(head)})
        self._expire(table)
        log.info("%s.%s: merged up to commit %d (%d rows)", self.source, lake_table, head, new.num_rows)
        return MergeResult(lake_table, head, upserts.num_rows, deletes, new.num_rows, replace)

    # -- helpers -------------------------------------------------------------------------------
    def _read_changes(self, lake_table: str, commits: Sequence[CommitRecord]) -> pa.Table | None:
        files = [f.path for c in commits for f in c.tables[lake_table].files]
        if not files:
            return None
        tables = [self.storage.read_parquet(p) for p in files]
        return pa.concat_tables(tables, promote_options="permissive")

    def _key_columns(
        self, table: IcebergTable | None, lake_table: str, commits: Sequence[CommitRecord]
    ) -> list[str]:
        if table is not None and table.properties.get(KEY_PROPERTY):
            return table.properties[KEY_PROPERTY].split(",")
        for c in commits:
            for f in c.tables[lake_table].files:
                meta = self.storage.read_parquet_schema(f.path).metadata or {}
                if b"lakehouse.key" in meta:
                    return meta[b"lakehouse.key"].decode().split(",")
        raise RuntimeError(f"{self.source}.{lake_table}: no key columns recorded in the change log")

    def _evolve_schema(self, table: IcebergTable, schema: pa.Schema) -> None:
        current = table.schema().as_arrow()
        if all(
            name in current.names and current.field(name).type == schema.field(name).type
            for name in schema.names
        ):
            return
        with table.update_schema() as update:
            update.union_by_name(schema)

    def _expire(self, table: IcebergTable) -> None:
        """Keep the last few snapshots; the data files of expired ones are deleted with them."""
        snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
        if len(snapshots) <= KEEP_SNAPSHOTS:
            return
        cutoff = snapshots[-KEEP_SNAPSHOTS].timestamp_ms
        before = _data_files(table)
        table.maintenance.expire_snapshots().older_than(
            dt.datetime.fromtimestamp(cutoff / 1000, dt.UTC)
        ).commit()
        table = self.catalog.load_table(self.identifier(table.name()[-1]))
        for path in before - _data_files(table):
            self.storage.fs.delete_file(path.removeprefix("file://").removeprefix("s3://"))


def _data_files(table: IcebergTable) -> set[str]:
    files: set[str] = set()
    for snapshot in table.snapshots():
        for manifest in snapshot.manifests(table.io):
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                files.add(entry.data_file.file_path)
    return files


def _state_columns(table: pa.Table) -> pa.Table:
    """Drop the change-log columns the current state does not keep."""
    return table.drop_columns([c for c in _DROP_FROM_STATE if c in table.column_names])


def _nullable(schema: pa.Schema) -> pa.Schema:
    """All columns optional, the row's own columns first and the lake's metadata columns last."""
    fields = [f.with_nullable(True) for f in schema]
    fields.sort(key=lambda f: f.name.startswith("_"))
    return pa.schema(fields)


def _key_array(table: pa.Table, key: Sequence[str]) -> pa.Array:
    """One comparable value per row for the key columns (joined text for composite keys)."""
    if len(key) == 1:
        return table[key[0]].combine_chunks()
    parts = [pc.cast(table[k], pa.string()) for k in key]
    return pc.binary_join_element_wise(*parts, "\x1f").combine_chunks()


def _latest_per_key(changes: pa.Table, key: Sequence[str]) -> pa.Table:
    """The last change (highest _seq) of every key."""
    grouped = changes.select([*key, SEQ_COLUMN]).group_by(list(key)).aggregate([(SEQ_COLUMN, "max")])
    winners = grouped[f"{SEQ_COLUMN}_max"]
    latest = changes.filter(pc.is_in(changes[SEQ_COLUMN], winners))
    return latest.sort_by(SEQ_COLUMN)


def _fill_unchanged(
    latest: pa.Table, changes: pa.Table, existing: pa.Table | None, key: Sequence[str]
) -> pa.Table:
    """Give columns the source did not send (unchanged TOAST values) the value the lake has.

    For each such cell: the newest earlier change of the same key that did carry the column,
    else the current-state row. Rare (only UPDATEs of TOASTed rows), so plain Python is fine.
    """
    marks = latest[UNCHANGED_COLUMN].to_pylist()
    todo = [i for i, m in enumerate(marks) if m]
    if not todo:
        return latest
    change_keys = _key_array(changes, key).to_pylist()
    change_marks = changes[UNCHANGED_COLUMN].to_pylist()
    change_seqs = changes[SEQ_COLUMN].to_pylist()
    latest_keys = _key_array(latest, key).to_pylist()
    existing_index: dict[object, int] = {}
    if existing is not None and existing.num_rows:
        existing_index = {k: i for i, k in enumerate(_key_array(existing, key).to_pylist())}
    columns = {name: latest[name].to_pylist() for name in {c for i in todo for c in marks[i]}}
    for i in todo:
        k, seq = latest_keys[i], latest[SEQ_COLUMN][i].as_py()
        earlier = sorted(
            (j for j, ck in enumerate(change_keys) if ck == k and change_seqs[j] < seq),
            key=lambda j: change_seqs[j],
            reverse=True,
        )
        for column in marks[i]:
            value = None
            for j in earlier:
                if column not in (change_marks[j] or ()) and changes[OP_COLUMN][j].as_py() != "D":
                    value = changes[column][j].as_py()
                    break
            else:
                if k in existing_index and column in existing.column_names:  # type: ignore[union-attr]
                    value = existing[column][existing_index[k]].as_py()  # type: ignore[index]
            columns[column][i] = value
    for name, values in columns.items():
        idx = latest.column_names.index(name)
        latest = latest.set_column(idx, latest.field(name), pa.array(values, latest.field(name).type))
    return latest


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/extend columns to `schema` (missing ones as nulls) and cast (widening only)."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(pc.cast(table[f.name], f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)
