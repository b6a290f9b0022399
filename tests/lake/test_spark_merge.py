"""The Spark merge path gives exactly the in-process merge's current state.

The same change log is written to two lakes; one is merged in-process (pyiceberg), the other with
Spark (`merge_with_spark`, Iceberg MERGE INTO in `local[2]`), and after every merge both must hold
the same Iceberg schema and the same rows, value for value. The change log is the type-fidelity
world's (the MySQL ``types_ünï`` and PostgreSQL ``typed`` tables of the source tests, as their
sources type them) plus a composite-key table, with deletes, repeated updates of a key in one
batch, deletes and re-inserts, unsent TOAST values, a snapshot and a backfill staged beside the
stream (its replay). A replayed Spark merge commits nothing, and the in-process merge continues
from a Spark merge's commit. Two columns of the world are left out of both lakes: decimals wider
than 38 digits (Iceberg has none; the in-process merge refuses them too) and PostgreSQL ``time``
(Spark cannot read Iceberg ``time``: refused, tested here).

One Spark JVM for the module; each lake gets its own session in it (`spark_for_lake`).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from connectors.events import Column, TableChanges, TableId, TableSchema
from connectors.lake.config import LakeConfig, SnapshotRetention
from connectors.lake.current import COMMIT_SEQ_PROPERTY
from connectors.lake.lake import Lake
from connectors.lake.storage import S3Options
from tests.connectors.test_mysql_source import expected_types_row
from tests.lake.helpers import T0, snapshot_batch, stream_batch

pytestmark = pytest.mark.spark

UTC = dt.UTC
SOURCE = "src"
MYSQL = TableId(SOURCE, "shop", "types_ünï")
PG = TableId(SOURCE, "public", "typed")
ORDERS = TableId(SOURCE, "sales", "orders")

MYSQL_TYPES = [
    ("id", pa.int32()), ("ti", pa.int8()), ("si", pa.int16()), ("mi", pa.int32()), ("i", pa.int32()),
    ("bi", pa.int64()), ("tiu", pa.int16()), ("siu", pa.int32()), ("miu", pa.int32()), ("iu", pa.int64()),
    ("biu", pa.decimal128(20, 0)), ("d", pa.decimal128(38, 10)), ("f", pa.float32()), ("db", pa.float64()),
    ("c", pa.string()), ("vc", pa.string()), ("tx", pa.string()), ("js", pa.string()), ("e", pa.string()),
    ("s", pa.list_(pa.string())), ("bn", pa.binary()), ("vb", pa.binary()), ("bl", pa.binary()),
    ("bt", pa.int64()), ("bt64", pa.int64()), ("dte", pa.date32()), ("tm", pa.string()), ("y", pa.int16()),
    ("dtm", pa.timestamp("us", tz="UTC")), ("ts", pa.timestamp("us", tz="UTC")), ("naïve_ß", pa.string()),
]  # fmt: skip
PG_TYPES = [
    ("id", pa.int32()), ("i2", pa.int16()), ("i4", pa.int32()), ("i8", pa.int64()),
    ("n38", pa.decimal128(38, 10)), ("nfree", pa.string()), ("n_dom", pa.decimal128(10, 2)),
    ("f4", pa.float32()), ("f8", pa.float64()), ("t", pa.string()), ("vc", pa.string()), ("ch", pa.string()),
    ("b", pa.bool_()), ("raw", pa.binary()), ("j", pa.string()), ("jb", pa.string()), ("u", pa.string()),
    ("d", pa.date32()), ("tstz", pa.timestamp("us", tz="UTC")), ("ts", pa.timestamp("us", tz="UTC")),
    ("iv", pa.string()), ("a_int", pa.list_(pa.int32())), ("a_text", pa.list_(pa.string())),
    ("a_num", pa.list_(pa.decimal128(10, 2))), ("a_tstz", pa.list_(pa.timestamp("us", tz="UTC"))),
    ("m", pa.string()),
]  # fmt: skip
ORDERS_TYPES = [("region", pa.string()), ("id", pa.int64()), ("note", pa.string()), ("qty", pa.int32())]
SCHEMAS = {
    MYSQL: TableSchema(MYSQL, tuple(Column(n, t) for n, t in MYSQL_TYPES), ("id",)),
    PG: TableSchema(PG, tuple(Column(n, t) for n, t in PG_TYPES), ("id",)),
    ORDERS: TableSchema(ORDERS, tuple(Column(n, t) for n, t in ORDERS_TYPES), ("region", "id")),
}
KEYS = {t.lake_name: list(s.key) for t, s in SCHEMAS.items()}


def pg_row(variant: int, row_id: int) -> dict[str, Any]:
    """The source test's ``typed`` row (0), a NaN/ancient/negative-zero one (1), all NULL (2)."""
    if variant == 0:
        return {
            "id": row_id, "i2": -32768, "i4": 2147483647, "i8": -9223372036854775808,
            "n38": Decimal("-9999999999999999999999999999.9999999999"),
            "nfree": "123456789012345678901234567890.123456789012345678901234567890", "n_dom": Decimal("12.50"),
            "f4": 3.4028234663852886e38, "f8": 0.1, "t": "Grüße 👋 ✓", "vc": "ten chars!", "ch": "ab   ",
            "b": True, "raw": b"\x00\xff\x00\x01", "j": '{"b": 1, "a": [1, 2]}',
            "jb": '{"n": 1.50, "ключ": "значение ✓"}', "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "d": dt.date(2024, 2, 29), "tstz": dt.datetime(2024, 6, 1, 6, 30, tzinfo=UTC),
            "ts": dt.datetime(2024, 7, 1, 14, 30, tzinfo=UTC), "iv": "P1Y2M3DT4H5M6S",
            "a_int": [1, None, 3], "a_text": ["a b", "c,d", None, 'q"uote'],
            "a_num": [Decimal("1.50"), Decimal("-2.25")],
            "a_tstz": [dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 1, 15, 30, tzinfo=UTC)],
            "m": "sad",
        }  # fmt: skip
    if variant == 1:
        return {
            "id": row_id, "nfree": "NaN", "f4": -0.0, "f8": math.nan, "t": "", "b": False, "raw": b"",
            "d": dt.date(1, 1, 1), "tstz": dt.datetime(1, 1, 1, tzinfo=UTC),
            "ts": dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "a_int": [], "a_text": [None],
        }  # fmt: skip
    return {"id": row_id}


def mysql_row(variant: int, row_id: int) -> dict[str, Any]:
    row = expected_types_row(variant, row_id)
    row.pop("d65")  # DECIMAL(65,30): wider than any Iceberg decimal, refused by both merge paths
    return row


ROWS: dict[TableId, Callable[[int, int], dict[str, Any]]] = {
    MYSQL: mysql_row,
    PG: pg_row,
    ORDERS: lambda variant, i: {
        "region": ["eu", "üs", ""][variant],
        "id": i,
        "note": f"n{i}",
        "qty": variant,
    },
}


def key_of(table: TableId, row_id: int) -> dict[str, Any]:
    return {"region": "eu", "id": row_id} if table == ORDERS else {"id": row_id}


def changes(
    table: TableId,
    rows: list[tuple[str, int, dict[str, Any]]],
    unchanged: dict[int, tuple[str, ...]] | None = None,
) -> TableChanges:
    """rows: (op, lsn, values); unchanged: row number -> columns the source did not send."""
    built = TableChanges.from_rows(
        SCHEMAS[table],
        [
            {"Op": op, "_commit_ts": T0, "_position": f"0/{lsn:X}", "_txid": str(lsn), **v}
            for op, lsn, v in rows
        ],
    )
    if unchanged:
        built = TableChanges(built.schema, built.data, unchanged=tuple(sorted(unchanged.items())))
    return built


def updated(table: TableId, variant: int, row_id: int, **values: Any) -> dict[str, Any]:
    row = ROWS[table](variant, row_id)
    if table == ORDERS:
        row["region"] = "eu"
    return {**row, **values}


def snapshot_rows(table: TableId, lsn: int, ids: range) -> TableChanges:
    rows = []
    for i in ids:
        row = ROWS[table](i % 3, i)
        if table == ORDERS:
            row["region"] = "eu"  # the stream below changes keys in "eu"; the others stay
            rows.append(("I", lsn, {**row, "region": "üs"}))
        rows.append(("I", lsn, row))
    return changes(table, rows)


def stream_changes(table: TableId, lsn: int) -> TableChanges:
    """Repeated updates of a key, delete, insert-then-delete, delete-then-reinsert, NULLs."""
    k = lambda i: key_of(table, i)  # noqa: E731
    text = "t" if table == PG else "note" if table == ORDERS else "tx"
    return changes(
        table,
        [
            ("U", lsn, updated(table, 1, 1)),
            ("U", lsn + 1, updated(table, 2, 1)),
            ("U", lsn + 2, updated(table, 0, 1, **{text: "third update"})),
            ("D", lsn + 3, k(2)),
            ("I", lsn + 4, updated(table, 0, 7)),
            ("D", lsn + 5, k(7)),
            ("D", lsn + 6, k(3)),
            ("I", lsn + 7, updated(table, 2, 3)),
            # PostgreSQL left the TOASTed text out: from the current row (key 4) ...
            ("U", lsn + 8, {**updated(table, 1, 4), text: None}),
            # ... or from the same batch's earlier change of the key (key 5).
            ("U", lsn + 9, updated(table, 1, 5, **{text: "sent before"})),
            ("U", lsn + 10, {**updated(table, 0, 5), text: None}),
        ],
        unchanged={8: (text,), 10: (text,)},
    )


def more_changes(table: TableId, lsn: int) -> TableChanges:
    """Unsent values after a delete and re-insert, of an absent key, twice in a row."""
    k = lambda i: key_of(table, i)  # noqa: E731
    text = "t" if table == PG else "note" if table == ORDERS else "tx"
    return changes(
        table,
        [
            ("U", lsn, {**updated(table, 2, 4), text: None}),  # filled from the row the last merge filled
            ("D", lsn + 1, k(6)),
            ("I", lsn + 2, updated(table, 1, 6, **{text: "re-inserted"})),
            ("U", lsn + 3, {**updated(table, 0, 6), text: None}),  # the insert's value, not the deleted row's
            ("D", lsn + 4, k(9)),
            ("U", lsn + 5, {**updated(table, 0, 9), text: None}),  # nothing to fill from: NULL
            ("U", lsn + 6, {**updated(table, 0, 8), text: None}),
            ("U", lsn + 7, {**updated(table, 1, 8), text: None}),  # both unsent: the snapshot's value
            ("D", lsn + 8, k(1)),
        ],
        unchanged={
            0: (text,),
            3: (text,),
            5: (text,),
            6: (text,),
            7: (text, "e") if table == MYSQL else (text,),
        },
    )


def plain_changes(table: TableId, lsn: int) -> TableChanges:
    """Updates, a delete and an insert, every value sent."""
    return changes(
        table,
        [
            ("U", lsn, updated(table, 2, 4)),
            ("U", lsn + 1, updated(table, 0, 6)),
            ("D", lsn + 2, key_of(table, 8)),
            ("I", lsn + 3, updated(table, 1, 12)),
        ],
    )


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark(
    stack: Any, tmp_path_factory: pytest.TempPathFactory, aws_client_kwargs: dict[str, str]
) -> Iterator[Any]:
    """One local[2] JVM for the module, built for a moto lake (so S3A points at moto)."""
    import boto3

    from connectors.lake.spark import local_spark_session
    from devstack.spark import install

    jars = install(stack).jars
    bucket = f"spark-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", **aws_client_kwargs).create_bucket(Bucket=bucket)
    lake = Lake(
        LakeConfig(
            root=f"s3://{bucket}/lake",
            s3=_moto_options(aws_client_kwargs),
            catalog_uri=f"sqlite:///{tmp_path_factory.mktemp('spark')}/catalog.db",
        )
    )
    session = local_spark_session(lake, jars)
    yield session
    session.stop()


def _moto_options(kwargs: dict[str, str]) -> S3Options:
    return S3Options(
        endpoint_url=kwargs["endpoint_url"],
        access_key_id=kwargs["aws_access_key_id"],
        secret_access_key=kwargs["aws_secret_access_key"],
    )


def two_lakes(
    tmp_path: Path, request: pytest.FixtureRequest, on_s3: bool, retention: SnapshotRetention | None = None
) -> tuple[Lake, Lake]:
    """The reference lake (in-process merges) and the Spark lake."""
    retention = retention or SnapshotRetention()
    if not on_s3:
        return (
            Lake(LakeConfig(root=str(tmp_path / "ref"), retention=retention)),
            Lake(LakeConfig(root=str(tmp_path / "spark"), retention=retention)),
        )
    kwargs = request.getfixturevalue("aws_client_kwargs")
    import boto3

    lakes = []
    for name in ("ref", "spark"):
        bucket = f"{name}-{uuid.uuid4().hex[:10]}"
        boto3.client("s3", **kwargs).create_bucket(Bucket=bucket)
        lakes.append(
            Lake(
                LakeConfig(
                    root=f"s3://{bucket}/lake",
                    s3=_moto_options(kwargs),
                    catalog_uri=f"sqlite:///{tmp_path}/{name}-catalog.db",
                    retention=retention,
                )
            )
        )
    return lakes[0], lakes[1]


# -- helpers -------------------------------------------------------------------------------------


def merge_spark(spark: Any, lake: Lake) -> list[Any]:
    """Merge every table of the source with Spark, as `CurrentState.merge` would in-process."""
    from connectors.lake.spark import merge_with_spark, spark_for_lake

    session = spark_for_lake(spark, lake)
    current = lake.current(SOURCE)
    latest = current.log.latest()
    assert latest is not None
    results = []
    for lake_table, head in sorted(latest.heads.items()):
        if lake_table not in latest.snapshots:
            result = merge_with_spark(session, current, lake_table, head)
            if result is not None:
                results.append(result)
    return results


def comparable(value: Any) -> Any:
    """NaN equals NaN, -0.0 differs from 0.0, lists compared element by element."""
    if isinstance(value, float):
        return ("nan",) if math.isnan(value) else (value, math.copysign(1.0, value))
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def state(lake: Lake, lake_table: str, source: str = SOURCE) -> tuple[Any, list[dict[str, Any]]]:
    current = lake.current(source)
    table = current.load(lake_table)
    assert table is not None
    rows = current.read(lake_table).sort_by([(k, "ascending") for k in KEYS[lake_table]]).to_pylist()
    return table.schema(), [{k: comparable(v) for k, v in r.items()} for r in rows]


def assert_same_state(ref: Lake, lake: Lake, tables: list[TableId]) -> None:
    for table in tables:
        ref_schema, ref_rows = state(ref, table.lake_name)
        schema, rows = state(lake, table.lake_name)
        assert schema == ref_schema, table
        assert len(rows) == len(ref_rows), table
        for got, want in zip(rows, ref_rows, strict=True):
            assert got == want, (table, {k: (got[k], want[k]) for k in want if got.get(k) != want[k]})


def summary(lake: Lake, lake_table: str) -> dict[str, str]:
    table = lake.current(SOURCE).load(lake_table)
    snapshot = table.current_snapshot() if table is not None else None
    assert snapshot is not None and snapshot.summary is not None
    return dict(snapshot.summary.additional_properties)


def snapshot_ids(lake: Lake, lake_table: str) -> list[int]:
    table = lake.current(SOURCE).load(lake_table)
    assert table is not None
    return [s.snapshot_id for s in table.snapshots()]


# -- tests ---------------------------------------------------------------------------------------


def test_spark_merges_the_type_fidelity_world_exactly_as_in_process(
    spark: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    tables = [MYSQL, PG, ORDERS]
    ref, lake = two_lakes(tmp_path, request, on_s3=False)
    writers = [ref.writer(SOURCE), lake.writer(SOURCE)]

    def write(batch: Any) -> None:
        for w in writers:
            w.write(batch)

    # The tables start small, merged in-process; then they cross the threshold: MERGE INTO.
    # (A snapshot merged by Spark, which overwrites the table, is in the backfill test.)
    write(snapshot_batch(16, *(snapshot_rows(t, 16, range(1, 10)) for t in tables), tables=tables))
    ref.current(SOURCE).merge()
    lake.current(SOURCE).merge()
    write(stream_batch(16, 64, *(stream_changes(t, 32 + 16 * n) for n, t in enumerate(tables))))
    want = {(r.table, r.upserts, r.deletes, r.rows) for r in ref.current(SOURCE).merge()}
    assert {(r.table, r.upserts, r.deletes, r.rows) for r in merge_spark(spark, lake)} == want
    assert_same_state(ref, lake, tables)
    assert lake.current(SOURCE).load(PG.lake_name).properties["write.merge.mode"] == "merge-on-read"  # type: ignore[union-attr]
    pg = {r["id"]: r["t"] for r in lake.current(SOURCE).read(PG.lake_name, ["id", "t"]).to_pylist()}
    assert (pg[1], pg[4], pg[5]) == ("third update", "", "sent before")  # 4: the row's "" kept
    assert 2 not in pg and 7 not in pg and pg[3] is None
    # Merge-on-read: the Spark merge deleted rows by position, like the in-process one.
    pg_summary = summary(lake, PG.lake_name)
    assert int(pg_summary["total-position-deletes"]) > 0 and pg_summary["engine-name"] == "spark"

    # Replayed: no new snapshot anywhere.
    before = {t: snapshot_ids(lake, t.lake_name) for t in tables}
    assert merge_spark(spark, lake) == []
    assert {t: snapshot_ids(lake, t.lake_name) for t in tables} == before

    # Unsent values after a delete and re-insert, of an absent key, twice in a row: Spark again.
    write(stream_batch(64, 128, *(more_changes(t, 80 + 16 * n) for n, t in enumerate(tables))))
    ref.current(SOURCE).merge()
    assert {(r.table, r.commit_seq) for r in merge_spark(spark, lake)} == {(t.lake_name, 3) for t in tables}
    assert_same_state(ref, lake, tables)
    pg = {r["id"]: r["t"] for r in lake.current(SOURCE).read(PG.lake_name, ["id", "t"]).to_pylist()}
    assert (pg[4], pg[6], pg[8]) == ("", "re-inserted", None) and 1 not in pg
    # 9: deleted, then an update without its text: the in-process rule skips deletes when it looks
    # for the value, so the row's value from before the delete (PostgreSQL never sends this).
    assert pg[9] == "Grüße 👋 ✓"

    # The in-process merge continues from the Spark merge's commit (Spark continued from its above).
    write(stream_batch(128, 160, *(plain_changes(t, 130 + 12 * n) for n, t in enumerate(tables))))
    ref.current(SOURCE).merge()
    assert {(r.table, r.commit_seq) for r in lake.current(SOURCE).merge()} == {
        (t.lake_name, 4) for t in tables
    }
    assert_same_state(ref, lake, tables)


def test_an_in_process_merge_fills_unsent_values_from_rows_spark_wrote(spark: Any, tmp_path: Path) -> None:
    """A table loaded in-process, merged by Spark, then in-process with unsent TOAST values."""
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    w = lake.writer(SOURCE)
    w.write(snapshot_batch(16, snapshot_rows(PG, 16, range(1, 10)), tables=(PG,)))
    lake.current(SOURCE).merge()
    w.write(stream_batch(16, 32, plain_changes(PG, 20)))
    merge_spark(spark, lake)
    w.write(stream_batch(32, 64, stream_changes(PG, 40)))
    [result] = lake.current(SOURCE).merge()
    assert (result.upserts, result.deletes) == (4, 2)


def test_a_backfill_beside_the_stream_is_replayed_the_same_way_on_s3(
    spark: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A backfill staged while the stream went on: its replayed commits rank above its rows.

    With a retention that keeps one snapshot: Spark merges expire the others as in-process merges
    do, their files are recorded as orphans and the maintenance pass deletes them."""
    retention = SnapshotRetention(keep_snapshots=1, max_snapshot_age_seconds=0, orphan_grace_seconds=0)
    ref, lake = two_lakes(tmp_path, request, on_s3=True, retention=retention)
    writers = [ref.writer(SOURCE), lake.writer(SOURCE)]
    for w in writers:
        w.write(snapshot_batch(16, snapshot_rows(MYSQL, 16, range(1, 7)), tables=(MYSQL,)))
        w.write(stream_batch(16, 32, changes(MYSQL, [("U", 20, updated(MYSQL, 1, 1))])))
    c0 = writers[0].last_committed().seq  # type: ignore[union-attr]
    ref.current(SOURCE).merge()
    merge_spark(spark, lake)
    assert_same_state(ref, lake, [MYSQL])
    for w in writers:
        w.write(stream_batch(32, 48, stream_changes(MYSQL, 36)))
    backfill = snapshot_batch(40, snapshot_rows(MYSQL, 40, range(2, 12)), tables=(MYSQL,), start=32)
    for lake_, w in zip((ref, lake), writers, strict=True):
        staged = lake_.writer(SOURCE).stage_backfill([backfill], replay_after=c0)
        w.write(
            stream_batch(
                48, 64, changes(MYSQL, [("U", 50, updated(MYSQL, 2, 4)), ("D", 51, key_of(MYSQL, 11))])
            )
        )
        record = w.commit_backfill(staged)
        assert record.tables[MYSQL.lake_name].replay_after == c0
    [want] = ref.current(SOURCE).merge()
    [got] = merge_spark(spark, lake)
    assert got == want and got.replaced
    assert_same_state(ref, lake, [MYSQL])
    assert int(summary(lake, MYSQL.lake_name)[COMMIT_SEQ_PROPERTY]) == got.commit_seq
    assert merge_spark(spark, lake) == []
    assert len(snapshot_ids(lake, MYSQL.lake_name)) == 1
    assert sum(r.deleted for r in lake.current(SOURCE).delete_orphans()) > 0
    assert_same_state(ref, lake, [MYSQL])
    # Still merged by Spark after the maintenance pass deleted the expired snapshots' files.
    for w in writers:
        w.write(stream_batch(64, 80, changes(MYSQL, [("D", 70, key_of(MYSQL, 5))])))
    ref.current(SOURCE).merge()
    assert [r.deletes for r in merge_spark(spark, lake)] == [1]
    assert_same_state(ref, lake, [MYSQL])


def test_spark_merges_through_the_glue_catalog(
    spark: Any, tmp_path: Path, moto_endpoint: str, aws_client_kwargs: dict[str, str]
) -> None:
    """Production's catalog (on moto): pyiceberg's GlueCatalog and Iceberg's see the same tables."""
    import boto3

    bucket = f"glue-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", **aws_client_kwargs).create_bucket(Bucket=bucket)
    options = _moto_options(aws_client_kwargs).model_copy(update={"region": aws_client_kwargs["region_name"]})
    source = f"src_{uuid.uuid4().hex[:8]}"  # one Glue database per source, shared by all tests
    lake = Lake(
        LakeConfig(root=f"s3://{bucket}/lake", s3=options, catalog="glue", glue_endpoint_url=moto_endpoint)
    )
    ref = Lake(LakeConfig(root=str(tmp_path / "ref")))
    for lake_ in (ref, lake):
        w = lake_.writer(source)
        w.write(snapshot_batch(16, snapshot_rows(MYSQL, 16, range(1, 10)), tables=(MYSQL,)))
        lake_.current(source).merge()
        w.write(stream_batch(16, 64, stream_changes(MYSQL, 32)))
    [want] = ref.current(source).merge()
    current = lake.current(source)
    from connectors.lake.spark import merge_with_spark, spark_for_lake

    got = merge_with_spark(spark_for_lake(spark, lake), current, MYSQL.lake_name, want.commit_seq)
    assert got == want
    assert state(lake, MYSQL.lake_name, source) == state(ref, MYSQL.lake_name, source)
    glue = boto3.client("glue", **aws_client_kwargs).get_table(DatabaseName=source, Name=MYSQL.lake_name)
    merged = current.load(MYSQL.lake_name)
    assert merged is not None and glue["Table"]["Parameters"]["metadata_location"] == merged.metadata_location


def test_a_table_with_a_time_column_is_refused_before_anything_is_written(spark: Any, tmp_path: Path) -> None:
    from connectors.lake.spark import SparkUnsupportedTableError, merge_with_spark, spark_for_lake

    table = TableId(SOURCE, "public", "clock")
    schema = TableSchema(table, (Column("id", pa.int32()), Column("tm", pa.time64("us"))), ("id",))
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    rows = [{"Op": "I", "_commit_ts": T0, "_position": "0/10", "_txid": "1", "id": 1, "tm": dt.time(23, 59)}]
    lake.writer(SOURCE).write(snapshot_batch(16, TableChanges.from_rows(schema, rows), tables=(table,)))
    with pytest.raises(SparkUnsupportedTableError, match="'tm'"):
        merge_with_spark(spark_for_lake(spark, lake), lake.current(SOURCE), table.lake_name, 1)
    assert lake.current(SOURCE).load(table.lake_name) is None
    [result] = lake.current(SOURCE).merge()  # the in-process path takes it
    assert result.rows == 1


def test_the_installer_resumes_a_partial_jar_and_refuses_a_wrong_checksum(tmp_path: Path) -> None:
    import hashlib
    import io
    import urllib.request

    from devstack.spark import MavenArtifact, SparkInstallError, ensure_jars

    body = bytes(range(256)) * 64
    artifact = MavenArtifact("org.example", "demo", "1.0", hashlib.sha256(body).hexdigest())
    asked: list[str | None] = []

    class Response(io.BytesIO):
        status = 200

    def opener(request: urllib.request.Request) -> Response:
        assert request.full_url == f"https://repo.test/maven2/{artifact.path}"
        wanted = request.get_header("Range")
        asked.append(wanted)
        start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted else 0
        response = Response(body[start:])
        response.status = 206 if wanted else 200
        return response

    (tmp_path / f"{artifact.file_name}.part").write_bytes(body[:1000])  # an interrupted download
    [jar] = ensure_jars(tmp_path, [artifact], base_url="https://repo.test/maven2", opener=opener)
    assert jar.read_bytes() == body and asked == ["bytes=1000-"]
    assert (
        ensure_jars(tmp_path, [artifact], opener=opener) == [jar] and len(asked) == 1
    )  # nothing fetched again

    wrong = MavenArtifact("org.example", "demo", "2.0", "0" * 64)
    with pytest.raises(SparkInstallError, match="checksum mismatch"):
        ensure_jars(tmp_path, [wrong], base_url="https://repo.test/maven2", opener=lambda r: Response(body))
    assert not list(tmp_path.glob("demo-2.0.jar*"))  # neither the jar nor a partial file to resume


def test_tables_past_the_configured_size_go_to_spark_and_the_rest_stay_in_process(
    spark: Any, stack: Any, tmp_path: Path
) -> None:
    """`lake.spark_merge_min_rows`: the lake's merge sends each table to Spark or keeps it here."""
    from devstack.spark import install

    jars = install(stack).jars
    lake = Lake(
        LakeConfig(root=str(tmp_path / "lake"), spark_merge_min_rows=5, spark_jars_dir=str(jars[0].parent))
    )

    def table(name: str, *columns: Column) -> TableSchema:
        return TableSchema(TableId(SOURCE, "public", name), (Column("id", pa.int32()), *columns), ("id",))

    big, small = table("big", Column("v", pa.string())), table("small", Column("v", pa.string()))
    clock = table("clock", Column("tm", pa.time64("us")))  # Spark cannot read `time`: stays here

    def rows(schema: TableSchema, ids: range, op: str, tag: str) -> TableChanges:
        value = (lambda i: dt.time(1, i % 60)) if schema is clock else (lambda i: f"{tag}{i}")
        last = schema.columns[-1].name
        return TableChanges.from_rows(
            schema,
            [
                {"Op": op, "_commit_ts": T0, "_position": "0/10", "_txid": "1", "id": i, last: value(i)}
                for i in ids
            ],
        )

    every = (big, small, clock)
    sizes = {big: range(10), small: range(3), clock: range(8)}
    lake.writer(SOURCE).write(
        snapshot_batch(
            16, *(rows(s, sizes[s], "I", "a") for s in every), tables=tuple(s.table for s in every)
        )
    )
    lake.current(SOURCE).merge()  # the tables do not exist yet: created and loaded here
    lake.writer(SOURCE).write(stream_batch(16, 32, *(rows(s, range(2), "U", "b") for s in every)))
    results = {r.table: r for r in lake.current(SOURCE).merge()}
    assert set(results) == {s.table.lake_name for s in every}
    merger = lake._spark_merger
    assert merger is not None and merger.merged == 1  # big only
    assert "spark.app.id" in summary(lake, big.table.lake_name)
    assert "spark.app.id" not in summary(lake, small.table.lake_name)
    assert "spark.app.id" not in summary(lake, clock.table.lake_name)
    got = {r["id"]: r["v"] for r in lake.current(SOURCE).read(big.table.lake_name).to_pylist()}
    assert got == {i: ("b" if i < 2 else "a") + str(i) for i in range(10)}
