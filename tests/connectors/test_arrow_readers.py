"""The Arrow chunk readers against the current snapshot conversion, on the real servers.

The current paths are the reference: `connectors.mysql.snapshot._TableReader` (PyMySQL +
`RowConverter.for_snapshot`) and `connectors.postgres.snapshot._read_table` (raw output text +
`ChangeBuffer`). Each table is read both ways in the same small chunks, and every chunk must give
the same Arrow table (types and values), the same quarantined rows and the same key to continue
after - for every column type of the type-fidelity tests, NULLs, unicode, huge decimals, time
zones with DST gaps and the values only the quarantine can take.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pymysql.cursors
import pytest

from connectors.events import TableId
from connectors.mysql import MySQLSourceConfig
from connectors.mysql import arrow_reader as mysql_arrow
from connectors.mysql.connection import connect as mysql_connect
from connectors.mysql.schema import read_table_definition
from connectors.mysql.snapshot import KeyRange, _TableReader
from tests.conftest import TestDatabase
from tests.connectors.test_mysql_source import TIME_VALUES, TYPES_DDL, TYPES_ROWS

ZONE = "America/St_Johns"  # DST gap and overlap at 02:00 local, a half-hour offset
SNAPSHOT_TS = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
POSITION = "0-1-42"


def execute(conn: Any, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def assert_same_table(fast: pa.Table, reference: pa.Table) -> None:
    """Equal schemas and values; NaN equals NaN (the readers must agree on it too)."""
    assert fast.schema == reference.schema
    assert fast.num_rows == reference.num_rows
    for name in reference.column_names:
        a, b = fast.column(name), reference.column(name)
        if pa.types.is_floating(b.type):
            assert pc.all(pc.or_(pc.equal(pc.is_nan(a), pc.is_nan(b)), pc.equal(a, b))).as_py() in (
                True,
                None,
            )
            assert pc.is_nan(a).to_pylist() == pc.is_nan(b).to_pylist(), name
            continue
        assert a.equals(b), f"column {name}: {a.to_pylist()[:5]} != {b.to_pylist()[:5]}"


# --- MySQL / MariaDB ---------------------------------------------------------------------------

MORE_MYSQL_ROWS = [
    # DST overlap (first instant taken) and late 9999 west of UTC; SET with one member; text JSON
    "(101, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 9223372036854775808, 0.0000000001, NULL, 0, -0e0,"
    " 'a', 'tab\\tnl\\nquote''\"', '', '{\"a\": {\"b\": [true, null, 1.5e300]}}', 'green', 'b', x'41', x'', x'00',"
    " b'1', b'1000000000000000000000000000000000000000000000000000000000000000',"
    " '9999-12-31', '-838:59:59.000', 1901, '2024-11-03 01:30:00.000001', '2038-01-19 03:14:07.999999', '\\\\')",
    "(102, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL, 'a,b,c', NULL, NULL, NULL, NULL, NULL, '0001-01-01', '00:00:00.001', 1901,"
    " '9999-12-31 23:59:59.999999', NULL, NULL)",
]


def mysql_config(db: TestDatabase, **overrides: Any) -> MySQLSourceConfig:
    settings: dict[str, Any] = {
        "name": "arrow",
        "host": db.host,
        "port": db.port,
        "user": db.cdc_user,
        "password": db.cdc_password,
        "database": db.name,
        "timezone": ZONE,
        "server_id": 100_000 + secrets.randbelow(2**30),
        "snapshot_readers": 1,
    }
    chunk_rows = overrides.pop("chunk_rows", None)
    settings.update(overrides)
    config = MySQLSourceConfig(**settings)
    # Chunks smaller than the configurable minimum, to cross chunk boundaries with few rows.
    return config if chunk_rows is None else config.model_copy(update={"chunk_rows": chunk_rows})


def compare_mysql(db: TestDatabase, table: str, chunk_rows: int, *, expect_fast: bool = True) -> list[Any]:
    """Read `table` both ways in chunks of `chunk_rows`; assert equal chunk by chunk; the chunks."""
    config = mysql_config(db, chunk_rows=chunk_rows)
    conn = mysql_connect(config, cursorclass=pymysql.cursors.SSCursor)
    try:
        definition = read_table_definition(conn, TableId("arrow", db.name, table))
        reference = _TableReader(config, definition, POSITION, SNAPSHOT_TS)
        expected = list(reference._read_range(conn, KeyRange(None, None), None))
        plan = mysql_arrow.plan_chunk_reads(definition, config.timezone)
        url = mysql_arrow.connectorx_url(config)
        chunks = list(
            mysql_arrow.read_table_chunks(
                url, plan, chunk_rows, position_text=POSITION, snapshot_ts=SNAPSHOT_TS, reference_conn=conn
            )
        )
        assert len(chunks) == len(expected)
        for chunk, want in zip(chunks, expected, strict=True):
            assert_same_table(chunk.changes.data, want.changes.data)
            assert chunk.changes.schema == want.changes.schema
            assert chunk.quarantined == want.quarantined
            # The key to continue after is what the PyMySQL path continues after, type for type.
            assert chunk.key == want.key
            assert [type(v) for v in chunk.key or ()] == [type(v) for v in want.key or ()]
            assert (chunk.rows, chunk.last) == (want.rows, want.last)
            if expect_fast and chunk.rows:
                assert chunk.fast
        return chunks
    finally:
        conn.close()


def test_mysql_every_type_reads_as_the_pymysql_path(mysql_any_db: TestDatabase) -> None:
    admin = mysql_any_db.admin_connect()
    values = ", ".join([*(row.format(id=i + 1) for i, row in enumerate(TYPES_ROWS)), *MORE_MYSQL_ROWS])
    execute(admin, TYPES_DDL, "SET SESSION time_zone = '+05:00'", f"INSERT INTO `types_ünï` VALUES {values}")
    chunks = compare_mysql(mysql_any_db, "types_ünï", chunk_rows=2)
    assert sum(c.rows for c in chunks) == 5 and all(not c.quarantined for c in chunks)


def test_mysql_time_values_of_every_precision(mysql_any_db: TestDatabase) -> None:
    admin = mysql_any_db.admin_connect()
    columns = ", ".join(f"t{n} TIME({n})" for n in range(7))
    rows = ", ".join(f"({i}, {', '.join([repr(text)] * 7)})" for i, text in enumerate(TIME_VALUES))
    execute(admin, f"CREATE TABLE times (id INT PRIMARY KEY, {columns})", f"INSERT INTO times VALUES {rows}")
    compare_mysql(mysql_any_db, "times", chunk_rows=4)


def test_mysql_zero_dates_are_quarantined_as_before(mysql_any_db: TestDatabase) -> None:
    admin = mysql_any_db.admin_connect()
    execute(
        admin,
        "CREATE TABLE q (id INT PRIMARY KEY, d DATE, dtm DATETIME, ts TIMESTAMP NULL)",
        "SET SESSION sql_mode = ''",
        "INSERT INTO q VALUES (1, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05'),"
        " (2, '0000-00-00', '2024-01-02 03:04:05', NULL), (3, '2024-01-02', '0000-00-00 00:00:00', NULL),"
        " (4, '2024-01-02', '2024-01-02 03:04:05', '0000-00-00 00:00:00'), (5, '2024-00-10', NULL, NULL),"
        " (6, '0000-01-01', '0000-01-01 00:00:00', NULL), (7, '2024-01-03', '2024-03-10 02:30:00', NULL)",
    )
    chunks = compare_mysql(mysql_any_db, "q", chunk_rows=100, expect_fast=False)
    (chunk,) = chunks
    assert not chunk.fast and [q.payload.split(",")[0] for q in chunk.quarantined] == [
        "{'id': 2",
        "{'id': 3",
        "{'id': 4",
        "{'id': 5",
        "{'id': 6",
    ]
    # A chunk without such values is read fast again.
    compare_mysql_after = compare_mysql(mysql_any_db, "q", chunk_rows=1, expect_fast=False)
    assert [c.fast for c in compare_mysql_after] == [True, False, False, False, False, False, True, True]


def test_mysql_composite_keys_continue_where_pymysql_would(mysql_any_db: TestDatabase) -> None:
    admin = mysql_any_db.admin_connect()
    execute(
        admin,
        "CREATE TABLE ck (name VARCHAR(20), at DATETIME(6), amount DECIMAL(30,10), tag VARBINARY(4),"
        " day DATE, v INT, PRIMARY KEY (name, at, amount, tag, day))",
        "INSERT INTO ck VALUES ('a', '2024-01-01 00:00:00', 1.5, x'00', '2024-01-01', 1),"
        " ('a', '2024-01-01 00:00:00', 1.5, x'01', '2024-01-01', 2), ('a', '2024-01-01 00:00:00.5', -1, x'', '2024-01-01', 3),"
        " ('a''\\\\', '2024-01-01 00:00:00', 1, x'ff', '2024-01-02', 4), ('é🎉', '1000-01-01', 0, x'00', '1000-01-01', 5),"
        " ('Z', '9999-12-31 23:59:59.999999', 99999999999999999999.9999999999, x'7f', '9999-12-31', 6)",
    )
    chunks = compare_mysql(mysql_any_db, "ck", chunk_rows=2)
    assert sum(c.rows for c in chunks) == 6


def test_mysql_bench_shaped_table(mysql_any_db: TestDatabase) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from bench_snapshot import MYSQL_DDL, MYSQL_VALUES, TABLE

    from tests.mysql_support import seq_table

    admin = mysql_any_db.admin_connect()
    execute(
        admin,
        MYSQL_DDL,
        f"INSERT INTO {TABLE} SELECT {MYSQL_VALUES} FROM (SELECT seq AS n FROM {seq_table(3000)}) AS s",
    )
    chunks = compare_mysql(mysql_any_db, TABLE, chunk_rows=1000)
    assert [c.rows for c in chunks] == [1000, 1000, 1000, 0]


def test_mysql_unsupported_tables_say_so(mysql_any_db: TestDatabase) -> None:
    admin = mysql_any_db.admin_connect()
    execute(admin, "CREATE TABLE g (id INT PRIMARY KEY, p POINT)", "CREATE TABLE bk (b BIT(8) PRIMARY KEY)")
    config = mysql_config(mysql_any_db)
    conn = mysql_connect(config)
    try:
        for name in ("g", "bk"):
            definition = read_table_definition(conn, TableId("arrow", mysql_any_db.name, name))
            with pytest.raises(mysql_arrow.ArrowReadUnsupported):
                mysql_arrow.plan_chunk_reads(definition, ZONE)
    finally:
        conn.close()


# --- PostgreSQL ----------------------------------------------------------------------------------

MISC_PG_DDL = """
CREATE TABLE misc (
    id int PRIMARY KEY, mo money, ip inet, cd cidr, rng int4range, c1 "char", ch char(4), x xml,
    tz_a timetz[], iv_a interval[], big text, e_a mood[], comp_n numeric(76,38), comp_n2 numeric(39,1)
)
"""
MISC_PG_ROWS = [
    "(1, 12.5, '10.0.0.1', '10.0.0.0/8', '[1,5)', 'é', 'ab', '<a>ü</a>', '{12:00+01}', '{\"1 day\",NULL}',"
    " repeat('ü', 5000), '{sad,happy}', '-1.00000000000000000000000000000000000001', 12345678901234567890123456789012345678.9)",
    "(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(3, -0.01, '::1', '::/0', 'empty', 'a', '', '', '{}', '{}', '', '{}', 0, 0)",
]


def compare_pg(db: Any, table: str, chunk_rows: int, *, expect_fast: bool | None = True) -> list[Any]:
    """Read `table` through ADBC and through `snapshot._read_chunks` in chunks of `chunk_rows`."""
    from connectors.postgres import arrow_reader as pg_arrow
    from connectors.postgres.catalog import Catalog
    from connectors.postgres.connection import connect as pg_connect
    from connectors.postgres.snapshot import _read_chunks
    from tests.postgres_support import make_config

    config = make_config(db).model_copy(update={"chunk_rows": chunk_rows})
    conn = pg_connect(config)
    arrow_conn = pg_arrow.connect_arrow(config)
    try:
        catalog = Catalog(conn, config.timezone)
        layout = catalog.describe(TableId(config.name, "public", table))
        micros = 1_714_979_289_123_456
        expected = list(_read_chunks(config, conn, catalog, layout, POSITION, micros, None))
        plan = pg_arrow.plan_chunk_reads(layout)
        chunks = list(
            pg_arrow.read_table_chunks(arrow_conn, conn, catalog, plan, chunk_rows, POSITION, micros)
        )
        assert len(chunks) == len(expected)
        for chunk, want in zip(chunks, expected, strict=True):
            assert_same_table(chunk.changes.data, want.changes.data)
            assert chunk.changes.schema == want.changes.schema
            assert chunk.quarantined == want.quarantined
            assert (chunk.key, chunk.rows, chunk.last) == (want.key, want.rows, want.last)
            if expect_fast and chunk.rows:
                assert chunk.fast
        return chunks
    finally:
        arrow_conn.close()
        conn.close()


def test_pg_every_type_reads_as_the_text_path(pg_db: Any) -> None:
    from tests.connectors.test_postgres_binary import EDGE_DDL, EDGE_ROWS, insert_sql

    admin = pg_db.admin_connect()
    execute(admin, EDGE_DDL, *(insert_sql(i, values) for i, values in EDGE_ROWS.items() if i < 20))
    chunks = compare_pg(pg_db, "edge", chunk_rows=4)
    assert sum(c.rows for c in chunks) == len([i for i in EDGE_ROWS if i < 20])


def test_pg_values_only_the_quarantine_takes_are_quarantined_as_before(pg_db: Any) -> None:
    from tests.connectors.test_postgres_binary import EDGE_DDL, EDGE_ROWS, insert_sql

    admin = pg_db.admin_connect()
    execute(admin, EDGE_DDL, *(insert_sql(i, values) for i, values in EDGE_ROWS.items()))
    chunks = compare_pg(pg_db, "edge", chunk_rows=3, expect_fast=None)
    quarantined = [q for c in chunks for q in c.quarantined]
    assert len(quarantined) == len([i for i in EDGE_ROWS if i >= 20])
    # Chunks without such values stay on the fast path.
    assert [c.fast for c in chunks if c.rows][:3] == [True, True, True]
    assert not all(c.fast for c in chunks if c.rows)


def test_pg_types_of_the_source_test_and_text_only_types(pg_db: Any) -> None:
    from tests.connectors.test_postgres_source import TYPES_DDL, TYPES_ROW

    admin = pg_db.admin_connect()
    execute(
        admin,
        TYPES_DDL,
        TYPES_ROW.format(id=1),
        "INSERT INTO typed (id) VALUES (2)",
        MISC_PG_DDL,
        f"INSERT INTO misc VALUES {', '.join(MISC_PG_ROWS)}",
    )
    compare_pg(pg_db, "typed", chunk_rows=1)
    compare_pg(pg_db, "misc", chunk_rows=2)


def test_pg_composite_keys_continue_where_the_text_path_would(pg_db: Any) -> None:
    admin = pg_db.admin_connect()
    execute(
        admin,
        "CREATE TABLE ck (name text, at timestamptz, amount numeric(30,10), u uuid, flag bool, c char(3),"
        " v int, PRIMARY KEY (name, at, amount, u, flag, c))",
        "INSERT INTO ck VALUES ('a', '2024-01-01 00:00:00+00', 1.5, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 'x', 1),"
        " ('a', '2024-01-01 00:00:00+00', 1.5, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', false, 'x', 2),"
        " ('a', '2024-01-01 00:00:00.5+00', -1, '00000000-0000-0000-0000-000000000000', true, '', 3),"
        " ('a''\\', '2024-01-01 00:00:00+00', 1, 'ffffffff-ffff-ffff-ffff-ffffffffffff', true, 'yy', 4),"
        " ('é🎉', '0001-01-01 00:00:00+00', 0, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 'z', 5),"
        " ('Z', '9999-12-31 23:59:59.999999+00', 99999999999999999999.9999999999, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 'q', 6)",
    )
    chunks = compare_pg(pg_db, "ck", chunk_rows=2)
    assert sum(c.rows for c in chunks) == 6


def test_pg_bench_shaped_table(pg_db: Any) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from bench_snapshot import PG_DDL, PG_VALUES, TABLE

    admin = pg_db.admin_connect()
    execute(
        admin, PG_DDL, f"INSERT INTO {TABLE} SELECT {PG_VALUES} FROM generate_series(1::bigint, 3000) AS n"
    )
    chunks = compare_pg(pg_db, TABLE, chunk_rows=1000)
    assert [c.rows for c in chunks] == [1000, 1000, 1000, 0]
