"""The fast rows-event decoder against mysql-replication's path, on the local MariaDB 10.11.

Every rows event is decoded both ways (the fast decoder never consumes the event's packet, so the
library can decode the same event afterwards) and the results must be identical, value for value
and type for type. Events the fast decoder leaves alone (a value that is quarantined, a MINIMAL
row image) must go to the library path and give exactly what it gives.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from connectors.events import Batch
from connectors.mysql import binlog, rows
from connectors.mysql.columns import ConvertedRows
from connectors.mysql.fastrows import FastPathUnsupported, fallback_counts
from connectors.mysql.fastrows_values import decimal_layout
from tests.conftest import TestDatabase
from tests.connectors.test_mysql_source import (
    changes_of,
    execute,
    in_one_transaction,
    make_source,
    position_of,
    rows_of,
    stream_all,
    utc,
    wall,
)

FSPS = range(7)
SET_64 = ", ".join(f"'m{i}'" for i in range(64))
SET_20 = ", ".join(f"'w{i}'" for i in range(20))
HOSTILE_DDL = f"""
CREATE TABLE hostile (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  d65 DECIMAL(65,30), d0 DECIMAL(10,0), d12 DECIMAL(12,2), d18 DECIMAL(18,9), d38 DECIMAL(38,10),
  d5 DECIMAL(5,5), d1 DECIMAL(1,0),
  f FLOAT, db DOUBLE,
  {", ".join(f"dt{n} DATETIME({n})" for n in FSPS)},
  {", ".join(f"ts{n} TIMESTAMP({n}) NULL" for n in FSPS)},
  {", ".join(f"tm{n} TIME({n})" for n in FSPS)},
  dte DATE, y YEAR,
  b1 BIT(1), b7 BIT(7), b8 BIT(8), b9 BIT(9), b63 BIT(63), b64 BIT(64),
  e ENUM('red', 'green', 'it''s', 'ünï'), s SET('a', 'b', 'c'), s20 SET({SET_20}), s64 SET({SET_64}),
  c CHAR(5), c100 CHAR(100), vc VARCHAR(50), vc300 VARCHAR(300), lat VARCHAR(20) CHARACTER SET latin1,
  ttx TINYTEXT, tx TEXT, mtx MEDIUMTEXT, ltx LONGTEXT, js JSON,
  bn BINARY(4), vb VARBINARY(8), tbl TINYBLOB, bl BLOB, mbl MEDIUMBLOB, lbl LONGBLOB, g POINT
)
"""
COLUMNS = [
    "id", "ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu",
    "d65", "d0", "d12", "d18", "d38", "d5", "d1", "f", "db",
    *(f"dt{n}" for n in FSPS), *(f"ts{n}" for n in FSPS), *(f"tm{n}" for n in FSPS),
    "dte", "y", "b1", "b7", "b8", "b9", "b63", "b64", "e", "s", "s20", "s64",
    "c", "c100", "vc", "vc300", "lat", "ttx", "tx", "mtx", "ltx", "js",
    "bn", "vb", "tbl", "bl", "mbl", "lbl", "g",
]  # fmt: skip
EMOJI = "🎉ünï😀"
MIN_ROW = {
    "ti": "-128", "tiu": "0", "si": "-32768", "siu": "0", "mi": "-8388608", "miu": "0",
    "i": "-2147483648", "iu": "0", "bi": "-9223372036854775808", "biu": "0",
    "d65": "-99999999999999999999999999999999999.999999999999999999999999999999",
    "d0": "-9999999999", "d12": "-9999999999.99", "d18": "-999999999.999999999",
    "d38": "-9999999999999999999999999999.9999999999", "d5": "-0.99999", "d1": "-9",
    "f": "-3.4e38", "db": "-1.7976931348623157e308",
    **{f"dt{n}": "'1000-01-01 00:00:00'" for n in FSPS},
    **{f"ts{n}": "'1970-01-01 00:00:01'" for n in FSPS},
    **{f"tm{n}": "'-838:59:59'" for n in FSPS},
    "dte": "'1000-01-01'", "y": "1901", "b1": "b'0'", "b7": "b'0'", "b8": "b'0'", "b9": "b'0'", "b63": "b'0'",
    "b64": "b'0'", "e": "'red'", "s": "''", "s20": "''", "s64": "''",
    "c": "''", "c100": "''", "vc": "''", "vc300": "''", "lat": "''", "ttx": "''", "tx": "''", "mtx": "''",
    "ltx": "''", "js": "'[]'", "bn": "x''", "vb": "x''", "tbl": "x''", "bl": "x''", "mbl": "x''", "lbl": "x''",
    "g": "ST_GeomFromText('POINT(0 0)')",
}  # fmt: skip
MAX_ROW = {
    "ti": "127", "tiu": "255", "si": "32767", "siu": "65535", "mi": "8388607", "miu": "16777215",
    "i": "2147483647", "iu": "4294967295", "bi": "9223372036854775807", "biu": "18446744073709551615",
    "d65": "99999999999999999999999999999999999.999999999999999999999999999999",
    "d0": "9999999999", "d12": "9999999999.99", "d18": "999999999.999999999",
    "d38": "9999999999999999999999999999.9999999999", "d5": "0.99999", "d1": "9",
    "f": "3.4e38", "db": "1.7976931348623157e308",
    **{f"dt{n}": "'9999-12-31 23:59:59.999999'" for n in FSPS},
    **{f"ts{n}": "'2038-01-19 03:14:07.999999'" for n in FSPS},
    **{f"tm{n}": "'838:59:59.999999'" for n in FSPS},
    "dte": "'9999-12-31'", "y": "2155", "b1": "b'1'", "b7": "b'1111111'", "b8": "b'11111111'",
    "b9": "b'111111111'", "b63": f"b'{'1' * 63}'", "b64": f"b'{'1' * 64}'",
    "e": "'ünï'", "s": "'a,b,c'", "s20": f"'{','.join(f'w{i}' for i in range(20))}'",
    "s64": f"'{','.join(f'm{i}' for i in range(64))}'",
    "c": f"'{EMOJI[:5]}'", "c100": f"'{EMOJI * 20}'", "vc": f"'{EMOJI * 10}'", "vc300": f"'{EMOJI * 60}'",
    "lat": "'Ünïcödé ÿ €'", "ttx": f"'{'x' * 255}'", "tx": f"'{EMOJI * 1000}'", "mtx": "REPEAT('m', 70000)",
    "ltx": "REPEAT('🎉', 20000)", "js": """'{"k": [1, 2.5, null], "s": "é😀"}'""",
    "bn": "x'ffffffff'", "vb": "x'00ff00ff00ff00ff'", "tbl": "REPEAT(x'ff', 255)", "bl": "REPEAT(x'00ff', 30000)",
    "mbl": "REPEAT(x'01', 70000)", "lbl": "REPEAT(x'00', 5)", "g": "ST_GeomFromText('POINT(1.5 -2.25)')",
}  # fmt: skip
ODD_ROW = {  # zeros, signs, fractions, DST edges, trailing zero bytes
    "ti": "0", "tiu": "1", "si": "-1", "siu": "1", "mi": "-1", "miu": "1", "i": "-1", "iu": "1", "bi": "-1",
    "biu": "9223372036854775808", "d65": "0", "d0": "0", "d12": "-0.01", "d18": "0.000000001",
    "d38": "-0.0000000001", "d5": "0.00001", "d1": "0", "f": "1.2345678", "db": "0.30000000000000004e0",
    "dt0": "'2024-03-10 02:30:00'", "dt1": "'2024-11-03 01:30:00.1'", "dt2": "'2024-02-29 12:00:00.99'",
    "dt3": "'2024-03-10 02:30:00.123'", "dt4": "'1970-01-01 00:00:00.0001'", "dt5": "'1969-12-31 23:59:59.99999'",
    "dt6": "'2024-03-10 02:30:00.123456'",
    "ts0": "'2024-01-01 12:00:00'", "ts1": "'2024-01-01 12:00:00.5'", "ts2": "'2024-01-01 12:00:00.05'",
    "ts3": "'2024-01-01 12:00:00.005'", "ts4": "'2024-01-01 12:00:00.0005'", "ts5": "'2024-01-01 12:00:00.00005'",
    "ts6": "'2024-01-01 12:00:00.000005'",
    "tm0": "'-00:00:01'", "tm1": "'-10:00:00.5'", "tm2": "'-00:00:00.01'", "tm3": "'-10:00:00.250'",
    "tm4": "'-00:59:59.9999'", "tm5": "'-01:00:00.00001'", "tm6": "'-00:00:00.000001'",
    "dte": "'2024-02-29'", "y": "0", "b1": "b'1'", "b7": "b'1010101'", "b8": "b'10000000'", "b9": "b'100000001'",
    "b63": "b'1'", "b64": f"b'1{'0' * 63}'", "e": "'it''s'", "s": "'a,c'", "s20": "'w0,w19'", "s64": "'m63'",
    "c": "'a'", "c100": "'a  '", "vc": "'trailing  '", "vc300": "REPEAT('v', 300)", "lat": "'x'",
    "ttx": "' '", "tx": "'\\0'", "mtx": "''", "ltx": "'x'", "js": "'null'",
    "bn": "x'00ff0000'", "vb": "x'00'", "tbl": "x'00'", "bl": "x''", "mbl": "x'00'", "lbl": "x''",
    "g": "ST_GeomFromText('POINT(-1 1)')",
}  # fmt: skip


def values_sql(
    row_id: int, values: dict[str, str], null: Callable[[int, str], bool] = lambda i, c: False
) -> str:
    """One VALUES tuple: `values` per column, NULL where `null(position, column)` says so."""
    parts = [str(row_id)]
    for position, column in enumerate(COLUMNS[1:], start=1):
        parts.append("NULL" if null(position, column) else values[column])
    return "(" + ", ".join(parts) + ")"


def insert_hostile_rows(db: TestDatabase) -> None:
    """Rows covering min/max/odd values and several NULL patterns (so several compiled decoders)."""
    tuples = [
        values_sql(1, MIN_ROW),
        values_sql(2, MAX_ROW),
        values_sql(3, ODD_ROW),
        values_sql(4, MIN_ROW, lambda i, c: True),  # every column but the key NULL
        values_sql(5, MAX_ROW, lambda i, c: i % 2 == 0),
        values_sql(6, ODD_ROW, lambda i, c: i % 3 == 1),
        values_sql(7, MAX_ROW, lambda i, c: i % 7 == 3),
    ]
    in_one_transaction(
        db,
        "SET SESSION time_zone = '+00:00'",  # TIMESTAMP literals, the extremes included, as UTC
        f"INSERT INTO hostile ({', '.join(COLUMNS)}) VALUES {', '.join(tuples)}",
    )


def assert_same(fast: ConvertedRows, library: ConvertedRows) -> None:
    assert fast.ops == library.ops
    assert fast.rejected == library.rejected
    assert len(fast.arrays) == len(library.arrays)
    for i, (a, b) in enumerate(zip(fast.arrays, library.arrays, strict=True)):
        assert a.type == b.type, (i, a.type, b.type)
        assert a.equals(b), (i, a.to_pylist(), b.to_pylist())


@pytest.fixture
def both_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Decode every rows event of the stream with both paths; the list records (event, rows).

    The fast path must handle every event (no fallback) and match the library exactly.
    """
    decoded: list[tuple[str, int]] = []

    def decode(event: Any, table: rows.BinlogTable) -> ConvertedRows:
        images = rows._decode_fast(event, table)  # raises FastPathUnsupported if it would fall back
        fast = ConvertedRows(images.ops, table.fast.convert(images.images))
        library = rows._decode_with_library(event, table)
        assert_same(fast, library)
        decoded.append((type(event).__name__, library.num_rows))
        return library

    monkeypatch.setattr(binlog, "decode_rows_event", decode)
    yield decoded


def data_of(batches: list[Batch], table: str) -> pa.Table:
    return pa.concat_tables([c.data for c in changes_of(batches, table)])


def test_every_type_and_null_pattern_decodes_like_the_library(
    mysql_db: TestDatabase, both_paths: list[tuple[str, int]]
) -> None:
    execute(mysql_db, HOSTILE_DDL)
    source = make_source(mysql_db)
    start = position_of(source)
    insert_hostile_rows(mysql_db)
    in_one_transaction(
        mysql_db,
        "UPDATE hostile SET ti = -(ti DIV 2), vc = CONCAT(LEFT(IFNULL(vc, ''), 40), '!'), d65 = -d65, dt6 = NULL WHERE id <= 3",
        "UPDATE hostile SET dt6 = '2001-02-03 04:05:06.7', js = NULL, bl = x'00' WHERE id > 3",
        "UPDATE hostile SET id = id + 100 WHERE id IN (2, 5)",  # key change: D old key, I new key
        "DELETE FROM hostile WHERE id IN (1, 4, 105)",
    )
    batches = stream_all(source, start)

    # Large rows: the server splits a statement's rows over several events.
    kinds = [kind for kind, _ in both_paths]
    assert [k for n, k in enumerate(kinds) if n == 0 or kinds[n - 1] != k] == [
        "WriteRowsEvent", "UpdateRowsEvent", "DeleteRowsEvent",
    ]  # fmt: skip
    assert len(kinds) > 5
    data = data_of(batches, "hostile")
    assert data.column("Op").to_pylist() == ["I"] * 7 + ["U"] * 7 + ["D", "I", "D", "I"] + ["D"] * 3
    assert data.num_rows == sum(n for _, n in both_paths)
    # Spot checks that the shared answer is the right one (test_mysql_source checks every type).
    first = data.slice(0, 1).to_pylist()[0]  # (row 2 holds year 9999 at UTC-03:30: past Python's range)
    assert first["biu"] == Decimal(0) and first["d65"] == Decimal(MIN_ROW["d65"])
    assert first["dt6"] == wall(dt.datetime(1000, 1, 1)) and first["ts3"] == utc(
        dt.datetime(1970, 1, 1, 0, 0, 1)
    )
    odd = data.slice(2, 1).to_pylist()[0]
    assert [odd[f"tm{n}"] for n in FSPS] == [
        "-00:00:01", "-10:00:00.5", "-00:00:00.01", "-10:00:00.250", "-00:59:59.9999", "-01:00:00.00001",
        "-00:00:00.000001",
    ]  # fmt: skip
    assert odd["bn"] == b"\x00\xff\x00\x00" and odd["y"] == 0 and odd["b64"] == -(2**63)
    assert odd["d12"] == Decimal("-0.01") and odd["biu"] == Decimal(2**63)
    assert odd["dt0"] == wall(dt.datetime(2024, 3, 10, 2, 30))  # in the DST gap: the exact path


def test_stream_output_is_identical_with_the_library_decoder(mysql_db: TestDatabase) -> None:
    execute(mysql_db, HOSTILE_DDL)
    source = make_source(mysql_db)
    start = position_of(source)
    insert_hostile_rows(mysql_db)
    execute(mysql_db, "UPDATE hostile SET si = si DIV 2, tx = 'changed'", "DELETE FROM hostile WHERE id = 3")
    until = position_of(source)
    before = fallback_counts()
    fast = stream_all(source, start, until=until)
    assert fallback_counts() == before  # nothing went to the library path
    with rows.library_decoding():
        library = stream_all(source, start, until=until)
    assert [b.changes for b in fast] == [b.changes for b in library]
    assert data_of(fast, "hostile").num_rows == 7 + 7 + 1


def test_values_the_library_quarantines_fall_back_to_it(
    mysql_db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    execute(
        mysql_db,
        "CREATE TABLE q (id INT PRIMARY KEY, d DATE, dtm DATETIME(3), ts TIMESTAMP NULL, v VARCHAR(5))",
    )
    source = make_source(mysql_db)
    start = position_of(source)
    conn = mysql_db.admin_connect()
    execute(mysql_db, "SET SESSION sql_mode = ''", conn=conn)  # zero dates, as legacy applications write them
    for values in (
        "(1, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05', 'ok')",
        "(2, '0000-00-00', NULL, NULL, 'zd'), (3, '2024-01-03', NULL, NULL, 'fine')",
        "(4, '2024-01-02', '0000-00-00 00:00:00', NULL, 'zdt')",
        "(5, NULL, NULL, '0000-00-00 00:00:00', 'zts')",
        "(6, '2024-00-10', NULL, NULL, 'zm')",
    ):
        execute(mysql_db, f"INSERT INTO q VALUES {values}", conn=conn)
    until = position_of(source)
    before = sum(fallback_counts().values())
    with caplog.at_level(logging.DEBUG, logger="connectors.mysql.fastrows"):
        fast = stream_all(source, start, until=until)
    assert sum(fallback_counts().values()) - before == 4  # every event with a rejected value
    assert sum("decoded by mysql-replication" in r.getMessage() for r in caplog.records) == 4
    with rows.library_decoding():
        library = stream_all(source, start, until=until)
    assert [b.changes for b in fast] == [b.changes for b in library]
    assert [b.quarantined for b in fast] == [b.quarantined for b in library]
    assert [r["id"] for r in rows_of(fast, "q")] == [1, 3]
    reasons = [q.reason for b in fast for q in b.quarantined]
    assert len(reasons) == 4 and "0000-00-00" in reasons[0] and "TIMESTAMP" in reasons[2]


def test_minimal_row_images_fall_back_to_the_library(mysql_db: TestDatabase) -> None:
    execute(mysql_db, "CREATE TABLE m (id INT PRIMARY KEY, a INT, b VARCHAR(10))")
    execute(mysql_db, "INSERT INTO m VALUES (1, 1, 'x'), (2, 2, 'y')")
    source = make_source(mysql_db)
    start = position_of(source)
    conn = mysql_db.admin_connect()
    execute(
        mysql_db, "SET SESSION binlog_row_image = 'MINIMAL'", "UPDATE m SET a = 10 WHERE id = 1", conn=conn
    )
    until = position_of(source)
    before = fallback_counts()
    fast = stream_all(source, start, until=until)
    after = fallback_counts()
    assert sum(after.values()) - sum(before.values()) == 1
    assert any("FULL row image" in reason and after[reason] > before.get(reason, 0) for reason in after)
    with rows.library_decoding():
        library = stream_all(source, start, until=until)
    # Identical to the library path (which cannot make sense of MINIMAL images either: preflight
    # requires binlog_row_image=FULL); the point is that the fast decoder does not guess.
    assert [b.changes for b in fast] == [b.changes for b in library]
    assert len(rows_of(fast, "m")) == 2


def test_large_events_and_many_null_patterns(
    mysql_db: TestDatabase, both_paths: list[tuple[str, int]]
) -> None:
    execute(
        mysql_db,
        "CREATE TABLE wide (id BIGINT PRIMARY KEY, a INT, b DECIMAL(12,2), c VARCHAR(64), d DATETIME(6),"
        " e TEXT, f DOUBLE, g TIMESTAMP(3) NULL, h ENUM('x','y'))",
    )
    source = make_source(mysql_db)
    start = position_of(source)
    values = ", ".join(
        f"({i}, {'NULL' if i % 2 else i}, {'NULL' if i % 3 else f'{i}.{i % 100:02d}'},"
        f" {'NULL' if i % 5 == 0 else repr(f'name {i} é')}, {'NULL' if i % 7 == 0 else repr(f'2024-01-01 00:00:{i % 60:02d}.{i:06d}')},"
        f" {'NULL' if i % 11 == 0 else repr('t' * (i % 300))}, {i / 7}, {'NULL' if i % 13 == 0 else repr('2024-06-01 10:00:00.5')},"
        f" {'NULL' if i % 17 == 0 else repr('xy'[i % 2])})"
        for i in range(1, 3001)
    )
    execute(mysql_db, f"INSERT INTO wide VALUES {values}", "UPDATE wide SET a = IFNULL(a, 0) + 1, c = NULL")
    stream_all(source, start)
    assert sum(n for kind, n in both_paths if kind == "WriteRowsEvent") == 3000
    assert sum(n for kind, n in both_paths if kind == "UpdateRowsEvent") == 3000
    assert len(both_paths) > 10  # several events per statement: the row images span events


@pytest.mark.parametrize(
    ("precision", "scale", "size"),
    [(1, 0, 1), (10, 0, 5), (12, 2, 6), (18, 9, 8), (5, 5, 3), (38, 10, 18), (65, 30, 30)],
)
def test_decimal_layout_matches_the_server_storage_size(precision: int, scale: int, size: int) -> None:
    # Sizes from MySQL's "Precision Math: DECIMAL Data Type Characteristics" (4 bytes per 9 digits).
    assert sum(b for b, _ in decimal_layout(precision, scale)) == size
    assert sum(d for _, d in decimal_layout(precision, scale)) == precision


def test_unsupported_table_is_reported_and_left_to_the_library() -> None:
    # A fake TABLE_MAP column of the pre-5.6 DATETIME layout (type code 12, no fractional-second
    # metadata): the fast decoder leaves it to the library.
    from connectors.mysql.fastrows_plan import plan_column
    from connectors.mysql.types import MySQLType

    class Column:
        type, name = 12, "legacy"

    with pytest.raises(FastPathUnsupported, match="type code 12"):
        plan_column(Column(), MySQLType("datetime"), "UTC")


def test_updates_of_a_composite_key_out_of_column_order(
    mysql_db: TestDatabase, both_paths: list[tuple[str, int]]
) -> None:
    execute(
        mysql_db,
        "CREATE TABLE ck (note TEXT, a INT NOT NULL, amount DECIMAL(9,3), b VARCHAR(300) NOT NULL,"
        " PRIMARY KEY (b, a))",
    )
    execute(
        mysql_db,
        "INSERT INTO ck VALUES ('n1', 1, 1.5, 'x'), (NULL, 2, NULL, 'x'), ('n3', 1, -2.25, 'y'), (NULL, 3, 0, 'z')",
    )
    source = make_source(mysql_db)
    start = position_of(source)
    execute(
        mysql_db,
        # one statement: rows keeping their key, and rows changing either part of it
        "UPDATE ck SET amount = IFNULL(amount, 0) + 1, note = IF(a = 3, 'three', note),"
        " b = IF(a = 2, 'w', b), a = IF(b = 'y', 10, a)",
    )
    batches = stream_all(source, start)
    assert [kind for kind, _ in both_paths] == ["UpdateRowsEvent"]
    got = [(r["Op"], r["b"], r["a"], r["amount"]) for r in rows_of(batches, "ck", meta=True)]
    assert got == [
        ("U", "x", 1, Decimal("2.500")),
        ("D", "x", 2, None),
        ("I", "w", 2, Decimal("1.000")),
        ("D", "y", 1, Decimal("-2.250")),
        ("I", "y", 10, Decimal("-1.250")),
        ("U", "z", 3, Decimal("1.000")),
    ]


def test_batches_mixing_deferred_and_library_rows_match_the_library(mysql_db: TestDatabase) -> None:
    # Fast-path rows are converted per run of events when a batch (or chunk) is handed out; a
    # quarantined value makes its event go to the library then, amid rows of other events and
    # tables, a schema change and incomplete batches of a transaction bigger than chunk_rows.
    execute(
        mysql_db,
        "CREATE TABLE a (id INT PRIMARY KEY, d DATE, v VARCHAR(20))",
        "CREATE TABLE b (id INT PRIMARY KEY, n INT)",
    )
    source = make_source(mysql_db, chunk_rows=100)
    start = position_of(source)

    def values(ids: range, row: Callable[[int], str]) -> str:
        return ", ".join(row(i) for i in ids)

    in_one_transaction(
        mysql_db,
        "SET SESSION sql_mode = ''",  # a zero date, as legacy applications write them
        f"INSERT INTO a VALUES {values(range(1, 31), lambda i: f'({i}, NULL, {str(i)!r})')}",
        f"INSERT INTO b VALUES {values(range(1, 31), lambda i: f'({i}, {i})')}",
        "INSERT INTO a VALUES (31, '0000-00-00', 'zero'), (32, '2024-01-01', 'ok')",
        "UPDATE a SET id = id + 100 WHERE id <= 5",  # key change: D old key, I new key
        "UPDATE b SET n = -n WHERE id > 25",
    )
    execute(mysql_db, "ALTER TABLE a ADD COLUMN w INT")
    in_one_transaction(
        mysql_db,
        f"INSERT INTO a VALUES {values(range(200, 450), lambda i: f'({i}, DATE(20240229), UPPER(0x626967), {i})')}",
        "UPDATE b SET n = n + 1",
        "DELETE FROM a WHERE id BETWEEN 300 AND 320",
    )
    until = position_of(source)
    before = sum(fallback_counts().values())
    fast = stream_all(source, start, until=until)
    assert sum(fallback_counts().values()) - before == 1  # only the event with the zero date
    with rows.library_decoding():
        library = stream_all(source, start, until=until)

    assert any(not b.complete for b in fast)  # the big transaction was handed out in chunks
    assert [b.end for b in fast if b.complete] == [b.end for b in library if b.complete]
    for table in ("a", "b"):
        assert rows_of(fast, table, meta=True) == rows_of(library, table, meta=True)
    versions = [c.schema for c in changes_of(fast, "a")]
    assert versions == [c.schema for c in changes_of(library, "a")]
    assert len(set(versions)) == 2 and versions.index(versions[-1]) > 0  # v1 rows before v2 rows
    assert [q for b in fast for q in b.quarantined] == [q for b in library for q in b.quarantined]
    assert [q.reason for b in fast for q in b.quarantined] == [
        next(q.reason for b in library for q in b.quarantined)
    ]
    ids = [r["id"] for r in rows_of(fast, "a")]
    assert 31 not in ids and ids.count(32) == 1 and len(ids) == 30 + 1 + 10 + 250 + 21


def test_connections_without_tls_options_share_one_tls_context() -> None:
    # PyMySQL's "preferred" TLS builds a default context per connection (loading the CA store);
    # it is built once. A connection with TLS options keeps a context of its own, as configured.
    from connectors.mysql.connection import _Connection

    first = _Connection(host="127.0.0.1", defer_connect=True)
    second = _Connection(host="127.0.0.1", defer_connect=True)
    assert first.ssl and not first._ssl_required and first.ctx is second.ctx
    verified = _Connection(host="127.0.0.1", defer_connect=True, ssl_verify_identity=True)
    assert verified._ssl_required and verified.ctx is not first.ctx
    assert verified.ctx.verify_mode == ssl.CERT_REQUIRED and first.ctx.verify_mode == ssl.CERT_NONE
    disabled = _Connection(host="127.0.0.1", defer_connect=True, ssl_disabled=True)
    assert not disabled.ssl
