"""PostgresSource against the real local PostgreSQL 15 (pgoutput), in a non-UTC test time zone."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import uuid
from decimal import Decimal
from typing import Any

import psutil
import pyarrow as pa
import pytest
from pydantic import SecretStr

from connectors.config import RetryConfig
from connectors.events import Batch, TableId
from connectors.postgres import Lsn, PostgresSource
from connectors.source import PositionLostError, PreflightError, SourceError, SourceUnavailableError
from tests.postgres_support import ACK_WAIT_SECONDS, make_config

UTC = dt.UTC
# Fixtures `admin` and `make_source`: tests/connectors/conftest.py.


# --- helpers -------------------------------------------------------------------------------------


def execute(conn: Any, *statements: str, params: Any = None) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement, params)


def table_id(source: PostgresSource, name: str) -> TableId:
    return TableId(source.name, "public", name)


def initial(source: PostgresSource) -> tuple[list[Batch], Batch]:
    batches = list(source.snapshot())
    assert batches[-1].complete and all(not b.complete for b in batches[:-1])
    return batches, batches[-1]


def stream_to_now(source: PostgresSource, since: Any, floors: Any) -> list[Batch]:
    """Everything committed up to now (a bounded run)."""
    return list(source.stream(since, floors, until=source.current_position()))


def with_rows(batches: list[Batch]) -> list[Batch]:
    """Drop row-less heartbeat batches (a bounded run may end with one).

    A row-less complete batch after an incomplete one closes a huge transaction: it stays.
    """
    kept = []
    for i, b in enumerate(batches):
        heartbeat = b.complete and not b.num_rows and not b.snapshot and (i == 0 or batches[i - 1].complete)
        if not heartbeat:
            kept.append(b)
    return kept


def rows_of(batches: list[Batch], table: str | None = None) -> list[dict[str, Any]]:
    out = []
    for batch in batches:
        for changes in batch.changes:
            if table is None or changes.table.name == table:
                out.extend(changes.data.to_pylist())
    return out


def slot_confirmed(conn: Any, slot: str) -> Lsn:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        )
        return Lsn.parse(cur.fetchone()[0])


def wait_confirmed(conn: Any, slot: str, expected: Lsn) -> Lsn:
    """The walsender applies feedback asynchronously: wait (bounded) until it shows."""
    deadline = time.monotonic() + ACK_WAIT_SECONDS
    while True:
        confirmed = slot_confirmed(conn, slot)
        if confirmed == expected or time.monotonic() > deadline:
            return confirmed
        time.sleep(0.05)


# --- preflight -------------------------------------------------------------------------------------


def test_preflight_passes_and_reports_replica_identity(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(
        admin,
        "CREATE TABLE with_pk (id int PRIMARY KEY, v text)",
        "CREATE TABLE full_identity (v text)",
        "ALTER TABLE full_identity REPLICA IDENTITY FULL",
    )
    source = make_source()
    source.preflight()
    assert source.replica_identities == {
        table_id(source, "full_identity"): "FULL",
        table_id(source, "with_pk"): "DEFAULT",
    }


def test_preflight_names_table_without_key_and_every_other_problem(
    pg_db: Any, admin: Any, make_source: Any
) -> None:
    execute(admin, "CREATE TABLE no_pk (v text)", "CREATE TABLE ok (id int PRIMARY KEY)")
    source = make_source(tables=("no_pk", "ok", "missing_table"))
    with pytest.raises(PreflightError) as caught:
        source.preflight()
    message = str(caught.value)
    assert '"public"."no_pk"' in message
    assert 'ALTER TABLE "public"."no_pk" REPLICA IDENTITY FULL' in message
    assert "primary key" in message
    assert '"public"."missing_table" does not exist' in message
    assert '"public"."ok"' not in message  # the good table is not blamed
    assert "cdc-local-pw" not in message


def test_connection_failure_names_endpoint_not_password(pg_db: Any) -> None:
    config = make_config(
        pg_db,
        port=1,  # nothing listens there
        password=SecretStr("very-secret-pw"),
        retry=RetryConfig(attempts=2, initial_seconds=0.01, max_seconds=0.01),
    )
    with pytest.raises(SourceUnavailableError) as caught:
        PostgresSource(config).current_position()
    assert "127.0.0.1:1" in str(caught.value)
    assert "very-secret-pw" not in str(caught.value)
    assert "very-secret-pw" not in repr(PostgresSource(config)) + repr(config)


# --- snapshot and hand-over ------------------------------------------------------------------------


def test_snapshot_then_stream_has_no_gap_and_no_duplicate(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(
        admin,
        "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL)",
        "INSERT INTO items SELECT i, 0 FROM generate_series(1, 1000) i",
        "CREATE TABLE empty_one (id int PRIMARY KEY, name text)",
    )
    source = make_source(chunk_rows=100)
    source.preflight()
    snapshot_rows: list[dict[str, Any]] = []
    final: Batch | None = None
    for number, batch in enumerate(source.snapshot()):
        if number == 0:
            # Writes while the snapshot is being read: after the slot's consistent point, so they
            # must come from the stream. Chunks read later may show them too (each chunk is its
            # own short read): applied again in order, they change nothing.
            execute(
                admin,
                "INSERT INTO items SELECT i, 1 FROM generate_series(1001, 1100) i",
                "UPDATE items SET v = 2 WHERE id IN (5, 995)",
                "DELETE FROM items WHERE id IN (7, 996)",
            )
        if batch.complete:
            final = batch
        else:
            assert batch.end is None and batch.num_rows <= 100
        snapshot_rows += rows_of([batch], "items")
    assert final is not None
    items = table_id(source, "items")
    assert final.start is None and final.snapshot == {items, table_id(source, "empty_one")}
    assert final.floors == {items: final.end, table_id(source, "empty_one"): final.end}
    # The empty table still hands over its schema.
    assert [c.table.name for c in final.changes] == ["empty_one"]
    assert final.changes[0].schema.column_names == ("id", "name")

    ids = sorted(r["id"] for r in snapshot_rows)
    assert len(ids) == len(set(ids)), "each row is read by exactly one chunk"
    # The first chunk (ids 1..100) was read before the writes; later chunks after them.
    assert {r["id"]: r["v"] for r in snapshot_rows if r["id"] <= 100} == {i: 0 for i in range(1, 101)}
    assert set(range(1, 1001)) - set(ids) <= {7, 996}
    assert {r["Op"] for r in snapshot_rows} == {"I"}
    assert {r["_position"] for r in snapshot_rows} == {final.end.serialize()}
    assert {r["_txid"] for r in snapshot_rows} == {None}

    execute(admin, "INSERT INTO items VALUES (2000, 3)")
    streamed = stream_to_now(source, final.end, final.floors)
    changes = rows_of(streamed, "items")
    assert [r["id"] for r in changes if r["Op"] == "I"] == [*range(1001, 1101), 2000]
    assert sorted((r["Op"], r["id"], r["v"]) for r in changes if r["Op"] != "I") == [
        ("D", 7, None),
        ("D", 996, None),
        ("U", 5, 2),
        ("U", 995, 2),
    ]
    # Replaying snapshot + stream gives the table's current content exactly.
    state = {r["id"]: r["v"] for r in snapshot_rows}
    for r in changes:
        if r["Op"] == "D":
            state.pop(r["id"], None)  # a later chunk may not have held the row any more
        else:
            state[r["id"]] = r["v"]
    with admin.cursor() as cur:
        cur.execute("SELECT id, v FROM items")
        assert state == dict(cur.fetchall())
    assert source.count_rows(items) == len(state)


def test_initial_snapshot_replaces_a_leftover_slot(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(admin, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    source = make_source()
    abandoned = source.snapshot()
    next(abandoned)  # the slot exists now; the run "crashes" before the final batch
    abandoned.close()
    execute(admin, "INSERT INTO t VALUES (2)")
    _, final = initial(source)
    assert slot_confirmed(admin, source.config.slot_name) == final.end
    execute(admin, "INSERT INTO t VALUES (3)")
    assert [r["id"] for r in rows_of(stream_to_now(source, final.end, final.floors))] == [3]


# --- streaming positions ---------------------------------------------------------------------------


def test_resume_from_an_offset(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(admin, "CREATE TABLE t (id int PRIMARY KEY)")
    source = make_source(batch_max_rows=1)  # one transaction per batch
    _, final = initial(source)
    for i in range(1, 4):
        execute(admin, f"INSERT INTO t VALUES ({i})")
    first = with_rows(stream_to_now(source, final.end, final.floors))
    assert [rows_of([b])[0]["id"] for b in first] == [1, 2, 3]
    assert first[0].start == final.end and first[1].start == first[0].end
    assert [r["_position"] for r in rows_of(first)] == [b.end.serialize() for b in first]
    # The lake committed up to the first batch: resuming from there yields the rest, once.
    resumed = with_rows(stream_to_now(source, first[0].end, final.floors))
    assert [r["id"] for r in rows_of(resumed)] == [2, 3]
    assert resumed[0].start == first[0].end and resumed[-1].end == first[-1].end


def test_acknowledge_moves_the_slot_and_reconnects_after_it(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(admin, "CREATE TABLE t (id int PRIMARY KEY)")
    source = make_source(batch_max_rows=1)
    slot = source.config.slot_name
    _, final = initial(source)
    execute(admin, "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)")
    until = source.current_position()

    # Without acknowledge the server keeps the slot where it was and re-delivers everything.
    assert [r["id"] for r in rows_of(list(source.stream(final.end, final.floors, until=until)))] == [1, 2]
    assert slot_confirmed(admin, slot) == final.end
    assert [r["id"] for r in rows_of(list(source.stream(final.end, final.floors, until=until)))] == [1, 2]

    # Acknowledge the first transaction on the running stream (send_feedback).
    stream = source.stream(final.end, final.floors, until=until)
    first = next(stream)
    source.acknowledge(first.end)
    assert wait_confirmed(admin, slot, first.end) == first.end
    stream.close()
    # A reconnect starts after that transaction, even when asked to start before it.
    with pytest.raises(PositionLostError):  # the lake claims less than the slot confirmed
        next(source.stream(final.end, final.floors, until=until))
    again = list(source.stream(first.end, final.floors, until=until))
    assert [r["id"] for r in rows_of(again)] == [2]
    # Acknowledging with no stream open advances the slot through SQL.
    source.acknowledge(again[-1].end)
    assert slot_confirmed(admin, slot) == again[-1].end


def test_idle_source_yields_a_heartbeat_position(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(admin, "CREATE TABLE t (id int PRIMARY KEY)", "CREATE TABLE other (id int PRIMARY KEY)")
    source = make_source(tables=("t",))
    _, final = initial(source)
    execute(admin, "INSERT INTO other SELECT generate_series(1, 1000)")  # WAL, but nothing captured
    batches = stream_to_now(source, final.end, final.floors)
    assert len(batches) == 1 and batches[0].num_rows == 0 and batches[0].complete
    assert batches[0].start == final.end and final.end < batches[0].end
    source.acknowledge(batches[0].end)
    assert slot_confirmed(admin, source.config.slot_name) == batches[0].end


def test_unbounded_stream_heartbeats_while_only_other_tables_change(
    pg_db: Any, admin: Any, make_source: Any
) -> None:
    execute(admin, "CREATE TABLE t (id int PRIMARY KEY)", "CREATE TABLE other (id int PRIMARY KEY)")
    source = make_source(tables=("t",), idle_heartbeat_seconds=0.5, batch_max_seconds=0.2)
    _, final = initial(source)
    execute(admin, "INSERT INTO other SELECT generate_series(1, 1000)")
    stream = source.stream(final.end, final.floors)  # no `until`: runs until closed
    heartbeat = next(stream)
    assert heartbeat.complete and heartbeat.num_rows == 0 and final.end < heartbeat.end
    source.acknowledge(heartbeat.end)  # on the open stream: send_feedback
    assert wait_confirmed(admin, source.config.slot_name, heartbeat.end) == heartbeat.end
    execute(admin, "INSERT INTO t VALUES (1)")
    # Further heartbeats may come first: every keepalive that moves the position yields one.
    batches = [next(stream)]
    while not batches[-1].num_rows and len(batches) < 50:
        assert batches[-1].complete and batches[-1].end >= heartbeat.end
        batches.append(next(stream))
    assert [r["id"] for r in rows_of(batches)] == [1]
    stream.close()


def test_the_slot_is_confirmed_only_as_far_as_acknowledged(pg_db: Any, admin: Any, make_source: Any) -> None:
    """psycopg2 2.8+ confirms keepalive positions by itself ("smart feedback") whenever every data
    message it saw was confirmed, and before it saw any: the slot would run ahead of the lake. The
    slot must stay exactly where `acknowledge` put it, whatever the stream reads meanwhile."""
    execute(admin, "CREATE TABLE t (id int PRIMARY KEY)", "CREATE TABLE other (id int PRIMARY KEY)")
    source = make_source(tables=("t",), idle_heartbeat_seconds=0.5, batch_max_seconds=0.2)
    slot = source.config.slot_name
    _, final = initial(source)
    stream = source.stream(final.end, final.floors)
    blocks = iter(range(1, 1_000_000))

    def end(batch: Batch) -> Lsn:
        assert isinstance(batch.end, Lsn)
        return batch.end

    def read_while_other_tables_change(seconds: float, expected: Lsn) -> list[Batch]:
        """Consume batches (never acknowledging) while only unrelated WAL moves."""
        batches: list[Batch] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            first = next(blocks) * 100
            execute(admin, f"INSERT INTO other SELECT generate_series({first}, {first + 99})")
            batches.append(next(stream))
            assert slot_confirmed(admin, slot) == expected, batches
        assert max(end(b) for b in batches) > expected  # keepalives did report later positions
        return batches

    # Before any data message: the first keepalives must not confirm anything.
    read_while_other_tables_change(3.0, end(final))
    # After a data message that was acknowledged: the keepalives after it must not either.
    execute(admin, "INSERT INTO t VALUES (1)")
    batch = next(stream)
    while not batch.num_rows:
        batch = next(stream)
    source.acknowledge(end(batch))
    assert wait_confirmed(admin, slot, end(batch)) == end(batch)
    heartbeats = read_while_other_tables_change(3.0, end(batch))
    # After an acknowledged heartbeat position: the same.
    source.acknowledge(end(heartbeats[-1]))
    assert wait_confirmed(admin, slot, end(heartbeats[-1])) == end(heartbeats[-1])
    read_while_other_tables_change(3.0, end(heartbeats[-1]))
    stream.close()
    assert slot_confirmed(admin, slot) == heartbeats[-1].end


def test_missing_slot_is_position_lost_with_resnapshot_command(
    pg_db: Any, admin: Any, make_source: Any
) -> None:
    execute(admin, "CREATE TABLE t (id int PRIMARY KEY)")
    source = make_source()
    with pytest.raises(PositionLostError) as caught:
        next(source.stream(Lsn.parse("0/1000000"), {}))
    message = str(caught.value)
    assert f"lakehouse resnapshot --source {source.name}" in message
    assert source.config.slot_name in message
    # Nothing was created behind our back.
    with admin.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (source.config.slot_name,)
        )
        assert cur.fetchone()[0] == 0


# --- row changes -----------------------------------------------------------------------------------


def test_updates_deletes_and_key_changes(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(
        admin,
        "CREATE TABLE t (id int PRIMARY KEY, v text, n int)",
        "INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)",
    )
    source = make_source()
    _, final = initial(source)
    execute(
        admin,
        "UPDATE t SET v = 'a2' WHERE id = 1",
        "UPDATE t SET id = 20 WHERE id = 2",
        "DELETE FROM t WHERE id = 1",
    )
    rows = rows_of(stream_to_now(source, final.end, final.floors))
    assert [(r["Op"], r["id"], r["v"], r["n"]) for r in rows] == [
        ("U", 1, "a2", 1),
        ("D", 2, None, None),  # the key changed: the old key's row is deleted (key-only image)...
        ("U", 20, "b", 2),  # ...and the row appears under its new key
        ("D", 1, None, None),
    ]
    assert all(r["_commit_ts"].tzinfo is not None for r in rows)
    assert len({r["_txid"] for r in rows}) == 3


def test_truncate_marks_the_table_as_replaced(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(admin, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1), (2)")
    source = make_source()
    _, final = initial(source)
    execute(admin, "INSERT INTO t VALUES (3)")
    with admin.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO t VALUES (4)")
        cur.execute("TRUNCATE t")
        cur.execute("INSERT INTO t VALUES (5)")
        cur.execute("COMMIT")
    batches = with_rows(stream_to_now(source, final.end, final.floors))
    replaced = [b for b in batches if b.snapshot]
    assert len(replaced) == 1 and replaced[0].snapshot == {table_id(source, "t")}
    assert [r["id"] for r in rows_of(replaced)] == [5]
    before = batches[: batches.index(replaced[0])]
    assert [r["id"] for r in rows_of(before)] == [3]


# --- types -------------------------------------------------------------------------------------------

TYPES_DDL = """
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN money2 AS numeric(10,2);
CREATE TABLE typed (
    id int PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint,
    n38 numeric(38,10), nfree numeric, n50 numeric(50,5), n_dom money2,
    f4 real, f8 double precision,
    t text, vc varchar(10), ch char(5),
    b boolean, raw bytea, j json, jb jsonb, u uuid,
    d date, tm time, tstz timestamptz, ts timestamp, iv interval,
    a_int int[], a_text text[], a_num numeric(10,2)[], a_tstz timestamptz[],
    m mood
)
"""

TYPES_ROW = """
INSERT INTO typed VALUES (
    {id},
    -32768, 2147483647, -9223372036854775808,
    '-9999999999999999999999999999.9999999999', '123456789012345678901234567890.123456789012345678901234567890',
    '1234567890123456789012345678901234567890123.45678', 12.5,
    3.4028235e38, 0.1,
    'Grüße 👋 ✓', 'ten chars!', 'ab',
    true, '\\x00ff0001'::bytea, '{{"b": 1, "a": [1, 2]}}', '{{"ключ": "значение ✓", "n": 1.50}}',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '2024-02-29', '23:59:59.999999', '2024-06-01 12:00:00+05:30', '2024-07-01 12:00:00',
    '1 year 2 mons 3 days 04:05:06',
    '{{1,NULL,3}}', '{{"a b","c,d",NULL,"q\\"uote"}}', '{{1.50,-2.25}}',
    '{{"2024-01-01 00:00:00+00","2024-01-01 12:00:00-03:30"}}',
    'sad'
)
"""


def assert_typed_row(row: dict[str, Any]) -> None:
    assert (row["i2"], row["i4"], row["i8"]) == (-32768, 2147483647, -9223372036854775808)
    assert row["n38"] == Decimal("-9999999999999999999999999999.9999999999")
    assert row["nfree"] == "123456789012345678901234567890.123456789012345678901234567890"
    assert row["n50"] == Decimal("1234567890123456789012345678901234567890123.45678")
    assert row["n_dom"] == Decimal("12.50")
    assert row["f4"] == pytest.approx(3.4028235e38, rel=1e-7) and row["f8"] == 0.1
    assert (row["t"], row["vc"], row["ch"]) == ("Grüße 👋 ✓", "ten chars!", "ab   ")
    assert row["b"] is True and row["raw"] == b"\x00\xff\x00\x01"
    assert row["j"] == '{"b": 1, "a": [1, 2]}'  # json keeps its text exactly
    assert json.loads(row["jb"], parse_float=Decimal) == {"ключ": "значение ✓", "n": Decimal("1.50")}
    assert row["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert row["d"] == dt.date(2024, 2, 29) and row["tm"] == dt.time(23, 59, 59, 999999)
    assert row["tstz"] == dt.datetime(2024, 6, 1, 6, 30, tzinfo=UTC)
    # timestamp without time zone is wall time in the configured zone (NDT, UTC-02:30 in July).
    assert row["ts"] == dt.datetime(2024, 7, 1, 14, 30, tzinfo=UTC)
    assert row["iv"] == "P1Y2M3DT4H5M6S"
    assert row["a_int"] == [1, None, 3]
    assert row["a_text"] == ["a b", "c,d", None, 'q"uote']
    assert row["a_num"] == [Decimal("1.50"), Decimal("-2.25")]
    assert row["a_tstz"] == [dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 1, 15, 30, tzinfo=UTC)]
    assert row["m"] == "sad"


def test_every_type_converts_exactly_in_snapshot_and_stream(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(admin, TYPES_DDL, TYPES_ROW.format(id=1), "INSERT INTO typed (id) VALUES (2)")
    source = make_source()
    batches, final = initial(source)
    execute(
        admin,
        TYPES_ROW.format(id=3),
        "INSERT INTO typed (id) VALUES (4)",
        "INSERT INTO typed (id, nfree, f8, ts, tstz) VALUES (5, 'NaN', 'NaN', '2024-01-15 12:00:00', '2024-01-01 00:00:00-03:30')",
    )
    streamed = stream_to_now(source, final.end, final.floors)
    snapshot_rows = {r["id"]: r for r in rows_of(batches)}
    stream_rows = {r["id"]: r for r in rows_of(streamed)}
    assert_typed_row(snapshot_rows[1])
    assert_typed_row(stream_rows[3])
    for row in (snapshot_rows[2], stream_rows[4]):
        assert all(
            value is None
            for name, value in row.items()
            if name not in ("id", "Op", "_commit_ts", "_position", "_txid")
        )
    special = stream_rows[5]
    assert special["nfree"] == "NaN" and math.isnan(special["f8"])
    assert special["ts"] == dt.datetime(2024, 1, 15, 15, 30, tzinfo=UTC)  # NST, UTC-03:30 in January
    assert special["tstz"] == dt.datetime(2024, 1, 1, 3, 30, tzinfo=UTC)

    schema = {c.name: c for c in streamed[0].changes[0].schema.columns}
    assert schema["n38"].type == pa.decimal128(38, 10) and schema["n50"].type == pa.decimal256(50, 5)
    assert schema["nfree"].type == pa.string() and schema["n_dom"].type == pa.decimal128(10, 2)
    assert schema["tm"].type == pa.time64("us") and schema["ts"].type == pa.timestamp("us", tz="UTC")
    assert schema["a_num"].type == pa.list_(pa.decimal128(10, 2)) and schema["raw"].type == pa.binary()
    assert (
        schema["n38"].source_type == "numeric(38,10)" and schema["vc"].source_type == "character varying(10)"
    )
    assert streamed[0].changes[0].schema.key == ("id",)
    # Both paths produce the same Arrow schema.
    assert batches[0].changes[0].data.schema == streamed[0].changes[0].data.schema


def test_unconvertible_values_are_quarantined_not_dropped(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(
        admin,
        "CREATE TABLE t (id int PRIMARY KEY, ts timestamp, d date)",
        "INSERT INTO t VALUES (1, '2024-01-01', '2024-01-01'), (2, 'infinity', '2024-01-01'), (3, NULL, NULL)",
    )
    source = make_source()
    batches, final = initial(source)
    assert [r["id"] for r in rows_of(batches)] == [1, 3]
    [bad] = [q for b in batches for q in b.quarantined]
    assert bad.table == table_id(source, "t") and "'ts'" in bad.reason and "'infinity'" in bad.reason
    assert "'id': '2'" in bad.payload and bad.position == final.end.serialize()

    execute(admin, "INSERT INTO t VALUES (4, '2024-01-01', '-infinity'), (5, '2024-01-02', '2024-01-02')")
    streamed = stream_to_now(source, final.end, final.floors)
    assert [r["id"] for r in rows_of(streamed)] == [5]
    [with_bad] = [b for b in streamed if b.quarantined]
    [bad] = with_bad.quarantined
    assert "'d'" in bad.reason and "'-infinity'" in bad.reason
    assert bad.commit_ts.tzinfo is not None and bad.position == with_bad.end.serialize()


# --- TOAST -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("identity", ["DEFAULT", "FULL"])
def test_unchanged_toast_value(pg_db: Any, admin: Any, make_source: Any, identity: str) -> None:
    execute(
        admin,
        "CREATE TABLE docs (id int PRIMARY KEY, body text, n int)",
        "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL",  # out of line, uncompressed
        f"ALTER TABLE docs REPLICA IDENTITY {identity}",
    )
    big = uuid.uuid4().hex * 400  # 12.8 kB
    source = make_source()
    _, final = initial(source)
    execute(admin, "INSERT INTO docs VALUES (1, %s, 0)", params=(big,))
    execute(admin, "UPDATE docs SET n = 1 WHERE id = 1", "UPDATE docs SET n = 2, body = 'small' WHERE id = 1")
    streamed = stream_to_now(source, final.end, final.floors)
    [changes] = [c for b in streamed for c in b.changes]
    rows = changes.data.to_pylist()
    assert [(r["Op"], r["n"]) for r in rows] == [("I", 0), ("U", 1), ("U", 2)]
    assert rows[0]["body"] == big and rows[2]["body"] == "small"
    if identity == "FULL":
        assert rows[1]["body"] == big  # taken from the old tuple
        assert changes.unchanged == ()
    else:
        assert rows[1]["body"] is None  # not sent: the lake keeps its value
        assert changes.unchanged == ((1, ("body",)),)


# --- schema changes ----------------------------------------------------------------------------------


def test_schema_change_mid_stream(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(admin, "CREATE TABLE t (id int PRIMARY KEY, qty int, price numeric(10,2), gone text)")
    source = make_source()
    _, final = initial(source)
    execute(
        admin,
        "INSERT INTO t VALUES (1, 10, 12345678.91, 'x')",
        "ALTER TABLE t ADD COLUMN note text",
        "INSERT INTO t VALUES (2, 20, 1.50, 'y', 'hello')",
        "ALTER TABLE t DROP COLUMN gone",
        "UPDATE t SET note = 'dropped' WHERE id = 1",
        "ALTER TABLE t ALTER COLUMN qty TYPE bigint, ALTER COLUMN price TYPE numeric(18,2)",
        "INSERT INTO t VALUES (3, 9223372036854775807, 1234567890123456.78, 'wide')",
    )
    [batch] = with_rows(stream_to_now(source, final.end, final.floors))
    versions = [(c.schema, c.data.to_pylist()) for c in batch.changes]
    assert [s.column_names for s, _ in versions] == [
        ("id", "qty", "price", "gone"),
        ("id", "qty", "price", "gone", "note"),
        ("id", "qty", "price", "note"),
        ("id", "qty", "price", "note"),
    ]
    assert [(r["id"], r["qty"], r["price"], r["gone"]) for r in versions[0][1]] == [
        (1, 10, Decimal("12345678.91"), "x")
    ]
    assert [(r["id"], r["note"], r["gone"]) for r in versions[1][1]] == [(2, "hello", "y")]
    assert [(r["Op"], r["id"], r["note"]) for r in versions[2][1]] == [("U", 1, "dropped")]
    types = {c.name: c.type for c in versions[3][0].columns}
    assert types["qty"] == pa.int64() and types["price"] == pa.decimal128(18, 2)
    assert {c.name: c.type for c in versions[0][0].columns}["qty"] == pa.int32()
    assert [(r["qty"], r["price"]) for r in versions[3][1]] == [
        (9223372036854775807, Decimal("1234567890123456.78"))
    ]


# --- large transactions ------------------------------------------------------------------------------


def test_huge_transaction_arrives_in_chunks(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(admin, "CREATE TABLE big (id int PRIMARY KEY, v text)", "CREATE TABLE small (id int PRIMARY KEY)")
    source = make_source(chunk_rows=50_000)
    _, final = initial(source)
    execute(
        admin,
        "INSERT INTO small VALUES (1)",  # committed before: must be its own complete batch first
        "INSERT INTO big SELECT i, 'row ' || i FROM generate_series(1, 200000) i",
    )
    batches = with_rows(stream_to_now(source, final.end, final.floors))
    assert batches[0].complete and [r["id"] for r in rows_of(batches[:1])] == [1]
    chunked = batches[1:6]
    assert [b.complete for b in chunked] == [False, False, False, False, True]
    assert all(b.end is None and b.start == batches[0].end for b in chunked[:-1])
    ids = [r["id"] for r in rows_of(chunked, "big")]
    assert len(ids) == 200_000 and len(set(ids)) == 200_000
    assert len({r["_position"] for r in rows_of(chunked)}) == 1  # one position for the transaction
    assert chunked[-1].end is not None and batches[0].end < chunked[-1].end


@pytest.mark.slow
def test_million_row_transaction_streams_in_bounded_memory(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(admin, "CREATE TABLE big (id bigint PRIMARY KEY, v text, n numeric(12,2), ts timestamptz)")
    source = make_source()
    _, final = initial(source)
    execute(
        admin, "INSERT INTO big SELECT i, md5(i::text), i / 7.0, now() FROM generate_series(1, 1000000) i"
    )
    process = psutil.Process()
    # The growth while streaming, not the whole process's RSS: this process has run other tests
    # and loaded other libraries before (the million rows held in memory would be over 1 GB).
    before = peak = process.memory_info().rss
    rows = 0
    for batch in source.stream(final.end, final.floors, until=source.current_position()):
        rows += batch.num_rows
        peak = max(peak, process.memory_info().rss)
    assert rows == 1_000_000
    assert peak - before < 256 * 1024 * 1024, f"RSS grew {(peak - before) / 2**20:.0f} MB while streaming"


# --- backfill ----------------------------------------------------------------------------------------


def test_backfill_without_a_spare_slot_says_what_to_change(pg_db: Any, admin: Any, make_source: Any) -> None:
    """A backfill needs a temporary slot beside the stream's; with none free the error says so."""
    execute(admin, "CREATE TABLE a (id int PRIMARY KEY)")
    source = make_source()
    _, final = initial(source)
    with admin.cursor() as cur:
        cur.execute(
            "SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)"
        )
        (free,) = cur.fetchone()
    fillers = [f"filler_{uuid.uuid4().hex[:12]}" for _ in range(free)]
    try:
        for name in fillers:  # physical slots: cheap, and they count against the same limit
            execute(admin, f"SELECT pg_create_physical_replication_slot('{name}')")
        with pytest.raises(SourceError, match="all .* slots are in use. Fix: drop unused slots"):
            list(source.backfill([table_id(source, "a")], final.end))
    finally:
        for name in fillers:
            execute(
                admin,
                f"SELECT pg_drop_replication_slot('{name}') WHERE EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{name}')",
            )


def test_backfill_while_streaming_sets_floors(pg_db: Any, admin: Any, make_source: Any) -> None:
    execute(admin, "CREATE TABLE a (id int PRIMARY KEY)", "CREATE TABLE b (id int PRIMARY KEY)")
    source = make_source()
    _, final = initial(source)
    execute(admin, "INSERT INTO a VALUES (1)", "INSERT INTO b VALUES (1)")
    streamed = with_rows(stream_to_now(source, final.end, final.floors))
    offset = streamed[-1].end  # what the lake has committed
    # Changes after the lake's offset but before the backfill: b's are in the backfilled rows.
    execute(admin, "INSERT INTO a VALUES (5)", "INSERT INTO b VALUES (5)")

    b_table = table_id(source, "b")
    backfill = list(source.backfill([b_table], offset))
    done = backfill[-1]
    assert done.complete and done.start == offset and done.end == offset and done.snapshot == {b_table}
    floor = done.floors[b_table]
    assert offset < floor
    assert sorted(r["id"] for r in rows_of(backfill)) == [1, 5]
    assert {r["_position"] for r in rows_of(backfill)} == {floor.serialize()}

    execute(admin, "INSERT INTO a VALUES (2)", "INSERT INTO b VALUES (2)")
    after = stream_to_now(source, offset, {**final.floors, b_table: floor})
    # a(1) and b(1) are re-read from the unacknowledged slot but skipped (before `since`); b(5) is
    # below b's floor (in the backfill) and skipped; a(5) is above a's floor and streams.
    assert [r["id"] for r in rows_of(after, "a")] == [5, 2]
    assert [r["id"] for r in rows_of(after, "b")] == [2]
