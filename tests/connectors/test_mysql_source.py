"""MySQLSource against MariaDB 10.11 and the MySQL 8-family server (as Aurora MySQL 3): preflight,
snapshot, stream, types, DDL, errors.

Every test runs on both servers (`mysql_db` is parametrised below) with a fresh database and its
own replica server_id, because a primary drops an older binlog dump when another one connects
with the same server_id.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import struct
import threading
import time
import zoneinfo
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from connectors.events import Batch, Op, TableChanges, TableId
from connectors.mysql import MariaGtidPosition, MySQLSource, MySQLSourceConfig
from connectors.mysql.offset import BinlogPosition, MySQLGtid, MySQLGtidSet
from connectors.offsets import Offset, parse_offset
from connectors.source import PositionLostError, PreflightError, SourceError, SourceUnavailableError
from tests.conftest import TestDatabase
from tests.mysql_support import seq_table

ZONE = "America/St_Johns"
SOURCE = "shop"


@pytest.fixture
def mysql_db(mysql_any_db: TestDatabase) -> TestDatabase:
    """Every test of this module on MariaDB and on the MySQL 8-family server."""
    return mysql_any_db


def is_mysql8(db: TestDatabase) -> bool:
    return db.flavor == "mysql"


# -- helpers ----------------------------------------------------------------------------------


def make_source(db: TestDatabase, **overrides: Any) -> MySQLSource:
    """A source on the test database as the CDC user, reading DATETIMEs in St. John's time."""
    settings: dict[str, Any] = {
        "name": SOURCE,
        "host": db.host,
        "port": db.port,
        "user": db.cdc_user,
        "password": db.cdc_password,
        "database": db.name,
        "timezone": ZONE,
        "server_id": 100_000 + secrets.randbelow(2**30),
        "batch_max_seconds": 60.0,  # bounded runs below cut at `until`, not by the clock
    }
    settings.update(overrides)
    return MySQLSource(MySQLSourceConfig(**settings))


def execute(db: TestDatabase, *statements: str, conn: Any = None) -> None:
    """Run statements as the admin user, each in its own autocommit transaction."""
    conn = conn or db.admin_connect()
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)


def query(db: TestDatabase, sql: str) -> list[tuple[Any, ...]]:
    with db.admin_connect().cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def in_one_transaction(db: TestDatabase, *statements: str) -> None:
    conn = db.admin_connect()
    conn.begin()
    execute(db, *statements, conn=conn)
    conn.commit()


def gtid(offset: Offset | None) -> BinlogPosition:
    """The offset as the GTID position (MariaDB) or GTID set (MySQL) it must be."""
    assert isinstance(offset, MariaGtidPosition | MySQLGtidSet), offset
    return offset


def position_of(source: MySQLSource) -> BinlogPosition:
    """The server's position now."""
    return gtid(source.current_position())


def stream_all(
    source: MySQLSource, since: Offset | None, floors: Any = None, until: Offset | None = None
) -> list[Batch]:
    """A bounded run from `since` up to `until` (default: the server's position now)."""
    return list(source.stream(gtid(since), floors or {}, until or source.current_position()))


def changes_of(batches: Iterable[Batch], table: str) -> list[TableChanges]:
    return [c for b in batches for c in b.changes if c.table.name == table]


def rows_of(batches: Iterable[Batch], table: str, *, meta: bool = False) -> list[dict[str, Any]]:
    """The table's change rows in stream order (without the metadata columns unless `meta`)."""
    rows = []
    for changes in changes_of(batches, table):
        for rec in changes.data.to_pylist():
            if not meta:
                rec = {k: v for k, v in rec.items() if not (k == "Op" or k.startswith("_"))}
            rows.append(rec)
    return rows


def float32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


def utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC)


def wall(value: dt.datetime) -> dt.datetime:
    """A DATETIME wall time in the configured zone, as the UTC instant the lake stores."""
    return value.replace(tzinfo=zoneinfo.ZoneInfo(ZONE)).astimezone(dt.UTC)


# -- preflight --------------------------------------------------------------------------------


def test_preflight_passes_on_the_stack(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE t (id INT PRIMARY KEY)")
    source = make_source(mysql_db)
    source.preflight()
    assert source.tables() == [TableId(SOURCE, mysql_db.name, "t")]


def test_preflight_reports_every_problem_with_its_fix(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE keyed (id INT PRIMARY KEY)", "CREATE TABLE loose (v INT)")
    source = make_source(mysql_db, tables=("keyed", "loose", "missing"), min_binlog_retention_hours=100_000)
    admin = mysql_db.admin_connect()
    try:
        # Global and shared with other tests: keep the window short and always restore it.
        execute(mysql_db, "SET GLOBAL binlog_row_metadata = MINIMAL", conn=admin)
        with pytest.raises(PreflightError) as caught:
            source.preflight()
    finally:
        execute(mysql_db, "SET GLOBAL binlog_row_metadata = FULL", conn=admin)
    message = str(caught.value)
    assert "binlog_row_metadata is MINIMAL; set binlog_row_metadata=FULL in the server config" in message
    assert "SET GLOBAL binlog_row_metadata=FULL" in message
    assert "DB cluster parameter group" in message
    assert (
        "min_binlog_retention_hours is 100000" in message
        and "binlog_expire_logs_seconds=360000000" in message
    )
    assert f"table {mysql_db.name}.loose has no primary key" in message
    assert f"table {mysql_db.name}.missing does not exist" in message
    assert "keyed" not in message
    assert "local-pw" not in message
    make_source(mysql_db, tables=("keyed",)).preflight()


def test_wrong_password_names_the_endpoint_but_not_the_password(mysql_db: TestDatabase) -> None:
    source = make_source(mysql_db, password="not-the-password")
    with pytest.raises(SourceError) as caught:
        source.preflight()
    assert "access denied" in str(caught.value)
    assert f"{mysql_db.host}:{mysql_db.port}" in str(caught.value)
    assert "not-the-password" not in str(caught.value)


def test_unreachable_server_gives_up_after_bounded_retries(mysql_db: TestDatabase) -> None:
    source = make_source(
        mysql_db, port=1, retry={"attempts": 2, "initial_seconds": 0.01, "max_seconds": 0.01}
    )
    with pytest.raises(SourceUnavailableError, match=r"127\.0\.0\.1:1.*after 2 attempts"):
        position_of(source)


# -- snapshot and hand-over -------------------------------------------------------------------


def test_snapshot_yields_chunks_then_a_complete_batch(mysql_db: TestDatabase) -> None:
    execute(
        mysql_db,
        "CREATE TABLE items (id INT PRIMARY KEY, v VARCHAR(10))",
        "CREATE TABLE empty_one (id INT PRIMARY KEY)",
        "INSERT INTO items SELECT seq, CONCAT('v', seq) FROM " + seq_table(250),
    )
    source = make_source(mysql_db, chunk_rows=100, snapshot_readers=1)
    before = position_of(source)
    batches = list(source.snapshot())
    *chunks, final = batches
    assert [b.num_rows for b in chunks] == [100, 100, 50]
    assert all(not b.complete and b.end is None and b.start is None for b in chunks)
    # Two readers split the key space: chunks of both ranges, never over chunk_rows, none missing.
    parallel = list(make_source(mysql_db, chunk_rows=100, snapshot_readers=2).snapshot())
    assert len(parallel) > 4 and max(b.num_rows for b in parallel) <= 100
    assert sorted(r["id"] for r in rows_of(parallel, "items")) == list(range(1, 251))
    assert final.complete and final.start is None
    # Other tests share the server, so its position may move on; the snapshot's lies in between.
    assert before <= gtid(final.end) <= position_of(source)
    tables = set(source.tables())
    assert final.snapshot == tables
    assert final.floors == {t: final.end for t in tables}
    # A table with no rows still tells the sink its schema.
    assert [c.table.name for c in final.changes] == ["empty_one"] and final.num_rows == 0
    rows = rows_of(batches, "items", meta=True)
    assert sorted(r["id"] for r in rows) == list(range(1, 251))
    assert {r["Op"] for r in rows} == {"I"}
    assert {r["_position"] for r in rows} == {gtid(final.end).serialize()}
    assert {r["_txid"] for r in rows} == {None}


def test_snapshot_then_stream_hands_over_without_gap_or_duplicate(mysql_db: TestDatabase) -> None:
    execute(
        mysql_db,
        "CREATE TABLE hand (id INT PRIMARY KEY AUTO_INCREMENT, v INT NOT NULL)",
        "INSERT INTO hand (v) SELECT seq FROM " + seq_table(500),
    )
    source = make_source(mysql_db, chunk_rows=100)
    stop = threading.Event()
    written = threading.Event()

    def write_concurrently() -> None:
        conn = mysql_db.admin_connect()
        i = 0
        while not stop.is_set():
            i += 1
            execute(mysql_db, f"INSERT INTO hand (v) VALUES ({10_000 + i})", conn=conn)
            if i % 3 == 0:
                execute(mysql_db, f"UPDATE hand SET v = v + 1 WHERE id = {1 + i % 500}", conn=conn)
            if i == 20:
                written.set()
            time.sleep(0.002)

    writer = threading.Thread(target=write_concurrently)
    writer.start()
    try:
        assert written.wait(60)
        snapshot = []
        for batch in source.snapshot():
            snapshot.append(batch)
            time.sleep(0.05)  # let the writer commit while the snapshot is read
    finally:
        stop.set()
        writer.join()
    final = snapshot[-1]
    streamed = stream_all(source, final.end, final.floors)

    state: dict[tuple[Any, ...], dict[str, Any]] = {}
    for event in (e for b in snapshot for e in b.events()):
        state[event.key] = dict(event.row)
    snapshot_ids = {k[0] for k in state}
    inserted_later = []
    for event in (e for b in streamed for e in b.events()):
        if event.op is Op.DELETE:
            state.pop(event.key, None)
        else:
            state[event.key] = dict(event.row)
        if event.op is Op.INSERT:
            inserted_later.append(event.key[0])
    assert inserted_later, "the writer should have committed after the snapshot's position"
    # The snapshot's position is its low watermark (taken before any chunk was read), so a row a
    # chunk already held may also be inserted again by the stream: applied in order it changes
    # nothing (module docstring of connectors.mysql.snapshot). Each source change streams once.
    assert snapshot_ids | set(inserted_later)
    assert len(inserted_later) == len(set(inserted_later))
    table = {row[0]: {"id": row[0], "v": row[1]} for row in query(mysql_db, "SELECT id, v FROM hand")}
    assert {k[0]: v for k, v in state.items()} == table


def test_backfill_keeps_the_stream_offset_and_sets_a_floor(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE orders (id INT PRIMARY KEY)", "CREATE TABLE extra (id INT PRIMARY KEY)")
    source = make_source(mysql_db)
    committed = position_of(source)
    execute(mysql_db, "INSERT INTO extra VALUES (1), (2)", "INSERT INTO orders VALUES (1)")
    extra = TableId(SOURCE, mysql_db.name, "extra")
    *chunks, final = source.backfill([extra], committed)  # = snapshot([extra], stream_offset=committed)
    execute(mysql_db, "INSERT INTO extra VALUES (3)")
    assert final.start == committed and final.end == committed
    assert final.snapshot == {extra}
    floor = final.floors[extra]
    assert committed < gtid(floor)
    assert sorted(r["id"] for r in rows_of(chunks, "extra")) == [1, 2]
    streamed = stream_all(source, committed, final.floors)
    # extra's first two rows are in the backfill; only the later insert is streamed.
    assert [r["id"] for r in rows_of(streamed, "extra")] == [3]
    assert [r["id"] for r in rows_of(streamed, "orders")] == [1]


# -- streaming --------------------------------------------------------------------------------


def test_resume_from_an_offset_returns_only_later_transactions(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE r (id INT PRIMARY KEY, v VARCHAR(10))")
    source = make_source(mysql_db)
    start = position_of(source)
    execute(mysql_db, *(f"INSERT INTO r VALUES ({i}, 'v{i}')" for i in range(1, 6)))
    until = position_of(source)
    first = stream_all(source, start, until=until)
    assert first[-1].end == until
    rows = rows_of(first, "r", meta=True)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert len({r["_txid"] for r in rows}) == 5
    third = gtid(parse_offset(rows[2]["_position"]))
    if isinstance(third, MySQLGtidSet):
        assert third.contains(MySQLGtid.parse(rows[2]["_txid"]))
    else:
        assert rows[2]["_txid"] in str(third)
    resumed = stream_all(source, third, until=until)
    assert [r["id"] for r in rows_of(resumed, "r")] == [4, 5]
    assert resumed[0].start == third
    # Resuming at the end yields nothing at all.
    assert list(source.stream(first[-1].end, {}, first[-1].end)) == []


def test_replay_with_floors_skips_changes_the_lake_already_has(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE a (id INT PRIMARY KEY)", "CREATE TABLE b (id INT PRIMARY KEY)")
    source = make_source(mysql_db)
    start = position_of(source)
    for i in (1, 2, 3):
        in_one_transaction(mysql_db, f"INSERT INTO a VALUES ({i})", f"INSERT INTO b VALUES ({i})")
    until = position_of(source)
    everything = stream_all(source, start, until=until)
    second = gtid(parse_offset(rows_of(everything, "a", meta=True)[1]["_position"]))
    table_a = TableId(SOURCE, mysql_db.name, "a")
    replay = stream_all(source, start, {table_a: second}, until=until)
    assert [r["id"] for r in rows_of(replay, "a")] == [3]
    assert [r["id"] for r in rows_of(replay, "b")] == [1, 2, 3]
    assert replay[-1].end == everything[-1].end == until


def test_updates_carry_after_images_and_deletes_before_images(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE p (id INT PRIMARY KEY, name VARCHAR(20), qty INT)")
    execute(mysql_db, "INSERT INTO p VALUES (1, 'apple', 1), (2, 'pear', 2), (3, 'fig', 3)")
    source = make_source(mysql_db)
    start = position_of(source)
    execute(
        mysql_db,
        "UPDATE p SET qty = qty * 10 WHERE id IN (1, 2)",
        "DELETE FROM p WHERE id = 3",
        "UPDATE p SET id = 20, name = 'pear!' WHERE id = 2",
    )
    rows = [
        (r["Op"], r["id"], r["name"], r["qty"]) for r in rows_of(stream_all(source, start), "p", meta=True)
    ]
    assert rows == [
        ("U", 1, "apple", 10),
        ("U", 2, "pear", 20),
        ("D", 3, "fig", 3),
        ("D", 2, "pear", 20),  # a key change removes the old key ...
        ("I", 20, "pear!", 20),  # ... and adds the new one
    ]


TYPES_DDL = """
CREATE TABLE `types_ünï` (
  id INT PRIMARY KEY,
  ti TINYINT, si SMALLINT, mi MEDIUMINT, i INT, bi BIGINT,
  tiu TINYINT UNSIGNED, siu SMALLINT UNSIGNED, miu MEDIUMINT UNSIGNED, iu INT UNSIGNED, biu BIGINT UNSIGNED,
  d DECIMAL(38,10), d65 DECIMAL(65,30), f FLOAT, db DOUBLE,
  c CHAR(5), vc VARCHAR(50), tx TEXT, js JSON, e ENUM('red','green','it''s'), s SET('a','b','c'),
  bn BINARY(4), vb VARBINARY(8), bl BLOB, bt BIT(10), bt64 BIT(64),
  dte DATE, tm TIME(3), y YEAR, dtm DATETIME(6), ts TIMESTAMP(6) NULL,
  `naïve_ß` VARCHAR(20)
)
"""
TYPES_ROWS = [
    "({id}, -128, -32768, -8388608, -2147483648, -9223372036854775808,"
    " 255, 65535, 16777215, 4294967295, 18446744073709551615,"
    " 9999999999999999999999999999.9999999999, 12345678901234567890123456789012345.123456789012345678901234567890,"
    " 1.2345678, 0.30000000000000004e0,"
    " 'ab', 'ünïcödé 🎉', REPEAT('x', 1000), '{{\"k\": [1, 2], \"s\": \"é😀\"}}', 'it''s', 'a,c',"
    " x'00FF', x'00FF00', x'00FF10FF00', b'1010000001', b'1111111111111111111111111111111111111111111111111111111111111111',"
    " '2024-02-29', '-10:00:00.250', 2155, '2024-03-10 02:30:00.123456', '2024-01-01 12:00:00.5', 'ok')",
    "({id}, 127, 32767, 8388607, 2147483647, 9223372036854775807, 0, 0, 0, 0, 0,"
    " -1234567890123456789012345678.0123456789, -0.000000000000000000000000000001, -3.4e38, -1.7976931348623157e308,"
    " '', '', '', '[]', 'red', '', x'', x'', x'', b'0', b'0',"
    " '1000-01-01', '838:59:59.000', 0, '9999-12-30 23:59:59.999999', '1970-01-01 05:00:01', '')",
    "({id}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]


def expected_types_row(index: int, row_id: int) -> dict[str, Any]:
    if index == 0:
        return {
            "id": row_id, "ti": -128, "si": -32768, "mi": -8388608, "i": -2147483648, "bi": -(2**63),
            "tiu": 255, "siu": 65535, "miu": 16777215, "iu": 4294967295, "biu": Decimal(2**64 - 1),
            "d": Decimal("9999999999999999999999999999.9999999999"),
            "d65": Decimal("12345678901234567890123456789012345.123456789012345678901234567890"),
            "f": float32(1.2345678), "db": 0.30000000000000004,
            "c": "ab", "vc": "ünïcödé 🎉", "tx": "x" * 1000, "js": '{"k": [1, 2], "s": "é😀"}', "e": "it's",
            "s": ["a", "c"], "bn": b"\x00\xff\x00\x00", "vb": b"\x00\xff\x00", "bl": b"\x00\xff\x10\xff\x00",
            "bt": 0b1010000001, "bt64": -1,  # BIT(64) all ones wraps to -1 (documented)
            "dte": dt.date(2024, 2, 29), "tm": "-10:00:00.250", "y": 2155,
            # 02:30 does not exist in St. John's on 2024-03-10 (DST gap): read with the offset before it.
            "dtm": wall(dt.datetime(2024, 3, 10, 2, 30, 0, 123456)),
            "ts": utc(dt.datetime(2024, 1, 1, 7, 0, 0, 500000)),  # inserted at +05:00
            "naïve_ß": "ok",
        }  # fmt: skip
    if index == 1:
        return {
            "id": row_id, "ti": 127, "si": 32767, "mi": 8388607, "i": 2147483647, "bi": 2**63 - 1,
            "tiu": 0, "siu": 0, "miu": 0, "iu": 0, "biu": Decimal(0),
            "d": Decimal("-1234567890123456789012345678.0123456789"),
            "d65": Decimal("-0.000000000000000000000000000001"),
            "f": float32(-3.4e38), "db": -1.7976931348623157e308,
            "c": "", "vc": "", "tx": "", "js": "[]", "e": "red", "s": [], "bn": b"\x00" * 4, "vb": b"", "bl": b"",
            "bt": 0, "bt64": 0, "dte": dt.date(1000, 1, 1), "tm": "838:59:59.000",
            "y": 0, "dtm": wall(dt.datetime(9999, 12, 30, 23, 59, 59, 999999)),
            "ts": utc(dt.datetime(1970, 1, 1, 0, 0, 1)),  # the smallest TIMESTAMP, inserted at +05:00
            "naïve_ß": "",
        }  # fmt: skip
    names = [
        "ti", "si", "mi", "i", "bi", "tiu", "siu", "miu", "iu", "biu", "d", "d65", "f", "db", "c", "vc", "tx", "js",
        "e", "s", "bn", "vb", "bl", "bt", "bt64", "dte", "tm", "y", "dtm", "ts", "naïve_ß",
    ]  # fmt: skip
    return {"id": row_id, **dict.fromkeys(names)}


def insert_types_rows(db: TestDatabase, first_id: int) -> None:
    values = ", ".join(row.format(id=first_id + i) for i, row in enumerate(TYPES_ROWS))
    conn = db.admin_connect()
    # A non-UTC session zone: TIMESTAMP literals are read in it and stored as UTC.
    execute(db, "SET SESSION time_zone = '+05:00'", f"INSERT INTO `types_ünï` VALUES {values}", conn=conn)


def test_every_column_type_arrives_exactly_in_snapshot_and_stream(mysql_db: TestDatabase) -> None:
    execute(mysql_db, TYPES_DDL)
    insert_types_rows(mysql_db, first_id=1)
    source = make_source(mysql_db)
    snapshot = list(source.snapshot())
    insert_types_rows(mysql_db, first_id=11)
    streamed = stream_all(source, snapshot[-1].end)

    snapshot_rows = rows_of(snapshot, "types_ünï")
    streamed_rows = rows_of(streamed, "types_ünï")
    for i in range(len(TYPES_ROWS)):
        assert snapshot_rows[i] == expected_types_row(i, 1 + i)
        assert streamed_rows[i] == expected_types_row(i, 11 + i)
    # Both ways give the same schema, so the lake sees no schema change at the hand-over.
    (snapshot_changes,) = changes_of(snapshot, "types_ünï")
    (streamed_changes,) = changes_of(streamed, "types_ünï")
    assert streamed_changes.schema == snapshot_changes.schema
    types = {c.name: c.type for c in snapshot_changes.schema.columns}
    assert types["tiu"] == pa.int16() and types["iu"] == pa.int64() and types["biu"] == pa.decimal128(20, 0)
    assert (
        types["d65"] == pa.decimal256(65, 30)
        and types["f"] == pa.float32()
        and types["s"] == pa.list_(pa.string())
    )
    assert types["tm"] == pa.string() and types["y"] == pa.int16() and types["bt"] == pa.int64()
    assert types["dtm"] == pa.timestamp("us", tz="UTC") and types["ts"] == pa.timestamp("us", tz="UTC")
    sources = {c.name: c.source_type for c in snapshot_changes.schema.columns}
    assert sources["e"] == "enum('red','green','it''s')" and sources["vc"] == "varchar(50)"
    assert sources["biu"] == "bigint unsigned" and sources["tm"] == "time(3)"


TIME_VALUES = [
    "-10:00:00.250000", "-00:00:00.000001", "-00:00:01.999999", "-00:00:00.5", "-838:59:59",
    "838:59:59", "00:00:00", "12:34:56.789012", "-12:34:56.789012", "-01:00:00.01", "-00:59:59.99",
]  # fmt: skip


def test_time_values_with_every_precision_decode_exactly(mysql_db: TestDatabase) -> None:
    columns = ", ".join(f"t{n} TIME({n})" for n in range(7))
    execute(mysql_db, f"CREATE TABLE times (id INT PRIMARY KEY, {columns})")
    source = make_source(mysql_db)
    start = position_of(source)
    for i, text in enumerate(TIME_VALUES):
        execute(mysql_db, f"INSERT INTO times VALUES ({i}, {', '.join([repr(text)] * 7)})")
    streamed = rows_of(stream_all(source, start), "times")
    snapshot = sorted(rows_of(list(source.snapshot()), "times"), key=lambda r: r["id"])
    assert streamed == snapshot  # PyMySQL reads the server's own text rendering
    with mysql_db.admin_connect().cursor() as cur:  # the server's own text for each precision
        cur.execute(f"SELECT {', '.join(f'CAST(t{n} AS CHAR)' for n in range(7))} FROM times ORDER BY id")
        server_text = [dict(zip([f"t{n}" for n in range(7)], row, strict=True)) for row in cur.fetchall()]
    assert [{k: r[k] for k in server_text[0]} for r in streamed] == server_text


def test_schema_changes_mid_stream_keep_earlier_events_intact(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE evo (id INT PRIMARY KEY, a INT, b VARCHAR(10), m DECIMAL(10,2))")
    source = make_source(mysql_db)
    start = position_of(source)
    execute(
        mysql_db,
        "INSERT INTO evo VALUES (1, 10, 'one', 12345678.91)",
        "ALTER TABLE evo ADD COLUMN c VARCHAR(20) AFTER a",
        "INSERT INTO evo VALUES (2, 20, 'two-c', 'two', 2.5)",
        "UPDATE evo SET b = 'one!' WHERE id = 1",
        "ALTER TABLE evo DROP COLUMN b",
        "INSERT INTO evo VALUES (3, 30, 'three-c', 3.5)",
        "ALTER TABLE evo MODIFY a BIGINT, MODIFY c VARCHAR(100), MODIFY m DECIMAL(18,2)",
        f"INSERT INTO evo VALUES (4, 9223372036854775807, '{'x' * 100}', 1234567890123456.78)",
        "DELETE FROM evo WHERE id = 2",
    )
    (batch,) = stream_all(source, start)  # one bounded run, one batch: four schema versions in it
    versions = changes_of([batch], "evo")
    assert [v.schema.column_names for v in versions] == [
        ("id", "a", "b", "m"),
        ("id", "a", "c", "b", "m"),
        ("id", "a", "c", "m"),
        ("id", "a", "c", "m"),
    ]
    assert [[c.source_type for c in v.schema.columns] for v in versions][2:] == [
        ["int", "int", "varchar(20)", "decimal(10,2)"],
        ["int", "bigint", "varchar(100)", "decimal(18,2)"],
    ]
    assert versions[3].schema.columns[1].type == pa.int64()
    assert versions[3].schema.columns[3].type == pa.decimal128(18, 2)

    def plain(v: TableChanges) -> list[tuple[Any, ...]]:
        return [tuple([r["Op"], *(r[n] for n in v.schema.column_names)]) for r in v.data.to_pylist()]

    assert plain(versions[0]) == [("I", 1, 10, "one", Decimal("12345678.91"))]
    assert plain(versions[1]) == [
        ("I", 2, 20, "two-c", "two", Decimal("2.50")),
        ("U", 1, 10, None, "one!", Decimal("12345678.91")),
    ]
    assert plain(versions[2]) == [("I", 3, 30, "three-c", Decimal("3.50"))]
    assert plain(versions[3]) == [
        ("I", 4, 2**63 - 1, "x" * 100, Decimal("1234567890123456.78")),
        ("D", 2, 20, "two-c", Decimal("2.50")),
    ]


def test_tables_created_while_streaming_every_table_are_captured(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE old (id INT PRIMARY KEY)")
    source = make_source(mysql_db)  # no `tables`: every table, including new ones
    start = position_of(source)
    execute(
        mysql_db,
        "INSERT INTO old VALUES (1)",
        f"CREATE TABLE `{mysql_db.name}`.`new one` (id INT PRIMARY KEY, v VARCHAR(5))",
        "INSERT INTO `new one` VALUES (1, 'a'), (2, 'b')",
        "CREATE TABLE IF NOT EXISTS newer (id INT PRIMARY KEY) SELECT 7 AS id",
    )
    batches = stream_all(source, start)
    assert [r["id"] for r in rows_of(batches, "old")] == [1]
    assert rows_of(batches, "new one") == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    assert [r["id"] for r in rows_of(batches, "newer")] == [7]


def test_large_transaction_arrives_in_bounded_chunks(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(20), n DECIMAL(12,2))")
    source = make_source(mysql_db, chunk_rows=50_000, batch_max_rows=50_000)
    start = position_of(source)
    execute(mysql_db, "INSERT INTO big SELECT seq, CONCAT('row-', seq), seq / 100 FROM " + seq_table(200000))
    until = position_of(source)
    batches = stream_all(source, start, until=until)
    *chunks, final = batches
    assert len(chunks) >= 4
    assert all(not b.complete and b.end is None and 0 < b.num_rows <= 50_000 for b in chunks)
    assert final.complete and final.end == until
    ids = pa.chunked_array([c.data.column("id") for c in changes_of(batches, "big")])
    assert len(ids) == 200_000
    assert pc.count_distinct(ids).as_py() == 200_000
    txids = {t for c in changes_of(batches, "big") for t in c.data.column("_txid").unique().to_pylist()}
    assert len(txids) == 1


def test_reconnect_inside_a_large_transaction_loses_and_duplicates_nothing(
    mysql_db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """The dump connection is killed after part of a transaction was handed out."""
    user = f"cdc_{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    execute(
        mysql_db,
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
        f"GRANT SELECT, REPLICATION SLAVE, {'REPLICATION CLIENT' if is_mysql8(mysql_db) else 'BINLOG MONITOR'}"
        f" ON *.* TO '{user}'@'%'",
        "CREATE TABLE wide (id INT PRIMARY KEY, pad VARCHAR(1000))",
    )
    try:
        source = make_source(mysql_db, user=user, password=password, chunk_rows=2_000)
        start = position_of(source)
        # About 40 MB of binlog: far more than the socket buffers, so the kill lands mid-stream.
        execute(mysql_db, "INSERT INTO wide SELECT seq, REPEAT('p', 1000) FROM " + seq_table(40000))
        until = position_of(source)
        batches = []
        with caplog.at_level(logging.INFO):
            for batch in source.stream(start, {}, until):
                batches.append(batch)
                if len(batches) == 1:
                    dumps = query(
                        mysql_db,
                        f"SELECT id FROM information_schema.PROCESSLIST WHERE user = '{user}'"
                        " AND command LIKE 'Binlog Dump%'",
                    )
                    assert dumps
                    execute(mysql_db, *(f"KILL CONNECTION {d[0]}" for d in dumps))
        messages = [r.getMessage() for r in caplog.records]
        assert any("sent again after a reconnect" in m for m in messages), messages
        ids = [i for c in changes_of(batches, "wide") for i in c.data.column("id").to_pylist()]
        assert sorted(ids) == list(range(1, 40_001))
        assert batches[-1].complete and batches[-1].end == until
    finally:
        execute(mysql_db, f"DROP USER IF EXISTS '{user}'@'%'")


def test_unconvertible_values_are_quarantined_not_dropped(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE q (id INT PRIMARY KEY, d DATE, dtm DATETIME, ts TIMESTAMP NULL)")
    source = make_source(mysql_db, snapshot_readers=1)  # one key range: rows in key order
    start = position_of(source)
    conn = mysql_db.admin_connect()
    execute(
        mysql_db,
        "SET SESSION sql_mode = ''",  # allows zero dates, as legacy applications do
        "INSERT INTO q VALUES (1, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05'),"
        " (2, '0000-00-00', '2024-01-02 03:04:05', NULL), (3, '2024-01-02', '0000-00-00 00:00:00', NULL),"
        " (4, '2024-01-02', '2024-01-02 03:04:05', '0000-00-00 00:00:00'), (5, '2024-00-10', NULL, NULL)",
        conn=conn,
    )
    streamed = stream_all(source, start)
    snapshot = list(source.snapshot())
    for batches in (streamed, snapshot):
        assert [r["id"] for r in rows_of(batches, "q")] == [1]
        quarantined = [q for b in batches for q in b.quarantined]
        assert [q.table.name for q in quarantined] == ["q"] * 4
        reasons = [q.reason for q in quarantined]
        assert "'d'" in reasons[0] and "0000-00-00" in reasons[0]
        assert "'dtm'" in reasons[1] and "0000-00-00 00:00:00" in reasons[1]
        assert "'ts'" in reasons[2] and "TIMESTAMP" in reasons[2]
        assert "'d'" in reasons[3] and "2024-00-10" in reasons[3]
        assert "'id': 2" in quarantined[0].payload
        assert all(q.position for q in quarantined)


def test_position_the_server_never_had_is_reported_as_lost(mysql_db: TestDatabase) -> None:
    if is_mysql8(mysql_db):
        pytest.skip("MariaDB positions; MySQL GTID sets: test_mysql8_positions.py")
    source = make_source(mysql_db)
    now = position_of(source)
    assert isinstance(now, MariaGtidPosition)
    foreign_domain = MariaGtidPosition.parse("4242-1-5")
    ahead = MariaGtidPosition.parse(",".join(f"{g.domain}-{g.server}-{g.seq + 1_000_000}" for g in now.gtids))
    wrong_server = MariaGtidPosition.parse("0-77-1")  # seq 1 of domain 0 was written by server 1
    for lost in (foreign_domain, ahead, wrong_server):
        with pytest.raises(PositionLostError) as caught:
            next(iter(source.stream(lost, {})))
        message = str(caught.value)
        assert lost.serialize() in message
        assert "no longer available" in message
        assert f"lakehouse resnapshot --source {SOURCE}" in message


@pytest.mark.timeout(120)
def test_long_running_stream_hands_out_batches_as_they_become_due(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE live (id INT PRIMARY KEY)")
    source = make_source(mysql_db, batch_max_seconds=0.2)
    start = position_of(source)
    stream: Iterator[Batch] = iter(source.stream(start, {}))
    try:
        # Nothing happened in this database yet: a batch without changes (a keep-alive, or one
        # that only moves past other databases' transactions) hands control back anyway.
        first = next(stream)
        assert first.complete and not first.changes and first.start == start
        execute(mysql_db, "INSERT INTO live VALUES (1)", "INSERT INTO live VALUES (2)")
        seen: list[int] = []
        ends = []
        while len(seen) < 2:
            batch = next(stream)  # returns although the binlog goes quiet: heartbeats wake it
            assert batch.complete
            if batch.start == batch.end:
                continue  # a keep-alive
            ends.append(batch.end)
            seen += [r["id"] for r in rows_of([batch], "live")]
        execute(mysql_db, "INSERT INTO live VALUES (3)")
        while len(seen) < 3:
            batch = next(stream)
            if batch.start == batch.end:
                continue
            ends.append(batch.end)
            seen += [r["id"] for r in rows_of([batch], "live")]
    finally:
        stream.close()  # type: ignore[attr-defined]
    assert seen == [1, 2, 3]
    positions = [gtid(e) for e in ends]
    assert all(a < b for a, b in zip([start, *positions], positions, strict=False))


def test_count_rows_and_acknowledge(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE c (id INT PRIMARY KEY)", "INSERT INTO c SELECT seq FROM " + seq_table(7))
    source = make_source(mysql_db)
    table = TableId(SOURCE, mysql_db.name, "c")
    assert source.count_rows(table) == 7
    source.acknowledge(position_of(source))  # nothing to tell the server; must not fail
    source.close()
    assert source.count_rows(table) == 7  # reconnects after close


def test_wall_times_in_a_dst_gap_and_near_year_9999_convert_together() -> None:
    """A DST-gap value forces the exact path; a value that is past 9999 in UTC must not break it."""
    from connectors.mysql.types import _wall_times_to_utc

    values = [dt.datetime(2024, 3, 10, 2, 30, 0, 123456), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), None]
    micros = pc.cast(_wall_times_to_utc(values, "America/St_Johns"), pa.int64()).to_pylist()
    # 02:30 does not exist in St. John's that night: read with the offset before the gap (-03:30).
    assert (
        micros[0]
        == int(dt.datetime(2024, 3, 10, 6, 0, 0, 123456, tzinfo=dt.UTC).timestamp()) * 10**6 + 123456
    )
    assert micros[1] == (
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999) - dt.datetime(1970, 1, 1)
    ) // dt.timedelta(microseconds=1) + int(3.5 * 3600 * 10**6)
    assert micros[2] is None
