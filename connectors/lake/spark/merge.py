"""Merging a current-state table with Spark: Iceberg ``MERGE INTO``, for tables too large for one process.

The semantics are `CurrentState.merge_table`'s, step for step: the commits after the table's
merged seq (``lakehouse.commit-seq`` in its snapshot summary), from the latest snapshot commit on
and a backfill's replayed commits before it; each key's latest change by ``_seq``; deletes; values
an UPDATE did not send (``_unchanged``, PostgreSQL TOAST) taken from the key's newest earlier change
that sent them, else from the current row; and one snapshot whose summary carries the merged seq,
so a replay finds nothing to do and commits nothing. Table creation and schema evolution stay with
pyiceberg (metadata only, so both paths create and evolve tables identically); Spark reads the
change-log files and writes the rows.

Merge-on-read (``write.merge.mode=merge-on-read``): the in-process path writes position deletes
too, so a table moves between the paths without changing layout, and a merge's cost follows its
change rather than the table (copy-on-write would rewrite every data file holding a changed key,
which for a batch of random keys is every file). Nothing here compacts: an in-process merge of the
table does (its policy), so a table merged only by Spark gathers small data and delete files. The
table stays Iceberg format-version 2: Iceberg 1.10 writes v3 deletes as deletion vectors, which
pyiceberg 0.12 cannot read. Snapshots the lake's retention no longer keeps are expired after each
Spark commit, their files recorded as orphans, as an in-process commit does.

The session (catalog, storage, jars) is `connectors.lake.spark.session`'s.

Not supported: tables with an Iceberg ``time`` column (PostgreSQL ``time``), which Spark 3.5 cannot
read (Iceberg: "Spark does not support time fields"): `SparkUnsupportedTableError`, merge those
in-process.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import sqlglot.expressions as sx
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table.update import AssertRefSnapshotId, AssertTableUUID, RemoveSnapshotsUpdate

from connectors.events import OP_COLUMN, SEQ_COLUMN, TXID_COLUMN, UNCHANGED_COLUMN
from connectors.lake.changeset import state_schema
from connectors.lake.commits import CommitRecord
from connectors.lake.current import (
    _TABLE_PROPERTIES,
    COMMIT_SEQ_PROPERTY,
    KEY_PROPERTY,
    CurrentState,
    MergeConflictError,
    MergeResult,
    MergerUnsupportedError,
    _live_rows,
    _nullable,
)
from connectors.lake.iceberg_commit import MAIN_BRANCH
from connectors.lake.iceberg_expiry import Expiry, dropped_metadata_files, orphaned_files, split_snapshots
from connectors.lake.spark.session import SPARK_CATALOG

if TYPE_CHECKING:
    from pyiceberg.table import Table as IcebergTable
    from pyspark.sql import DataFrame, SparkSession


log = logging.getLogger(__name__)

MERGE_ON_READ = {
    "write.merge.mode": "merge-on-read",
    "write.update.mode": "merge-on-read",
    "write.delete.mode": "merge-on-read",
}
_DELETE = "__lakehouse_delete"
_RANK = "__lakehouse_rank"
# Errors of a Spark commit that mean another writer changed the table first (Iceberg's
# serializable validation of a MERGE, or the catalog's compare-and-swap after its retries).
_CONFLICTS = ("ValidationException", "CommitFailedException", "CommitStateUnknownException")


class SparkMergeError(Exception):
    """The Spark merge failed; nothing of it is visible (Iceberg commits atomically)."""


class SparkUnsupportedTableError(SparkMergeError, MergerUnsupportedError):
    """The table has columns Spark cannot read or write (Iceberg ``time``): merge it in-process."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which change-log files a merge up to `head` applies, and whether they replace the table."""

    commits: list[CommitRecord]
    paths: list[str]
    replace: bool


def merge_with_spark(
    spark: SparkSession, current: CurrentState, lake_table: str, head: int, *, catalog: str = SPARK_CATALOG
) -> MergeResult | None:
    """Merge the commits up to `head` into one table with Spark; None if it is already there.

    The Spark counterpart of `CurrentState.merge_table(lake_table, head)`, same arguments and
    result. `spark` must have the lake's catalog as `catalog` (`local_spark_session`, or
    `spark_conf` in a job). Raises `MergeConflictError` if another writer changed the table
    meanwhile, `SparkUnsupportedTableError` for a table Spark cannot handle.
    """
    table = current.load(lake_table)
    applied = current.applied_seq(table)
    if head <= applied:
        return None
    plan = _plan(current, lake_table, head, applied)
    if not plan.paths:
        # Nothing to read (a table emptied by a snapshot of no rows): metadata only, in-process.
        return current.merge_table_in_process(lake_table, head)
    key = current._key_columns(table, lake_table, plan.commits)
    file_schemas = {p: current.storage.read_parquet_schema(p) for p in plan.paths}
    schema = _nullable(
        state_schema(pa.unify_schemas(list(file_schemas.values()), promote_options="permissive"))
    )
    _refuse_unsupported(current.identifier(lake_table), schema, table)
    table = _prepare_table(current, lake_table, table, key, schema)
    base = table.current_snapshot()
    identifier = _spark_identifier(catalog, current.source, lake_table)
    spark.catalog.refreshTable(identifier)
    target = spark.table(identifier).schema
    changes = _read_changes(spark, current, file_schemas, {f.name: f.dataType for f in target})
    source, keep = _latest_per_key(changes, key, plan.replace)
    source = source.persist()
    try:
        counts = {bool(r[_DELETE]): r["count"] for r in source.groupBy(_DELETE).count().collect()}
        upserts, deletes = counts.get(False, 0), counts.get(True, 0)
        if not upserts and not deletes:
            return current.merge_table_in_process(lake_table, head)  # empty change files
        properties = {COMMIT_SEQ_PROPERTY: str(head)}
        columns = [f.name for f in target]
        if plan.replace:
            log.info("%s: rewriting the table with Spark (snapshot replaces the table)", identifier)
            _overwrite(source, identifier, columns, key, properties)
        else:
            view = f"__lakehouse_merge_{uuid.uuid4().hex}"  # one per merge: sessions may be shared
            source.createOrReplaceTempView(view)
            try:
                statement = _merge_statement(identifier, view, columns, key, keep)
                _run_with_commit_properties(spark, statement.sql(dialect="spark"), properties, identifier)
            finally:
                spark.catalog.dropTempView(view)
    finally:
        source.unpersist()
    return _finish(current, lake_table, table, base, head, upserts, deletes, plan.replace)


def _plan(current: CurrentState, lake_table: str, head: int, applied: int) -> _Plan:
    """The commits to apply, as `CurrentState._merge_table` chooses them."""
    commits = current.log.walk_table(lake_table, head, applied)
    # A snapshot replaces the state: nothing before the latest one matters, except, for a
    # backfill staged while the stream went on, the commits after the one it was staged from.
    start = max((i for i, c in enumerate(commits) if c.tables[lake_table].snapshot), default=None)
    if start is not None:
        snapshot = commits[start].tables[lake_table]
        commits = commits[start:]
        if snapshot.replay_after is not None:
            commits = current.log.walk_table(lake_table, snapshot.prev_seq, snapshot.replay_after) + commits
    paths = [f.path for c in commits for f in c.tables[lake_table].files]
    return _Plan(commits, paths, start is not None)


def _refuse_unsupported(name: str, schema: pa.Schema, table: IcebergTable | None) -> None:
    columns = [f.name for f in schema if _has_time(f.type)]
    if table is not None:
        columns += [f.name for f in table.schema().as_arrow() if _has_time(f.type) and f.name not in columns]
    if columns:
        raise SparkUnsupportedTableError(
            f"{name}: column(s) {columns} are Iceberg 'time', which Spark 3.5 cannot read; merge in-process"
        )


def _has_time(t: pa.DataType) -> bool:
    if pa.types.is_time(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _has_time(t.value_type)
    if pa.types.is_struct(t):
        return any(_has_time(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_map(t):
        return _has_time(t.key_type) or _has_time(t.item_type)
    return False


def _prepare_table(
    current: CurrentState, lake_table: str, table: IcebergTable | None, key: Sequence[str], schema: pa.Schema
) -> IcebergTable:
    """Create or evolve the table with pyiceberg, as the in-process merge does, merge-on-read."""
    if table is None:
        return current.catalog.create_table(
            current.identifier(lake_table),
            schema=schema,
            properties={KEY_PROPERTY: ",".join(key), **_TABLE_PROPERTIES, **MERGE_ON_READ},
        )
    current._evolve_schema(table, table.schema().as_arrow(), schema)
    missing = {k: v for k, v in MERGE_ON_READ.items() if table.properties.get(k) != v}
    if missing:
        base, base_location = table.metadata, table.metadata_location
        with table.transaction() as transaction:
            transaction.set_properties(missing)
        _record_metadata_orphans(current, lake_table, base, base_location, table)
    return table


def _spark_identifier(catalog: str, namespace: str, name: str) -> str:
    return ".".join(_quote(part) for part in (catalog, namespace, name))


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _read_changes(
    spark: SparkSession, current: CurrentState, file_schemas: Mapping[str, pa.Schema], target: dict[str, Any]
) -> DataFrame:
    """The change rows, with the table's column types (files of one schema read together)."""
    from pyspark.sql import functions as F

    groups: dict[str, list[str]] = {}
    for path, file_schema in file_schemas.items():
        # Files written before a column was added or widened differ: Spark's reader takes one
        # schema per read, so read each schema's files together and cast to the table's types.
        groups.setdefault(file_schema.to_string(), []).append(path)
    frames = []
    for files in groups.values():
        frame = spark.read.parquet(*(current.storage.uri(p) for p in files))
        frames.append(
            frame.select(
                *(
                    F.col(_quote(c)).cast(target[c]).alias(c) if c in target else F.col(_quote(c))
                    for c in frame.columns
                    if c != TXID_COLUMN
                )
            )
        )
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def _latest_per_key(
    changes: DataFrame, key: Sequence[str], replace: bool
) -> tuple[DataFrame, dict[str, str]]:
    """Each key's latest change (highest ``_seq``), unsent values filled in; and, per column whose
    value may have to stay the current row's, the name of the flag column that says so."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = [F.col(_quote(k)) for k in key]
    keep: dict[str, str] = {}
    if UNCHANGED_COLUMN in changes.columns:
        marked = [r[0] for r in changes.select(F.explode(UNCHANGED_COLUMN)).distinct().collect()]
        marked = sorted(c for c in marked if c in changes.columns and c not in key)
        if marked:
            changes, keep = _fill_unchanged(changes, keys, marked, replace)
    latest = Window.partitionBy(*keys).orderBy(F.col(SEQ_COLUMN).desc())
    ranked = changes.withColumn(_RANK, F.row_number().over(latest))
    winners = ranked.where(F.col(_RANK) == 1).drop(_RANK)
    winners = winners.withColumn(_DELETE, F.col(OP_COLUMN) == F.lit("D"))
    return winners.drop(*(c for c in (OP_COLUMN, UNCHANGED_COLUMN) if c in winners.columns)), keep


def _fill_unchanged(
    changes: DataFrame, keys: list[Any], marked: Sequence[str], replace: bool
) -> tuple[DataFrame, dict[str, str]]:
    """As `changeset._fill_unchanged`: a value the change did not send is the key's newest earlier
    change's that sent it (deletes skipped), else the current row's (none when the merge
    replaces the table)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    earlier = (
        Window.partitionBy(*keys)
        .orderBy(F.col(SEQ_COLUMN))
        .rowsBetween(Window.unboundedPreceding, Window.currentRow - 1)
    )
    unsent = F.coalesce(F.col(UNCHANGED_COLUMN), F.array().cast("array<string>"))
    keep: dict[str, str] = {}
    for i, column in enumerate(marked):
        value = F.col(_quote(column))
        is_marked = F.array_contains(unsent, column)
        # A struct, so an earlier change that sent NULL counts as having sent it.
        sent = F.when((F.col(OP_COLUMN) != F.lit("D")) & ~is_marked, F.struct(value.alias("v")))
        carried = F.last(sent, ignorenulls=True).over(earlier)
        changes = changes.withColumn(f"__lakehouse_carried_{i}", carried)
        found = F.col(f"__lakehouse_carried_{i}")
        changes = changes.withColumn(column, F.when(is_marked, found.getField("v")).otherwise(value))
        if not replace:
            flag = f"__lakehouse_keep_{i}"
            changes = changes.withColumn(flag, is_marked & found.isNull())
            keep[column] = flag
        changes = changes.drop(f"__lakehouse_carried_{i}")
    return changes, keep


def _merge_statement(
    identifier: str, view: str, columns: Sequence[str], key: Sequence[str], keep: Mapping[str, str]
) -> sx.Merge:
    """``MERGE INTO`` the table from the latest changes: delete, update every column, insert."""

    def t(name: str) -> sx.Column:
        return sx.column(name, table="t", quoted=True)

    def s(name: str) -> sx.Column:
        return sx.column(name, table="s", quoted=True)

    def assigned(column: str) -> sx.Expression:
        if column not in keep:
            return s(column)
        return sx.Case(ifs=[sx.If(this=s(keep[column]), true=t(column))], default=s(column))

    is_delete = s(_DELETE)
    target = sx.to_table(identifier, dialect="spark")
    target.set("alias", sx.TableAlias(this=sx.to_identifier("t")))
    return sx.Merge(
        this=target,
        using=sx.Table(this=sx.to_identifier(view), alias=sx.TableAlias(this=sx.to_identifier("s"))),
        on=sx.and_(*(sx.EQ(this=t(k), expression=s(k)) for k in key)),
        whens=sx.Whens(
            expressions=[
                sx.When(matched=True, source=False, condition=is_delete, then=sx.var("DELETE")),
                sx.When(
                    matched=True,
                    source=False,
                    then=sx.Update(
                        expressions=[
                            sx.EQ(this=t(c), expression=assigned(c)) for c in columns if c not in key
                        ]
                    ),
                ),
                sx.When(
                    matched=False,
                    source=False,
                    condition=sx.not_(is_delete),
                    then=sx.Insert(
                        this=sx.Tuple(expressions=[sx.column(c, quoted=True) for c in columns]),
                        expression=sx.Tuple(expressions=[s(c) for c in columns]),
                    ),
                ),
            ]
        ),
    )


def _overwrite(
    source: DataFrame,
    identifier: str,
    columns: Sequence[str],
    key: Sequence[str],
    properties: Mapping[str, str],
) -> None:
    """Replace the table's rows (a snapshot commit), sorted by key as the in-process path writes them."""
    from pyspark.sql import functions as F

    rows = source.where(~F.col(_DELETE)).select(*(F.col(_quote(c)) for c in columns))
    writer = rows.orderBy(*(F.col(_quote(k)) for k in key)).writeTo(identifier)
    for name, value in properties.items():
        writer = writer.option(f"snapshot-property.{name}", value)
    try:
        writer.overwrite(F.lit(True))
    except Exception as e:
        _raise_conflict(identifier, e)
        raise


def _run_with_commit_properties(
    spark: SparkSession, statement: str, properties: Mapping[str, str], what: str
) -> None:
    """Run one SQL statement whose Iceberg commit carries `properties` in its snapshot summary.

    SQL ``MERGE`` takes no write options, so ``snapshot-property.*`` cannot be passed; Iceberg's
    `CommitMetadata.withCommitProperties(properties, callable, exClass)` sets them, for the
    commits the callable makes, in a Java thread-local. PySpark's py4j gateway pins each Python
    thread to one Java thread, and a Java-to-Python callback runs on the Python thread paired with
    the calling Java thread, so the statement run from the callback commits on the thread that
    holds the properties.
    """
    from py4j.clientserver import ClientServer
    from pyspark.java_gateway import ensure_callback_server_started

    gateway = spark.sparkContext._gateway
    jvm = spark.sparkContext._jvm
    assert gateway is not None and jvm is not None
    if not isinstance(gateway, ClientServer):
        # Without pinned threads the statement may commit on another Java thread, without the
        # seq: the next merge would then start from commit 0. Refuse before running anything.
        raise SparkMergeError("the Spark merge needs PySpark's pinned-thread mode (PYSPARK_PIN_THREAD=true)")
    ensure_callback_server_started(gateway)
    java_properties = jvm.java.util.HashMap()
    for name, value in properties.items():
        java_properties.put(name, value)
    call = _SqlCallable(spark, statement)
    jvm.org.apache.iceberg.spark.CommitMetadata.withCommitProperties(
        java_properties, call, jvm.java.lang.RuntimeException().getClass()
    )
    if call.error is not None:
        _raise_conflict(what, call.error)
        raise call.error


class _SqlCallable:
    """A ``java.util.concurrent.Callable`` (through py4j) running one SQL statement; an error is
    kept for the caller to raise as itself, rather than wrapped in py4j's callback error."""

    def __init__(self, spark: SparkSession, statement: str) -> None:
        self.spark = spark
        self.statement = statement
        self.error: BaseException | None = None

    def call(self) -> None:
        try:
            self.spark.sql(self.statement)
        except Exception as e:
            self.error = e

    class Java:
        implements = ["java.util.concurrent.Callable"]


def _raise_conflict(what: str, error: BaseException) -> None:
    text = str(error)
    if any(name in text for name in _CONFLICTS):
        raise MergeConflictError(
            f"{what}: another writer committed first; this merge was discarded ({text[:500]})"
        ) from error


def _finish(
    current: CurrentState,
    lake_table: str,
    table: IcebergTable,
    base: Any,
    head: int,
    upserts: int,
    deletes: int,
    replace: bool,
) -> MergeResult:
    """Check the commit landed on the snapshot the merge read; record dropped metadata files."""
    before, before_location = table.metadata, table.metadata_location
    table.refresh()
    snapshot = table.current_snapshot()
    assert snapshot is not None
    if current.applied_seq(table) != head:
        raise SparkMergeError(
            f"{current.identifier(lake_table)}: the Spark commit did not record commit {head}"
        )
    if base is not None and snapshot.parent_snapshot_id != base.snapshot_id:
        # Iceberg validated the merge against what was committed meanwhile (serializable
        # isolation, so no concurrent data change), but the table had moved: say so.
        log.warning(
            "%s: the Spark merge committed on snapshot %s, not %s, which it read",
            current.identifier(lake_table),
            snapshot.parent_snapshot_id,
            base.snapshot_id,
        )
    _record_metadata_orphans(current, lake_table, before, before_location, table)
    _expire_snapshots(current, lake_table, table)
    rows = _live_rows(table)
    log.info("%s: merged up to commit %d with Spark (%d rows)", current.identifier(lake_table), head, rows)
    return MergeResult(lake_table, head, upserts, deletes, rows, replace)


def _record_metadata_orphans(
    current: CurrentState, lake_table: str, base: Any, base_location: str, table: IcebergTable
) -> None:
    """Metadata files a commit dropped from the metadata log go to the lake's orphan ledger, as
    the in-process path records its own (Iceberg's writers keep them: the table sets
    ``write.metadata.delete-after-commit.enabled=false``)."""
    dropped = dropped_metadata_files(base, base_location, table.metadata, table.metadata_location)
    if dropped:
        current._record_orphans(lake_table, Expiry(metadata_files=tuple(dropped)), current._now_ms())


def _expire_snapshots(current: CurrentState, lake_table: str, table: IcebergTable) -> None:
    """Expire what the lake's retention no longer keeps, as an in-process commit does, and record
    the files only they referenced as orphans (deleted after the grace period by the maintenance
    pass). Spark's own ``expire_snapshots`` would delete them at once, under running queries.

    A separate metadata-only commit, required to find main where the merge left it; if another
    writer moved it meanwhile, that writer's commit expires them instead."""
    now_ms = current._now_ms()
    retained, expired = split_snapshots(table.metadata, None, current.retention, now_ms)
    head = table.current_snapshot()
    if not expired or head is None:
        return
    files = orphaned_files(table.io, retained, [], expired)
    base, base_location = table.metadata, table.metadata_location
    try:
        table._do_commit(
            updates=(RemoveSnapshotsUpdate(snapshot_ids=[s.snapshot_id for s in expired]),),
            requirements=(
                AssertTableUUID(uuid=base.table_uuid),
                AssertRefSnapshotId(ref=MAIN_BRANCH, snapshot_id=head.snapshot_id),
            ),
        )
    except CommitFailedException as e:
        log.info("%s: snapshots left to the next commit to expire (%s)", current.identifier(lake_table), e)
        return
    dropped = dropped_metadata_files(base, base_location, table.metadata, table.metadata_location)
    current._record_orphans(
        lake_table,
        Expiry(
            snapshot_ids=tuple(s.snapshot_id for s in expired),
            files=tuple(files),
            metadata_files=tuple(dropped),
        ),
        now_ms,
    )
