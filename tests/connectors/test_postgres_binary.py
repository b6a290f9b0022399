"""pgoutput's binary values (PostgreSQL 14+) against the real local PostgreSQL 15.

The text path is the reference: the same changes streamed once with binary values and once with
text values (the slot is never confirmed, so both sessions read the same WAL) must give the same
lake rows, the same quarantined rows and the same schemas - for every supported type, NULLs,
unicode, huge numerics, NaN/Infinity, time zones and the values only one side can represent.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from connectors.events import Batch
from connectors.postgres import Lsn, PostgresSource
from connectors.postgres.pgoutput import PgoutputError
from connectors.postgres.tuples import TupleReader

UTC = dt.UTC


# Fixtures `admin` and `make_source`: tests/connectors/conftest.py.


def execute(conn: Any, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def rows_of(batches: list[Batch], table: str | None = None) -> list[dict[str, Any]]:
    return [
        row
        for batch in batches
        for changes in batch.changes
        if table is None or changes.table.name == table
        for row in changes.data.to_pylist()
    ]


def stream_both(make_source: Any, final: Batch, **overrides: Any) -> tuple[list[Batch], list[Batch]]:
    """The same WAL streamed with binary values and with text values (nothing acknowledged)."""
    binary = make_source(**overrides)
    until = binary.current_position()
    with_binary = list(binary.stream(final.end, final.floors, until=until))
    assert binary.values_format == "binary"
    text = make_source(binary_values=False, **overrides)
    with_text = list(text.stream(final.end, final.floors, until=until))
    assert text.values_format == "text"
    return with_binary, with_text


# --- every type, both ways ---------------------------------------------------------------------

EDGE_DDL = """
CREATE TYPE mood AS ENUM ('happy', 'sad', 'ünïcode 👋');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE DOMAIN price AS numeric(12,3);
CREATE TABLE edge (
    id int PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint, o oid,
    f4 real, f8 double precision,
    nfree numeric, n20 numeric(20,4), n60 numeric(60,10), nneg numeric(7,-2), dom_price price,
    t text, vc varchar(20), ch char(6), c1 "char", nm name,
    b boolean, raw bytea, j json, jb jsonb, u uuid,
    d date, tm time, tz timetz, ts timestamp, tstz timestamptz, iv interval,
    a_i int[], a_t text[], a_n numeric(10,2)[], a_ts timestamptz[], a_d date[], a_b boolean[], a_u uuid[],
    m mood, pos positive
)
"""

# id -> column -> SQL literal; the columns not named are NULL.
EDGE_ROWS: dict[int, dict[str, str]] = {
    1: {
        "i2": "-32768",
        "i4": "2147483647",
        "i8": "-9223372036854775808",
        "o": "4294967295",
        "f4": "3.4028235e38",
        "f8": "0.1",
        "nfree": "'123456789012345678901234567890.123456789012345678901234567890'",
        "n20": "'-1234567890123456.7891'",
        "n60": "'12345678901234567890123456789012345678901234567890.0123456789'",
        "nneg": "123456789",
        "dom_price": "'-0.001'",
        "t": "'Grüße 👋 ✓ \\ \" '' ,{}'",
        "vc": "'ten chars!'",
        "ch": "'äö'",
        "c1": "'é'",
        "nm": "'名前'",
        "b": "true",
        "raw": "'\\x00ff0001'",
        "j": '\'  {"b" : 1, "a": [1, 2.50]}  \'',
        "jb": '\'{"ключ": "значение ✓", "n": 1.50, "nested": {"x": [null, true]}}\'',
        "u": "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
        "d": "'2024-02-29'",
        "tm": "'23:59:59.999999'",
        "tz": "'12:00:00.5+05:30'",
        "ts": "'2024-07-01 12:00:00'",
        "tstz": "'2024-06-01 12:00:00.123+05:30'",
        "iv": "'1 year 2 mons 3 days 04:05:06.789'",
        "a_i": "'{1,NULL,3}'",
        "a_t": '\'{"a b","c,d",NULL,"q\\"uote","NULL",""}\'',
        "a_n": "'{1.50,-2.25,NULL}'",
        "a_ts": '\'{"2024-01-01 00:00:00+00","2024-01-01 12:00:00-03:30"}\'',
        "a_d": "'{2024-01-01,NULL}'",
        "a_b": "'{t,f,NULL}'",
        "a_u": "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'",
        "m": "'ünïcode 👋'",
        "pos": "7",
    },
    2: {},  # every column NULL
    3: {
        "i2": "32767",
        "i4": "-2147483648",
        "i8": "9223372036854775807",
        "o": "0",
        "f4": "'NaN'",
        "f8": "'-Infinity'",
        "nfree": "'NaN'",
        "n20": "0",
        "n60": "'-0.0000000001'",
        "nneg": "'-100'",
        "dom_price": "0",
        "t": "''",
        "vc": "''",
        "ch": "''",
        "c1": "'a'",
        "nm": "''",
        "b": "false",
        "raw": "''",
        "j": "'[]'",
        "jb": "'[]'",
        "u": "'00000000-0000-0000-0000-000000000000'",
        "d": "'0001-01-01'",
        "tm": "'00:00:00'",
        "tz": "'00:00:00-12:00'",
        "ts": "'0001-01-01 00:00:00'",
        "tstz": "'0001-01-01 00:00:00+00'",
        "iv": "'-1 year -2 mons +3 days -04:05:06.789'",
        "a_i": "'{}'",
        "a_t": "'{}'",
        "a_n": "'{}'",
        "a_ts": "'{}'",
        "a_d": "'{}'",
        "a_b": "'{}'",
        "a_u": "'{}'",
        "m": "'happy'",
        "pos": "1",
    },
    4: {
        "f4": "'-0'",
        "f8": "1e308",
        "nfree": "'Infinity'",
        "n20": "'9999999999999999.9999'",
        "d": "'9999-12-31'",
        "tm": "'00:00:00.000001'",
        "tz": "'23:59:59.999999+14:59:59'",
        "ts": "'9999-12-31 20:00:00'",
        "tstz": "'9999-12-31 23:59:59.999999+00'",
        "iv": "'1 mon -1 day'",
    },
    5: {"nfree": "'-Infinity'", "iv": "'0'", "tz": "'12:00:00-00:00:30'", "f8": "'NaN'", "f4": "'Infinity'"},
    6: {
        "iv": "'1.5 seconds'",
        "ts": "'2024-11-03 01:30:00'",
        "tstz": "'2024-11-03 01:30:00-02:30'",
    },  # overlap
    7: {"iv": "'-0.5 seconds'", "ts": "'2024-03-10 02:30:00'"},  # in St. John's spring-forward gap
    8: {"iv": "'1 day -1 second'", "nfree": "'0.000'", "n60": "'1e49'"},
    9: {"iv": "'100 years'", "nfree": "'-12.5'", "ts": "'1960-06-15 00:00:00.000001'"},
    10: {"iv": "'-3 hours 4 minutes 0.000001 seconds'", "nfree": "'1e-20'"},
    11: {"ts": "'9999-12-31 23:59:59.999999'"},  # past year 9999 in UTC: fine for Arrow, not for Python
    # Values the lake cannot hold: quarantined either way (one per row, the rest NULL).
    20: {"d": "'infinity'"},
    21: {"d": "'-infinity'"},
    22: {"d": "'0044-03-15 BC'"},
    23: {"ts": "'-infinity'"},
    24: {"tstz": "'infinity'"},
    25: {"tstz": "'0044-03-15 12:00:00.5+00 BC'"},
    26: {"tm": "'24:00:00'"},
    27: {"n20": "'NaN'"},
    28: {"a_i": "'{{1,2},{3,4}}'"},
    29: {"a_i": "'[0:1]={1,2}'"},
    30: {"d": "'12345-01-01'"},
    31: {"ts": "'12345-06-01 10:00:00'"},
}


def insert_sql(row_id: int, values: dict[str, str]) -> str:
    columns = ", ".join(["id", *values])
    return f"INSERT INTO edge ({columns}) VALUES ({', '.join([str(row_id), *values.values()])})"


def _without_timestamps(data: pa.Table) -> pa.Table:
    """Timestamps as int64 microseconds: Python's datetime stops at year 9999 (UTC), Arrow does not."""

    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_timestamp(t):
            return pa.int64()
        return pa.list_(plain(t.value_type)) if pa.types.is_list(t) else t

    return data.cast(pa.schema([f.with_type(plain(f.type)) for f in data.schema]))


def comparable(batches: list[Batch]) -> tuple[list[str], list[tuple[str, str, str]], list[Any]]:
    """Rows (repr, so NaN equals NaN), quarantined rows and schemas, in stream order."""
    rows = [repr(r) for b in batches for c in b.changes for r in _without_timestamps(c.data).to_pylist()]
    quarantined = [(q.position, q.reason, q.payload) for b in batches for q in b.quarantined]
    schemas = [c.data.schema for b in batches for c in b.changes]
    return rows, quarantined, schemas


def test_binary_values_give_exactly_what_text_values_give(admin: Any, make_source: Any) -> None:
    execute(admin, EDGE_DDL, "ALTER TABLE edge REPLICA IDENTITY FULL")
    _, final = _initial(make_source())
    execute(admin, *(insert_sql(i, values) for i, values in EDGE_ROWS.items()))
    # Updates (including a key change) and deletes read old and new tuples the same way.
    execute(
        admin,
        "UPDATE edge SET t = 'changed ✓', f8 = f8 * 2 WHERE id = 1",
        "UPDATE edge SET id = 101, d = NULL WHERE id = 3",
        "UPDATE edge SET nfree = '1.5' WHERE id IN (5, 8)",
        "DELETE FROM edge WHERE id IN (4, 22)",
    )
    with_binary, with_text = stream_both(make_source, final)
    binary_rows, binary_quarantined, binary_schemas = comparable(with_binary)
    text_rows, text_quarantined, text_schemas = comparable(with_text)
    assert binary_schemas == text_schemas
    for binary_row, text_row in zip(binary_rows, text_rows, strict=True):
        assert binary_row == text_row
    assert binary_quarantined == text_quarantined
    quarantined_ids = sorted(int(p.split("'id': '")[1].split("'")[0]) for _, _, p in binary_quarantined)
    assert quarantined_ids == [20, 21, 22, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31]  # 22 again: its delete


def test_binary_values_decode_every_type_exactly(admin: Any, make_source: Any) -> None:
    execute(admin, EDGE_DDL)
    source = make_source()
    _, final = _initial(source)
    execute(admin, *(insert_sql(i, values) for i, values in EDGE_ROWS.items() if i <= 10))
    batches = list(source.stream(final.end, final.floors, until=source.current_position()))
    assert source.values_format == "binary"
    assert [q.reason for b in batches for q in b.quarantined] == []
    rows = {r["id"]: r for r in rows_of(batches)}
    first, nulls, low, high = rows[1], rows[2], rows[3], rows[4]
    assert (first["i2"], first["i4"], first["i8"], first["o"]) == (-32768, 2147483647, -(2**63), 4294967295)
    assert first["f4"] == pytest.approx(3.4028235e38, rel=1e-7) and first["f8"] == 0.1
    assert first["nfree"] == "123456789012345678901234567890.123456789012345678901234567890"
    assert first["n20"] == Decimal("-1234567890123456.7891")
    assert first["n60"] == Decimal("12345678901234567890123456789012345678901234567890.0123456789")
    assert first["nneg"] == Decimal("123456800") and first["dom_price"] == Decimal("-0.001")
    assert (first["t"], first["ch"], first["c1"], first["nm"]) == (
        "Grüße 👋 ✓ \\ \" ' ,{}",
        "äö    ",
        "\\303",
        "名前",
    )
    assert first["raw"] == b"\x00\xff\x00\x01" and first["j"] == '  {"b" : 1, "a": [1, 2.50]}  '
    assert first["jb"] == '{"n": 1.50, "nested": {"x": [null, true]}, "ключ": "значение ✓"}'
    assert first["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert first["d"] == dt.date(2024, 2, 29) and first["tm"] == dt.time(23, 59, 59, 999999)
    assert first["tz"] == "12:00:00.5+05:30" and first["iv"] == "P1Y2M3DT4H5M6.789S"
    assert first["ts"] == dt.datetime(2024, 7, 1, 14, 30, tzinfo=UTC)  # NDT, UTC-02:30
    assert first["tstz"] == dt.datetime(2024, 6, 1, 6, 30, 0, 123000, tzinfo=UTC)
    assert first["a_i"] == [1, None, 3] and first["a_t"] == ["a b", "c,d", None, 'q"uote', "NULL", ""]
    assert first["a_n"] == [Decimal("1.50"), Decimal("-2.25"), None]
    assert first["a_ts"] == [dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 1, 15, 30, tzinfo=UTC)]
    assert first["a_d"] == [dt.date(2024, 1, 1), None] and first["a_b"] == [True, False, None]
    assert first["a_u"] == ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]
    assert (first["m"], first["pos"]) == ("ünïcode 👋", 7)
    assert all(
        v is None for k, v in nulls.items() if k not in ("id", "Op", "_commit_ts", "_position", "_txid")
    )
    assert (low["i2"], low["i4"], low["i8"]) == (32767, -(2**31), 2**63 - 1)
    assert math.isnan(low["f4"]) and low["f8"] == float("-inf") and low["nfree"] == "NaN"
    assert low["n60"] == Decimal("-1E-10") and low["nneg"] == Decimal("-100")
    assert (low["t"], low["ch"], low["raw"], low["jb"]) == ("", "      ", b"", "[]")
    assert (
        low["d"] == dt.date(1, 1, 1)
        and low["tz"] == "00:00:00-12"
        and low["tstz"] == dt.datetime(1, 1, 1, tzinfo=UTC)
    )
    assert low["iv"] == "P-1Y-2M3DT-4H-5M-6.789S"
    assert low["a_i"] == [] and low["a_n"] == []
    assert math.copysign(1.0, high["f4"]) == -1.0 and high["nfree"] == "Infinity"
    assert high["d"] == dt.date(9999, 12, 31) and high["tz"] == "23:59:59.999999+14:59:59"
    assert (
        high["tstz"] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) and high["iv"] == "P1M-1D"
    )
    assert (rows[5]["nfree"], rows[5]["iv"], rows[5]["tz"]) == ("-Infinity", "PT0S", "12:00:00-00:00:30")
    # Wall times: ambiguous -> standard time (NST, UTC-03:30); in the gap -> the offset before it.
    assert rows[6]["ts"] == dt.datetime(2024, 11, 3, 5, 0, tzinfo=UTC) and rows[6]["iv"] == "PT1.5S"
    assert rows[6]["tstz"] == dt.datetime(2024, 11, 3, 4, 0, tzinfo=UTC)
    assert rows[7]["ts"] == dt.datetime(2024, 3, 10, 6, 0, tzinfo=UTC) and rows[7]["iv"] == "PT-0.5S"
    assert (rows[8]["iv"], rows[8]["nfree"], rows[8]["n60"]) == ("P1DT-1S", "0.000", Decimal("1E+49"))
    assert (rows[9]["iv"], rows[9]["nfree"]) == ("P100Y", "-12.5")
    assert rows[10]["nfree"] == "0.00000000000000000001" and rows[10]["iv"] == "PT-2H-55M-59.999999S"


def test_column_types_without_binary_decoder_mean_text_values(admin: Any, make_source: Any) -> None:
    """money, inet and ranges have send functions whose format is not decoded here; aclitem has
    none at all (pgoutput sends it as text even in binary mode). Either way: text values."""
    execute(admin, "CREATE TABLE odd (id int PRIMARY KEY, m money, ip inet, r int4range, acl aclitem)")
    source = make_source()
    _, final = _initial(source)
    execute(
        admin,
        "INSERT INTO odd VALUES (1, 12.5, '192.168.0.1/24', '[1,5)', 'lakehouse_admin=r/lakehouse_admin')",
    )
    [row] = rows_of(list(source.stream(final.end, final.floors, until=source.current_position())))
    assert source.values_format == "text"
    with admin.cursor() as cur:
        cur.execute("SELECT m::text, ip::text, r::text, acl::text FROM odd")
        assert (row["m"], row["ip"], row["r"], row["acl"]) == cur.fetchone()


def next_with_rows(stream: Iterator[Batch], wanted: int, table: str) -> list[Batch]:
    """Batches until `wanted` rows of `table` arrived (heartbeats and idle batches included)."""
    batches: list[Batch] = []
    deadline = time.monotonic() + 60
    while len(rows_of(batches, table)) < wanted:
        assert time.monotonic() < deadline, batches
        batches.append(next(stream))
    return batches


def test_a_new_column_type_without_decoder_switches_to_text_values(admin: Any, make_source: Any) -> None:
    execute(admin, "CREATE TABLE a (id int PRIMARY KEY, v numeric(8,2))")
    source = make_source(batch_max_seconds=0.2, idle_heartbeat_seconds=1)
    _, final = _initial(source)
    stream = source.stream(final.end, final.floors)
    first = next(stream)  # the session is open, with binary values (an idle batch or a heartbeat)
    assert source.values_format == "binary"
    execute(admin, "INSERT INTO a VALUES (1, 1.25)", "INSERT INTO a VALUES (2, 2.50)")
    execute(admin, "ALTER TABLE a ADD COLUMN m money", "INSERT INTO a VALUES (3, 3.75, 4.5)")
    batches = [first, *next_with_rows(stream, 3, "a")]
    stream.close()
    assert source.values_format == "text"
    rows = rows_of(batches, "a")
    assert [(r["id"], r["v"]) for r in rows] == [
        (1, Decimal("1.25")),
        (2, Decimal("2.50")),
        (3, Decimal("3.75")),
    ]
    with admin.cursor() as cur:
        cur.execute("SELECT m::text FROM a WHERE id = 3")
        assert rows[2]["m"] == cur.fetchone()[0]
    ends = [b.end for b in batches if isinstance(b.end, Lsn)]
    assert ends == sorted(ends) and all(b.start == final.end or b.start in ends for b in batches)


def test_the_switch_inside_a_huge_transaction_sends_each_change_once(admin: Any, make_source: Any) -> None:
    """Chunks of the transaction were handed out by the binary session: the text session drops
    exactly those changes and sends the rest."""
    execute(admin, "CREATE TABLE a (id int PRIMARY KEY)", "CREATE TABLE b (id int PRIMARY KEY)")
    source = make_source(batch_max_seconds=0.2, idle_heartbeat_seconds=1, chunk_rows=100)
    _, final = _initial(source)
    stream = source.stream(final.end, final.floors)
    next(stream)
    assert source.values_format == "binary"
    with admin.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO a SELECT generate_series(1, 250)")
        cur.execute("ALTER TABLE b ADD COLUMN m money")
        cur.execute("INSERT INTO b VALUES (1, 1), (2, 2), (3, 3)")
        cur.execute("INSERT INTO a SELECT generate_series(251, 260)")
        cur.execute("COMMIT")
    batches = next_with_rows(stream, 3, "b")
    stream.close()
    assert source.values_format == "text"
    unit = [b for b in batches if b.num_rows or not b.complete]
    assert [b.complete for b in unit] == [False, False, True]
    assert sorted(r["id"] for r in rows_of(unit, "a")) == list(range(1, 261))
    assert [r["id"] for r in rows_of(unit, "b")] == [1, 2, 3]
    assert len({r["_position"] for r in rows_of(unit)}) == 1


def _initial(source: PostgresSource) -> tuple[list[Batch], Batch]:
    batches = list(source.snapshot())
    return batches, batches[-1]


# --- the tuple decoder on its own ----------------------------------------------------------------


def binary_tuple(*values: bytes | None | str) -> bytes:
    """A TupleData: bytes -> 'b' value, None -> 'n', 'u' -> unchanged, other str -> 't'."""
    out = struct.pack(">h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value == "u":
            out += b"u"
        elif isinstance(value, str):
            out += b"t" + struct.pack(">i", len(value.encode())) + value.encode()
        else:
            out += b"b" + struct.pack(">i", len(value)) + value
    return out


CODES = ["q", None, "i", "16s", None]


def row_bytes(i: int, name: str | None, n: int | None, raw: bytes | None) -> tuple[bytes | None, ...]:
    return (
        struct.pack(">q", i),
        None if name is None else name.encode(),
        None if n is None else struct.pack(">i", n),
        bytes(range(16)),
        raw,
    )


def test_tuple_reader_fast_and_value_by_value_paths_agree() -> None:
    reader = TupleReader(5, CODES)
    columns: list[list[Any]] = [[] for _ in CODES]
    ops: list[str] = []
    insert = reader.inserter(tuple(c.append for c in columns), ops.append)
    rows = [
        row_bytes(1, "ä", 7, b"\x00"),
        row_bytes(2, None, 8, b""),  # a NULL shifts what follows: value by value
        row_bytes(3, "", None, None),
        (None, None, None, None, None),
    ]
    for row in rows:
        data = b"I\x00\x00\x00\x01N" + binary_tuple(*row)
        assert insert(data) == len(data)
    assert ops == ["I"] * 4
    assert columns == [
        [1, 2, 3, None],
        ["ä".encode(), None, b"", None],
        [7, 8, None, None],
        [bytes(range(16))] * 3 + [None],
        [b"\x00", b"", None, None],
    ]
    pos, values, unchanged = reader.read(binary_tuple(*row_bytes(4, "x", 1, "u")), 0)  # type: ignore[arg-type]
    assert values == [4, b"x", 1, bytes(range(16)), None] and unchanged == [4]


def test_tuple_reader_refuses_what_it_cannot_read() -> None:
    reader = TupleReader(5, CODES)
    with pytest.raises(PgoutputError, match="4 columns"):
        reader.read(binary_tuple(*row_bytes(1, "a", 1, b"")[:4]), 0)
    with pytest.raises(PgoutputError, match="'t'"):
        reader.read(binary_tuple(struct.pack(">q", 1), "text", None, None, None), 0)
    wrong_width = binary_tuple(b"\x00\x01", b"a", None, None, None)  # a 2-byte value for an int8
    with pytest.raises(PgoutputError, match="2 bytes for a 8-byte"):
        reader.read(wrong_width, 0)
    text = TupleReader(2)
    assert text.read(binary_tuple("12", None), 0)[1] == [b"12", None]
    with pytest.raises(PgoutputError, match="'b'"):
        text.read(binary_tuple(b"\x00", None), 0)
