"""The contract every source passes through the pipeline into the lake (MySQL binlog and PostgreSQL).

Each test runs the real runner (`sync_source`) against a fresh database on the local stack and a
fresh local lake, then compares the lake's current state with the source table row for row.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from connectors.events import TableId
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from connectors.postgres.config import PostgresSourceConfig
from pipelines.capture.runner import backfill_tables, sync_source
from pipelines.capture.sources import open_source
from tests.mysql_support import seq_table
from tests.stream_support import running_stream


class World:
    """A fresh source database, a fresh lake, and helpers to change the one and read the other."""

    def __init__(self, kind: str, db: Any, lake_root: Path, tables: tuple[str, ...]) -> None:
        self.kind, self.db = kind, db
        self.conn = db.admin_connect()
        common = dict(
            name=f"c_{kind}",
            host=db.host,
            port=db.port,
            user=db.cdc_user,
            password=db.cdc_password,
            database=db.name,
            tables=tables,
            batch_max_rows=500,
            chunk_rows=10_000,
        )
        self.config: MySQLSourceConfig | PostgresSourceConfig
        if kind == "mysql":
            self.config = MySQLSourceConfig(**common, server_id=random.randint(10_000, 2**31))
        else:
            self.config = PostgresSourceConfig(**common)
        self.lake = Lake(LakeConfig(root=str(lake_root)))
        self.schema = db.name if kind == "mysql" else "public"

    def sql(self, *statements: str, many: tuple[str, list[tuple[Any, ...]]] | None = None) -> None:
        with self.conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
            if many:
                cur.executemany(*many)
        if self.kind == "mysql":
            self.conn.commit()

    def touch(self, visit_id: int, note: str) -> None:
        """Upsert one `visits` row: a change the stream sees, so an idle stream gets control back."""
        if self.kind == "mysql":
            self.sql(
                f"INSERT INTO visits VALUES ({visit_id}, 9, '{note}') ON DUPLICATE KEY UPDATE note = '{note}'"
            )
        else:
            self.sql(
                f"INSERT INTO visits VALUES ({visit_id}, 9, '{note}') ON CONFLICT (id) DO UPDATE SET note = '{note}'"
            )

    def alter_type(self, table: str, column: str, new_type: str) -> str:
        if self.kind == "mysql":
            return f"ALTER TABLE {table} MODIFY {column} {new_type}"
        return f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {new_type}"

    def sync(self) -> Any:
        source = open_source(self.config)
        try:
            return sync_source(self.lake, source)
        finally:
            source.close()

    def source_rows(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT {columns} FROM {table} ORDER BY id")
            return [tuple(r) for r in cur.fetchall()]

    def lake_rows(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        state = self.lake.current(self.config.name).read(f"{self.schema}__{table}".lower())
        if not state.num_rows:
            return []
        state = state.sort_by("id")
        names = [c.strip() for c in columns.split(",")]
        return list(zip(*(state[n].to_pylist() for n in names), strict=True))

    def changelog(self, table: str) -> Any:
        return self.lake.read_changelog(self.config.name, f"{self.schema}__{table}".lower())


@pytest.fixture(params=["mariadb", "mysql8", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    """The contract world on MariaDB, on the MySQL 8-family server (as Aurora MySQL 3) and on PostgreSQL."""
    fixture = {"mariadb": "mysql_db", "mysql8": "mysql8_db", "postgres": "pg_db"}[request.param]
    kind = "postgres" if request.param == "postgres" else "mysql"
    db = request.getfixturevalue(fixture)
    w = World(kind, db, tmp_path / "lake", ("accounts", "visits"))
    w.sql(
        "CREATE TABLE accounts (id BIGINT PRIMARY KEY, name VARCHAR(50), balance DECIMAL(12,2), score INT)",
        "CREATE TABLE visits (id BIGINT PRIMARY KEY, account_id BIGINT, note VARCHAR(100))",
        many=(
            "INSERT INTO accounts VALUES (%s, %s, %s, %s)",
            [(i, f"acct {i} ✓", Decimal(i) / 4, i) for i in range(1, 101)],
        ),
    )
    w.sql(many=("INSERT INTO visits VALUES (%s, %s, %s)", [(i, i % 10 + 1, f"v{i}") for i in range(1, 51)]))
    return w


COLS = "id, name, balance, score"


def test_snapshot_then_stream_with_deletes(world: World) -> None:
    first = world.sync()
    assert set(first.snapshot_tables) >= {f"{world.schema}__accounts".lower()}
    assert world.lake_rows("accounts", COLS) == world.source_rows("accounts", COLS)
    world.sql(
        "UPDATE accounts SET balance = balance + 1, name = 'renamed' WHERE id <= 10",
        "DELETE FROM accounts WHERE id BETWEEN 20 AND 29",
        "INSERT INTO accounts VALUES (1000, 'new', 1.23, NULL)",
        "DELETE FROM visits WHERE id = 1",
    )
    second = world.sync()
    assert not second.snapshot_tables
    assert second.rows_by_table[f"{world.schema}__accounts".lower()] == 21
    assert world.lake_rows("accounts", COLS) == world.source_rows("accounts", COLS)
    assert world.lake_rows("visits", "id, note") == world.source_rows("visits", "id, note")


def test_resume_from_the_lakes_offset_and_replay_is_a_no_op(world: World) -> None:
    world.sync()
    snapshot_end = world.lake.writer(world.config.name).last_committed().offset
    # Commit a change to the lake but "crash" before acknowledging it to the source.
    world.sql("UPDATE accounts SET score = score + 1 WHERE id = 5")
    source = open_source(world.config)
    source.acknowledge = lambda offset: None  # type: ignore[method-assign]
    try:
        sync_source(world.lake, source)
    finally:
        source.close()
    log_before = world.changelog("accounts")
    assert log_before.num_rows == 101
    # The source delivers the unacknowledged changes again; the lake commits nothing twice.
    writer = world.lake.writer(world.config.name)
    source = open_source(world.config)
    try:
        assert snapshot_end is not None
        replayed = [
            writer.write(b)
            for b in source.stream(
                snapshot_end, writer.last_committed().floors, until=source.current_position()
            )
        ]
    finally:
        source.close()
    assert replayed and all(r is None for r in replayed)
    # A new process resumes from the lake's offset: nothing is read twice, later changes arrive.
    assert world.sync().rows == 0
    world.sql("UPDATE accounts SET score = score + 1 WHERE id = 6")
    assert world.sync().rows == 1
    assert world.changelog("accounts").num_rows == 102
    assert world.lake_rows("accounts", COLS) == world.source_rows("accounts", COLS)


def test_schema_change_mid_stream(world: World) -> None:
    world.sync()
    world.sql(
        "INSERT INTO accounts VALUES (200, 'before', 2.00, 2)",
        "ALTER TABLE accounts ADD COLUMN email VARCHAR(80)",
        "INSERT INTO accounts VALUES (201, 'after add', 3.00, 3, 'a@b.example')",
        world.alter_type("accounts", "score", "BIGINT"),
        "INSERT INTO accounts VALUES (202, 'after widen', 4.00, 9000000000, NULL)",
        "ALTER TABLE accounts DROP COLUMN name",
        "INSERT INTO accounts VALUES (203, 5.00, 5, 'c@d.example')",
        "UPDATE accounts SET score = score * 10 WHERE id = 1",
    )
    world.sync()
    cols = "id, balance, score, email"
    assert world.lake_rows("accounts", cols) == world.source_rows("accounts", cols)
    log = world.changelog("accounts")
    assert log.schema.field("score").type.bit_width == 64
    # Earlier events keep their names and values: row 200 was captured before the column was dropped.
    row200 = log.filter(pc.equal(log["id"], 200)).to_pylist()[0]
    assert row200["name"] == "before" and row200["email"] is None


def test_backfill_of_one_table_while_the_other_streams(world: World) -> None:
    world.sync()
    world.sql("UPDATE accounts SET score = -1 WHERE id = 1", "INSERT INTO visits VALUES (500, 1, 'during')")
    source = open_source(world.config)
    try:
        accounts = TableId(world.config.name, world.schema, "accounts")
        report = backfill_tables(world.lake, source, [accounts])
    finally:
        source.close()
    assert report.snapshot_tables == [f"{world.schema}__accounts".lower()]
    world.sql("UPDATE accounts SET score = -2 WHERE id = 2", "INSERT INTO visits VALUES (501, 2, 'after')")
    world.sync()
    assert world.lake_rows("accounts", COLS) == world.source_rows("accounts", COLS)
    assert world.lake_rows("visits", "id, note") == world.source_rows("visits", "id, note")
    # The backfill began at the lake's position, before the update to accounts: its chunks, read
    # after, hold the update, and the stream then commits it once, as a change over them.
    log = world.changelog("accounts")
    minus_one = log.filter(pc.equal(log["score"], -1))
    assert sorted(minus_one["Op"].to_pylist()) == ["I", "U"]
    snapshot_rows = pc.equal(pc.bit_wise_and(log["_seq"], 1 << 31), 1 << 31)
    assert log.filter(snapshot_rows).num_rows == 100 + 100  # the initial snapshot and the backfill


def test_a_killed_backfill_resumes_after_its_last_committed_chunk(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill stopped after two of its chunks continues after them when run again: no key is
    read twice into it, and the stream's changes meanwhile rank above its rows."""
    from pipelines.capture import snapshot_worker

    world.config = world.config.model_copy(update={"chunk_rows": 30})
    world.sync()
    accounts = TableId(world.config.name, world.schema, "accounts")
    original = snapshot_worker.staged_chunks

    def two_then_die(*args: Any, **kwargs: Any) -> Any:
        for i, staged in enumerate(original(*args, **kwargs)):
            if i == 2:
                raise KeyboardInterrupt  # as a kill: nothing after the second chunk commits
            yield staged

    monkeypatch.setattr(snapshot_worker, "staged_chunks", two_then_die)
    source = open_source(world.config)
    try:
        with pytest.raises(KeyboardInterrupt):
            backfill_tables(world.lake, source, [accounts])
    finally:
        source.close()
    monkeypatch.setattr(snapshot_worker, "staged_chunks", original)
    latest = world.lake.commit_log(world.config.name).latest()
    assert latest is not None
    progress = latest.snapshots[accounts.lake_name]
    assert progress.chunks == 2 and progress.rows == 60 and progress.request is not None
    # Meanwhile: a change in a committed chunk, one in a chunk still to read, and a new row.
    world.sql(
        "UPDATE accounts SET score = -5 WHERE id = 5",
        "UPDATE accounts SET score = -95 WHERE id = 95",
        "INSERT INTO accounts VALUES (300, 'during', 3.00, 3)",
    )
    assert world.lake_rows("accounts", COLS)[4][3] == 5  # the old state stays until the last chunk
    world.sync()  # any run of the source finishes the backfill first
    latest = world.lake.commit_log(world.config.name).latest()
    assert latest is not None and accounts.lake_name not in latest.snapshots
    done = latest.backfills[progress.request]
    assert done.finished is not None and done.rows == 101
    assert world.lake_rows("accounts", COLS) == world.source_rows("accounts", COLS)
    log = world.changelog("accounts")
    backfill_rows = log.filter(pc.equal(pc.shift_right(log["_seq"], 32), progress.base))
    ids = backfill_rows["id"].to_pylist()
    assert sorted(ids) == [*range(1, 101), 300]  # each key once


@pytest.mark.slow
def test_one_million_row_transaction(world: World) -> None:
    world.sync()
    rows = 1_000_000
    if world.kind == "mysql":
        world.sql(
            "INSERT INTO visits (id, account_id, note) "
            "SELECT 100000 + seq, seq % 100, CONCAT('bulk ', seq) FROM " + seq_table(rows)
        )
    else:
        world.sql(
            "INSERT INTO visits (id, account_id, note) "
            f"SELECT 100000 + g, g % 100, 'bulk ' || g FROM generate_series(1, {rows}) g"
        )
    report = world.sync()
    assert report.rows_by_table[f"{world.schema}__visits".lower()] == rows
    log = world.changelog("visits")
    assert log.num_rows == 50 + rows
    assert pc.count_distinct(log["_txid"].slice(50)).as_py() == 1  # one transaction, not split in the lake
    assert world.lake.current(world.config.name).read(f"{world.schema}__visits".lower()).num_rows == 50 + rows


def test_backfill_requested_from_another_process_runs_inside_the_stream(world: World) -> None:
    import time

    from pipelines.capture import requests

    world.sync()
    with running_stream(world.lake, world.config, wake=lambda: world.touch(999, "stop")) as stream:
        stream.wait_alive(nudge=lambda: world.touch(900, "wake"))
        world.sql(
            "UPDATE accounts SET score = -7 WHERE id = 7", "INSERT INTO visits VALUES (600, 1, 'before')"
        )
        request_id = requests.submit(world.lake.storage, world.config.name, ["accounts"])
        for i in range(601, 611):  # the other table keeps changing while the backfill is served
            world.sql(f"INSERT INTO visits VALUES ({i}, 2, 'during')")
            time.sleep(0.05)
        outcome = requests.wait(world.lake.storage, world.config.name, request_id, timeout=60)
        assert outcome["ok"] and outcome["rows"] == 100, outcome
        world.sql(
            "UPDATE accounts SET score = -8 WHERE id = 8", "INSERT INTO visits VALUES (700, 3, 'after')"
        )
        time.sleep(2)
    assert not requests.runner_alive(world.lake.storage, world.config.name)
    world.sync()
    assert world.lake_rows("accounts", COLS) == world.source_rows("accounts", COLS)
    assert world.lake_rows("visits", "id, note") == world.source_rows("visits", "id, note")
    commits = [world.lake.writer(world.config.name).log.read(s) for s in range(1, outcome["commit"] + 1)]  # type: ignore[operator]
    assert [c.kind for c in commits].count("backfill") == 1


def test_the_stream_keeps_committing_while_a_backfill_is_read(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill of `accounts` is read in chunks beside the stream, held after its first chunk:
    the `visits` and `accounts` changes made meanwhile are committed by the stream, and the
    chunks committed after keep them (their rows rank below). The request's outcome is recorded
    once its last chunk is committed."""
    import threading
    import time

    from pipelines.capture import requests, snapshot_worker

    world.config = world.config.model_copy(update={"chunk_rows": 30})
    first_chunk, changes_made = threading.Event(), threading.Event()
    original = snapshot_worker.staged_chunks

    def slow(*args: Any, **kwargs: Any) -> Any:
        for i, staged in enumerate(original(*args, **kwargs)):
            yield staged
            if i == 0:
                first_chunk.set()
                changes_made.wait(30)

    world.sync()
    monkeypatch.setattr(snapshot_worker, "staged_chunks", slow)
    try:
        with running_stream(world.lake, world.config, wake=lambda: world.touch(999, "stop")) as stream:
            stream.wait_alive()
            request_id = requests.submit(world.lake.storage, world.config.name, ["accounts"])
            assert first_chunk.wait(30), "the backfill never started"
            world.sql("UPDATE accounts SET score = -9 WHERE id = 9", "DELETE FROM accounts WHERE id = 10")
            world.sql("UPDATE accounts SET score = -60 WHERE id = 60")
            world.sql("INSERT INTO accounts VALUES (500, 'during', 5.00, 5)")
            for i in range(801, 806):
                world.sql(f"INSERT INTO visits VALUES ({i}, 2, 'during the backfill')")
            # The stream commits these while the backfill is held after its first chunk.
            deadline = time.monotonic() + 30
            while world.lake_rows("visits", "id, note")[-1][0] != 805:
                assert time.monotonic() < deadline and not stream.errors, stream.errors
                time.sleep(0.2)
            changes_made.set()
            outcome = requests.wait(world.lake.storage, world.config.name, request_id, timeout=60)
            assert outcome["ok"], outcome
            world.sql("UPDATE accounts SET score = -11 WHERE id = 11")
            time.sleep(1.5)
    finally:
        changes_made.set()
    log = world.lake.commit_log(world.config.name)
    finished = log.read(int(outcome["commit"]))  # type: ignore[call-overload]
    assert finished.kind == "chunk" and finished.backfills[request_id].finished == finished.seq
    records = [log.read(seq) for seq in range(1, finished.seq + 1)]
    began = next(r for r in records if r.kind == "backfill")
    during = records[began.seq : finished.seq - 1]
    kinds = [r.kind for r in during]
    touched = {name.rsplit("__", 1)[1] for r in during if r.kind == "stream" for name in r.tables}
    assert {"visits", "accounts"} <= touched  # the stream went on, for both tables
    assert "chunk" in kinds[kinds.index("stream") :]  # and chunks were committed after its commits
    assert outcome["rows"] == sum(r.rows for r in records[began.seq :] if r.kind == "chunk")
    world.sync()
    lake = world.lake_rows("accounts", COLS)
    assert lake == world.source_rows("accounts", COLS)
    assert (9, "acct 9 ✓", Decimal("2.25"), -9) in lake and not [r for r in lake if r[0] == 10]
    assert world.lake_rows("visits", "id, note") == world.source_rows("visits", "id, note")


@pytest.mark.parametrize("world", ["mariadb", "postgres"], indirect=True)
def test_the_stream_keeps_committing_while_a_merge_is_held(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Capture never waits for maintenance: with every current-state merge held, the stream goes
    on committing and acknowledging; once merges run again the current state catches up, and a
    stopped stream leaves it at its last commit."""
    import threading
    import time

    from connectors.lake.current import CurrentState

    world.sync()
    merging, release = threading.Event(), threading.Event()
    original = CurrentState.merge

    def held(self: CurrentState, *args: Any, **kwargs: Any) -> Any:
        merging.set()
        assert release.wait(60), "the test never released the merge"
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CurrentState, "merge", held)
    log = world.lake.commit_log(world.config.name)
    try:
        with running_stream(world.lake, world.config, merge_every_seconds=0.2) as stream:
            stream.wait_alive(nudge=lambda: world.touch(900, "wake"))
            world.touch(901, "first")
            assert merging.wait(30), "no merge started"
            at_hold = log.latest_seq()
            for i in range(1, 6):
                world.sql(f"UPDATE accounts SET score = {-i} WHERE id = {i}")
                world.touch(910 + i, "while the merge is held")
            deadline = time.monotonic() + 30
            while "while the merge is held" not in world.changelog("visits")["note"].to_pylist()[-1:]:
                assert time.monotonic() < deadline and not stream.errors, stream.errors
                time.sleep(0.2)
            assert not release.is_set() and log.latest_seq() > at_hold
            assert 915 not in [r[0] for r in world.lake_rows("visits", "id")]  # not merged yet
            release.set()
            while 915 not in [r[0] for r in world.lake_rows("visits", "id")]:  # merged beside the stream
                assert time.monotonic() < deadline and not stream.errors, stream.errors
                time.sleep(0.2)
            world.sql("UPDATE accounts SET score = 99 WHERE id = 98")  # committed, not merged before stop
            while 99 not in world.changelog("accounts")["score"].to_pylist():
                assert time.monotonic() < deadline and not stream.errors, stream.errors
                time.sleep(0.1)
    finally:
        release.set()
    assert world.lake_rows("accounts", COLS) == world.source_rows("accounts", COLS)
    assert world.lake_rows("visits", "id, note") == world.source_rows("visits", "id, note")


def test_a_stream_stopped_while_idle_restarts_where_it_was(world: World) -> None:
    """Only an uncaptured table changes while the stream runs (WAL moves, nothing for the lake),
    past PostgreSQL's and psycopg2's feedback intervals; stopped and started again, the stream
    resumes without reporting the position lost (the slot never runs ahead of the lake)."""
    import time

    world.sql("CREATE TABLE noise (id BIGINT PRIMARY KEY, note VARCHAR(20))")
    world.sync()
    with running_stream(world.lake, world.config) as stream:
        until = time.monotonic() + 14  # beyond psycopg2's 10 s status interval
        i = 0
        while time.monotonic() < until and not stream.errors:
            i += 1
            world.sql(f"INSERT INTO noise VALUES ({i}, 'x')")
            time.sleep(0.3)
    world.sql("UPDATE accounts SET score = 77 WHERE id = 7")
    world.sync()  # raised PositionLostError when psycopg2 had confirmed a keepalive position
    assert world.lake_rows("accounts", COLS) == world.source_rows("accounts", COLS)


def test_the_same_pipeline_on_an_s3_lake(
    world: World, s3_lake: Any, aws_client_kwargs: dict[str, str], tmp_path: Path
) -> None:
    """Storage on S3 (the moto server) through the same storage layer: same results."""
    import boto3

    world.lake = Lake(
        LakeConfig(root=s3_lake.root, s3=s3_lake.options, catalog_uri=f"sqlite:///{tmp_path}/catalog.db")
    )
    world.sync()
    world.sql("UPDATE accounts SET name = 'on s3' WHERE id = 3", "DELETE FROM accounts WHERE id = 4")
    world.sync()
    assert world.lake_rows("accounts", COLS) == world.source_rows("accounts", COLS)
    listing = boto3.client("s3", **aws_client_kwargs).list_objects_v2(
        Bucket=s3_lake.bucket, Prefix="lake/changelog/"
    )
    keys = [o["Key"] for o in listing["Contents"]]
    assert any("/commit_date=" in k and k.endswith(".parquet") for k in keys)


def test_resnapshot_replaces_every_table_and_streaming_resumes(world: World) -> None:
    from pipelines.capture.runner import resnapshot_source

    world.sync()
    world.sql("UPDATE accounts SET score = 0 WHERE id < 50", "DELETE FROM visits WHERE id > 40")
    source = open_source(world.config)
    try:
        report = resnapshot_source(world.lake, source)
    finally:
        source.close()
    assert sorted(set(report.snapshot_tables)) == [
        f"{world.schema}__accounts".lower(),
        f"{world.schema}__visits".lower(),
    ]
    # The resnapshot began with a snapshot commit after the first sync's commits, then chunks.
    log = world.lake.writer(world.config.name).log
    kinds = [log.read(n).kind for n in range(1, log.latest_seq() + 1)]
    began = max(i for i, kind in enumerate(kinds) if kind == "snapshot")
    assert began > 0 and set(kinds[began + 1 :]) == {"chunk"} and not log.latest().snapshots  # type: ignore[union-attr]
    assert world.lake_rows("accounts", COLS) == world.source_rows("accounts", COLS)
    assert world.lake_rows("visits", "id, note") == world.source_rows("visits", "id, note")
    world.sql("INSERT INTO visits VALUES (800, 1, 'after resnapshot')")
    assert world.sync().rows == 1
    assert world.lake_rows("visits", "id, note") == world.source_rows("visits", "id, note")


def test_truncate_empties_the_table_and_later_rows_arrive(world: World) -> None:
    world.sync()
    world.sql(
        "INSERT INTO accounts VALUES (300, 'before truncate', 1.00, 1)",
        "UPDATE visits SET note = 'kept' WHERE id = 2",
        "TRUNCATE TABLE accounts",
        "INSERT INTO accounts VALUES (301, 'after truncate', 2.00, 2)",
    )
    world.sync()
    assert (
        world.lake_rows("accounts", COLS)
        == world.source_rows("accounts", COLS)
        == [(301, "after truncate", Decimal("2.00"), 2)]
    )
    assert world.lake_rows("visits", "id, note") == world.source_rows("visits", "id, note")
    # A new process resumes after the TRUNCATE; nothing is replayed, later changes arrive.
    world.sql("INSERT INTO accounts VALUES (302, 'later', 3.00, 3)")
    assert world.sync().rows == 1
    assert world.lake_rows("accounts", COLS) == world.source_rows("accounts", COLS)
