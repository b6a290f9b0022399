"""Resumable chunked snapshots, source side: `begin_snapshot` and `snapshot_chunks` of the MySQL-family
source (MariaDB, MySQL 8) and the PostgreSQL source, against the real servers.

A chunk's `after` goes through JSON (as it does through a commit record) and back through
`decode_key`; reading on from it must continue exactly after that chunk's last row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import pytest

from connectors.events import TableId
from connectors.mysql import MySQLSource
from connectors.postgres import PostgresSource
from connectors.snapshot_chunks import ChunkedSnapshotSource, SnapshotChunk, decode_key
from connectors.source import SourceError
from tests.conftest import TestDatabase
from tests.mysql_support import make_config as mysql_config
from tests.mysql_support import seq_table
from tests.postgres_support import make_config as pg_config

CHUNK = 100  # the smallest chunk_rows the config allows

# Composite keys of mixed types: unicode text, a date across Feb 29, a 20-digit decimal, bytes with
# 0x00 and 0xff (and on PostgreSQL a uuid). (seq % 60, seq DIV 60) makes each key unique.
CLINICS = "'Ärzte', 'bob', 'Zürich ✓', 'émile', '日本'"
MYSQL_VISITS = (
    "CREATE TABLE visits (clinic VARCHAR(40) CHARACTER SET utf8mb4 NOT NULL, day DATE NOT NULL,"
    " amount DECIMAL(20, 0) NOT NULL, tag VARBINARY(8) NOT NULL, note VARCHAR(20),"
    " PRIMARY KEY (clinic, day, amount, tag))",
    f"INSERT INTO visits SELECT ELT(1 + seq % 5, {CLINICS}), DATE '2024-02-27' + INTERVAL (seq % 4) DAY,"
    " 99999999999999999999 - (seq % 3), CONCAT(UNHEX(LPAD(HEX(seq DIV 60), 2, '0')), UNHEX('00FF')),"
    " CONCAT('n', seq) FROM {series}",
)
PG_VISITS = (
    "CREATE TABLE visits (clinic text, day date, amount numeric(20, 0), tag bytea, id uuid, note text,"
    " PRIMARY KEY (clinic, day, amount, tag, id))",
    f"INSERT INTO visits SELECT (ARRAY[{CLINICS}])[1 + seq % 5], date '2024-02-27' + (seq % 4),"
    " 99999999999999999999 - (seq % 3), decode(lpad(to_hex(seq / 60), 2, '0') || '00ff', 'hex'),"
    " md5((seq % 7)::text)::uuid, 'n' || seq FROM {series}",
)


@dataclass
class World:
    """One server under test: how to make its source and run SQL on it."""

    kind: str  # 'mysql' or 'postgres'
    db: TestDatabase
    sources: list[Any] = field(default_factory=list)

    def source(self, **overrides: Any) -> Any:
        settings = {"chunk_rows": CHUNK, **overrides}
        if self.kind == "mysql":
            made: Any = MySQLSource(mysql_config(self.db, **settings))
        else:
            made = PostgresSource(pg_config(self.db, **settings))
        self.sources.append(made)
        return made

    def execute(self, *statements: str) -> None:
        with self.db.admin_connect().cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def series(self, rows: int) -> str:
        """A FROM item with one column ``seq`` holding 1..`rows`."""
        return seq_table(rows) if self.kind == "mysql" else f"generate_series(1, {rows}) AS g(seq)"

    def items(self, rows: int, name: str = "items") -> TableId:
        """A table (id INT PRIMARY KEY, v) with ids 1..`rows`, statistics fresh."""
        self.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, v VARCHAR(40))")
        if rows:
            self.execute(f"INSERT INTO {name} SELECT seq, CONCAT('v', seq) FROM {self.series(rows)}")
        self.execute(f"ANALYZE {'TABLE ' if self.kind == 'mysql' else ''}{name}")
        return self.table(name)

    def table(self, name: str) -> TableId:
        if self.kind == "mysql":
            return TableId(mysql_config(self.db).name, self.db.name, name)
        return TableId(pg_config(self.db).name, "public", name)


@pytest.fixture(params=["mariadb", "mysql8", "postgres"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """Each test on MariaDB, on the MySQL 8-family server (`mysql_any_db`'s two) and on PostgreSQL."""
    fixture = {"mariadb": "mysql_db", "mysql8": "mysql8_db", "postgres": "pg_db"}[request.param]
    db: TestDatabase = request.getfixturevalue(fixture)
    made = World("mysql" if db.kind == "mysql" else "postgres", db)
    yield made
    for source in made.sources:
        source.close()


def round_trip(chunk: SnapshotChunk) -> tuple[Any, ...]:
    """The chunk's `after` as a commit record keeps it and as the pipeline hands it back."""
    assert chunk.after is not None
    return decode_key(json.loads(json.dumps(chunk.after)))


def rows_of(chunks: list[SnapshotChunk]) -> list[dict[str, Any]]:
    return [r for c in chunks for r in c.changes.data.to_pylist()]


# --- resuming -------------------------------------------------------------------------------------


def test_a_snapshot_stopped_after_a_chunk_continues_after_its_key(world: World) -> None:
    source = world.source()
    items = world.items(1050)
    start = source.begin_snapshot([items])
    assert isinstance(source, ChunkedSnapshotSource)

    chunks = list(source.snapshot_chunks(items, None, start.low))
    assert [c.changes.num_rows for c in chunks] == [CHUNK] * 10 + [50]
    assert [c.last for c in chunks] == [False] * 10 + [True]
    assert sorted(r["id"] for r in rows_of(chunks)) == list(range(1, 1051))
    assert {(r["Op"], r["_position"]) for r in rows_of(chunks)} == {("I", start.low.serialize())}
    assert len({r["_commit_ts"] for r in rows_of(chunks)}) == 1  # the server's time at the start
    assert all(c.estimate is not None and c.estimate > 0 for c in chunks)
    assert all(c.quarantined == () for c in chunks)

    # A run killed after its fourth committed chunk.
    first = source.snapshot_chunks(items, None, start.low)
    done = list(islice(first, 4))
    first.close()  # type: ignore[attr-defined]
    rest = list(source.snapshot_chunks(items, round_trip(done[-1]), start.low))
    assert [c.changes.num_rows for c in rest] == [CHUNK] * 6 + [50] and rest[-1].last
    ids = [r["id"] for r in rows_of(done + rest)]
    assert ids == list(range(1, 1051))  # in key order, none twice, none missing


def test_composite_keys_of_mixed_types_resume_exactly(world: World) -> None:
    source = world.source()
    ddl, insert = MYSQL_VISITS if world.kind == "mysql" else PG_VISITS
    world.execute(ddl, insert.format(series=world.series(1050)))
    visits = world.table("visits")
    low = source.begin_snapshot([visits]).low

    chunks = list(source.snapshot_chunks(visits, None, low))
    key = list(chunks[0].changes.schema.key)
    keys = [tuple(r[k] for k in key) for r in rows_of(chunks)]
    assert len(keys) == 1050 and len(set(keys)) == 1050
    assert len({r["clinic"] for r in rows_of(chunks)}) == 5 and chunks[-1].last
    for i, chunk in enumerate(chunks[:-1]):
        if world.kind == "mysql":  # the driver's values: str, date, Decimal, bytes
            assert round_trip(chunk) == keys[(i + 1) * CHUNK - 1]
        # Reading on from every chunk's key starts at exactly the next row.
        following = next(source.snapshot_chunks(visits, round_trip(chunk), low))
        assert (
            tuple(following.changes.data.slice(0, 1).to_pylist()[0][k] for k in key) == keys[(i + 1) * CHUNK]
        )
    rest = list(source.snapshot_chunks(visits, round_trip(chunks[3]), low))
    assert [tuple(r[k] for k in key) for r in rows_of(rest)] == keys[4 * CHUNK :]


@pytest.mark.parametrize("readers", [2, 3])
def test_parallel_readers_read_the_same_chunks_and_resume_from_theirs(world: World, readers: int) -> None:
    ddl, insert = MYSQL_VISITS if world.kind == "mysql" else PG_VISITS
    world.execute(ddl, insert.format(series=world.series(1050)))
    visits = world.table("visits")
    serial = world.source()
    low = serial.begin_snapshot([visits]).low
    expected = list(serial.snapshot_chunks(visits, None, low))
    parallel = world.source(snapshot_readers=readers)

    chunks = list(parallel.snapshot_chunks(visits, None, low))
    assert [(c.changes.num_rows, c.last, c.after) for c in chunks] == [
        (c.changes.num_rows, c.last, c.after) for c in expected
    ]
    assert values_of(chunks) == values_of(expected)  # in key order, the same values
    # Stopped while chunks are read ahead, then resumed from the last one taken.
    first = parallel.snapshot_chunks(visits, None, low)
    done = list(islice(first, 4))
    first.close()  # type: ignore[attr-defined]
    rest = list(parallel.snapshot_chunks(visits, round_trip(done[-1]), low))
    assert values_of(done + rest) == values_of(expected)


def values_of(chunks: list[SnapshotChunk]) -> list[dict[str, Any]]:
    """The rows without their commit time (the server's time when a run starts)."""
    return [{k: v for k, v in r.items() if k != "_commit_ts"} for r in rows_of(chunks)]


def test_a_full_last_chunk_ends_with_an_empty_one_and_an_empty_table_gives_one(world: World) -> None:
    source = world.source()
    full, empty = world.items(3 * CHUNK), world.items(0, "nothing")
    low = source.begin_snapshot([full, empty]).low

    chunks = list(source.snapshot_chunks(full, None, low))
    assert [(c.changes.num_rows, c.last) for c in chunks] == [(CHUNK, False)] * 3 + [(0, True)]
    assert chunks[-1].after == chunks[-2].after
    # Continuing after the last row finds nothing, and says so with the same key.
    [after_all] = source.snapshot_chunks(full, round_trip(chunks[-1]), low)
    assert (after_all.changes.num_rows, after_all.last, after_all.after) == (0, True, chunks[-1].after)

    [only] = source.snapshot_chunks(empty, None, low)
    assert (only.changes.num_rows, only.after, only.last, only.quarantined) == (0, None, True, ())
    assert only.changes.table.name == "nothing" and only.changes.schema.key == ("id",)


# --- the low watermark ----------------------------------------------------------------------------


def test_changes_after_begin_snapshot_are_in_the_stream_from_the_low_watermark(world: World) -> None:
    source = world.source()
    items = world.items(3)
    start = source.begin_snapshot()
    [schema] = start.tables
    assert (schema.table, schema.num_rows, schema.schema.key) == (items, 0, ("id",))
    world.execute("INSERT INTO items VALUES (4, 'after')", "UPDATE items SET v = 'changed' WHERE id = 1")
    batches = list(source.stream(start.low, {}, until=source.current_position()))
    streamed = [(r["Op"], r["id"], r["v"]) for b in batches for c in b.changes for r in c.data.to_pylist()]
    assert streamed == [("I", 4, "after"), ("U", 1, "changed")]


def slot_flush(world: World, slot: str) -> str | None:
    with world.db.admin_connect().cursor() as cur:
        cur.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        )
        row = cur.fetchone()
    return None if row is None else str(row[0])


@pytest.mark.parametrize("world", ["postgres"], indirect=True)
def test_postgres_begin_snapshot_creates_the_slot_and_recreates_it(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    source = world.source()
    world.items(1)
    slot = source.config.slot_name
    assert slot_flush(world, slot) is None
    first = source.begin_snapshot()
    assert slot_flush(world, slot) == first.low.serialize().removeprefix("pg-lsn:")  # starts at LW
    world.execute("INSERT INTO items VALUES (2, 'before the resnapshot')")

    with caplog.at_level(logging.WARNING, logger="connectors.postgres.snapshot"):
        second = source.begin_snapshot()
    assert any(slot in r.getMessage() and "dropping and recreating" in r.getMessage() for r in caplog.records)
    assert second.low > first.low
    assert slot_flush(world, slot) == second.low.serialize().removeprefix("pg-lsn:")
    world.execute("INSERT INTO items VALUES (3, 'after it')")
    batches = list(source.stream(second.low, {}, until=source.current_position()))
    # The old slot (with row 2 in it) is gone; the new one starts after row 2.
    assert [r["id"] for b in batches for c in b.changes for r in c.data.to_pylist()] == [3]


# --- refusals -------------------------------------------------------------------------------------


def test_a_table_without_a_primary_key_is_refused_by_name(world: World) -> None:
    source = world.source()
    world.execute("CREATE TABLE loose (v INT)")
    loose = world.table("loose")
    with pytest.raises(SourceError) as began:
        source.begin_snapshot([loose])
    with pytest.raises(SourceError) as read:
        next(source.snapshot_chunks(loose, None, source.current_position()))
    for caught in (began, read):
        message = str(caught.value)
        assert "loose" in message and "has no primary key" in message and "ADD PRIMARY KEY" in message
    if world.kind == "postgres":
        assert slot_flush(world, source.config.slot_name) is None  # refused before the slot
