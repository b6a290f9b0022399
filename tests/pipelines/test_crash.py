"""Crash tests: SIGKILL the pipeline process at random points, restart, compare the lake with the source.

A writer thread keeps changing a table (single-row and 1,000-row transactions, inserts, updates
and deletes, every UPDATE changing a value so the server logs it) and counts every row change it
commits. Meanwhile `lakehouse stream` runs in a child process that is killed again and again:
at random moments (during decode, staging, merging), and at the protocol's named steps through
crash points (files staged but not committed; commit record written but files not moved;
committed but the source not acknowledged), while backfills of the same table keep being requested
and are staged and committed beside the stream. Afterwards a final `lakehouse sync --once` catches up
and the test requires:
- the current state equals the source table row for row;
- the change log holds exactly the row changes the writer committed — no loss, no duplicate.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from tests.crash_support import (
    REPO,
    backfills_requested,
    catch_up,
    ensure_a_backfill,
    kill_streams_repeatedly,
    lakehouse,
    without_backfill_rows,
)


class Writer(threading.Thread):
    """Changes the `ledger` table until stopped; counts committed row changes by operation."""

    def __init__(self, connect: Any, kind: str, first_id: int, seed: int, *, bulk: bool = True) -> None:
        super().__init__(daemon=True)
        self.bulk = bulk  # False: no 1,000-row transactions
        self.conn = connect()
        self.kind = kind
        self.next_id = first_id
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self.error: BaseException | None = None
        self.live: list[int] = list(range(1, first_id))
        self.touched: set[int] = set()  # keys updated or deleted

    def _exec(self, cur: Any, sql: str, args: Any = None) -> int:
        cur.execute(sql, args)
        return int(cur.rowcount)

    def run(self) -> None:
        try:
            if self.kind == "mysql":
                self.conn.autocommit(False)
            else:
                self.conn.autocommit = False
            while not self.stop.is_set():
                self._one_transaction()
                time.sleep(self.rng.uniform(0, 0.01))
        except BaseException as e:  # surfaced by the test
            self.error = e

    def _one_transaction(self) -> None:
        pending: Counter[str] = Counter()
        with self.conn.cursor() as cur:
            roll = self.rng.random()
            if self.bulk and roll < 0.03:  # a big transaction: 1,000 inserts
                ids = list(range(self.next_id, self.next_id + 1000))
                self.next_id += 1000
                cur.executemany(
                    "INSERT INTO ledger (id, n, note, amount) VALUES (%s, %s, %s, %s)",
                    [(i, 0, f"bulk {i} ✓", Decimal(i % 1000) / 100) for i in ids],
                )
                pending["I"] += len(ids)
                new_live = ids
            else:
                new_live = []
                for _ in range(self.rng.randint(1, 4)):
                    op = self.rng.random()
                    if op < 0.4 or len(self.live) < 10:
                        i = self.next_id
                        self.next_id += 1
                        pending["I"] += self._exec(
                            cur,
                            "INSERT INTO ledger (id, n, note, amount) VALUES (%s, %s, %s, %s)",
                            (i, 0, f"r{i}", Decimal("1.25")),
                        )
                        new_live.append(i)
                    elif op < 0.85:
                        i = self.rng.choice(self.live)
                        self.touched.add(i)
                        pending["U"] += self._exec(
                            cur,
                            "UPDATE ledger SET n = n + 1, note = %s WHERE id = %s",
                            (f"u{time.time_ns()}", i),
                        )
                    else:
                        i = self.live.pop(self.rng.randrange(len(self.live)))
                        self.touched.add(i)
                        pending["D"] += self._exec(cur, "DELETE FROM ledger WHERE id = %s", (i,))
        self.conn.commit()
        self.counts.update(pending)
        self.live.extend(new_live)


def create_ledger(db: Any, kind: str, rows: int) -> Any:
    """Create the `ledger` table with `rows` seed rows (ids 1..rows); returns the admin connection."""
    admin = db.admin_connect()
    with admin.cursor() as cur:
        cur.execute(
            "CREATE TABLE ledger (id BIGINT PRIMARY KEY, n INT NOT NULL, note VARCHAR(200), amount DECIMAL(12,2))"
        )
        cur.executemany(
            "INSERT INTO ledger (id, n, note, amount) VALUES (%s, %s, %s, %s)",
            [(i, 0, f"seed {i}", Decimal("9.99")) for i in range(1, rows + 1)],
        )
    if kind == "mysql":
        admin.commit()
    return admin


def write_config(
    path: Path, db: Any, lake_root: Path, kind: str, *, name: str = "crash", chunk_rows: int = 250
) -> Path:
    """A config with one source `<name>_<kind>` capturing `ledger` (password from $CRASH_PW)."""
    extra = 'schema = "public"\n' if kind == "postgres" else ""
    path.write_text(
        f"""
[lake]
root = "{lake_root}"

[[sources]]
name = "{name}_{kind}"
kind = "{kind}"
host = "{db.host}"
port = {db.port}
user = "{db.cdc_user}"
password = "${{CRASH_PW}}"
database = "{db.name}"
{extra}tables = ["ledger"]
batch_max_rows = 300
batch_max_seconds = 0.2
chunk_rows = {chunk_rows}
"""
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize("server", ["mariadb", "mysql8", "postgres"])
def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = request.getfixturevalue({"mariadb": "mysql_db", "mysql8": "mysql8_db", "postgres": "pg_db"}[server])
    kind = "postgres" if server == "postgres" else "mysql"
    admin = create_ledger(db, kind, 500)
    config = write_config(tmp_path / "lakehouse.toml", db, tmp_path / "lake", kind)
    env = {**os.environ, "CRASH_PW": db.cdc_password.get_secret_value(), "PYTHONPATH": str(REPO)}

    # The initial snapshot first (a first attempt may be killed mid-way), then the writer starts.
    crashy = lakehouse(
        config,
        "sync",
        "--once",
        env={**env, "LAKEHOUSE_CRASH_AT": "staged", "LAKEHOUSE_CRASH_PROBABILITY": "0.5"},
    )
    crashy.wait(timeout=120)
    clean = lakehouse(config, "sync", "--once", env=env)
    assert clean.wait(timeout=120) == 0, clean.stderr.read().decode()[-3000:] if clean.stderr else ""
    writer = Writer(db.admin_connect, kind, first_id=501, seed=42)
    writer.start()
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    source = f"crash_{kind}"
    try:
        with backfills_requested(lake, source, ["ledger"]):
            kills = kill_streams_repeatedly(config, env, random.Random(7))
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    assert sum(kills.values()) >= 5, kills
    ensure_a_backfill(config, env, lake, source, ["ledger"])

    catch_up(config, env)

    table = f"{db.name if kind == 'mysql' else 'public'}__ledger"
    with admin.cursor() as cur:
        cur.execute("SELECT id, n, note, amount FROM ledger ORDER BY id")
        expected = [tuple(r) for r in cur.fetchall()]
    state = lake.current(source).read(table).sort_by("id")
    got = list(zip(*(state[c].to_pylist() for c in ("id", "n", "note", "amount")), strict=True))
    assert got == expected

    log = without_backfill_rows(lake, source, lake.read_changelog(source, table))
    snapshot = log.filter(pc.less(log["_seq"], 2 << 32))  # commit 1 is the snapshot
    assert snapshot.num_rows == 500 and set(snapshot["Op"].to_pylist()) == {"I"}
    streamed = log.filter(pc.greater_equal(log["_seq"], 2 << 32))
    ops = Counter(streamed["Op"].to_pylist())
    assert dict(ops) == dict(writer.counts), (
        f"change log {dict(ops)} vs committed {dict(writer.counts)}; kills {dict(kills)}"
    )
    inserted = [
        i for op, i in zip(streamed["Op"].to_pylist(), streamed["id"].to_pylist(), strict=True) if op == "I"
    ]
    assert len(inserted) == len(set(inserted))


@pytest.mark.slow
@pytest.mark.parametrize("server", ["mariadb", "mysql8", "postgres"])
def test_a_backfill_killed_at_random_points_resumes_after_its_last_chunk(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """`lakehouse backfill` SIGKILLed again and again (at the commit protocol's steps) while the
    table changes: each run continues the one backfill after its last committed chunk, none
    begins it again, no key is read twice into it, and the stream after it loses nothing."""
    db = request.getfixturevalue({"mariadb": "mysql_db", "mysql8": "mysql8_db", "postgres": "pg_db"}[server])
    kind = "postgres" if server == "postgres" else "mysql"
    admin = create_ledger(db, kind, 2000)
    config = write_config(tmp_path / "lakehouse.toml", db, tmp_path / "lake", kind, chunk_rows=100)
    env = {**os.environ, "CRASH_PW": db.cdc_password.get_secret_value(), "PYTHONPATH": str(REPO)}
    source = f"crash_{kind}"
    first = lakehouse(config, "sync", "--once", env=env)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()[-3000:]
    writer = Writer(db.admin_connect, kind, first_id=2001, seed=11, bulk=False)
    writer.start()
    crashy = {
        **env,
        "LAKEHOUSE_CRASH_AT": "staged,committed,published",
        "LAKEHOUSE_CRASH_PROBABILITY": "0.15",
    }
    runs: list[int] = []
    try:
        while not runs or runs[-1] != 0:
            assert len(runs) < 80, f"the backfill never finished: exits {runs}"
            proc = lakehouse(config, "backfill", "--source", source, "ledger", env=crashy)
            _, err = proc.communicate(timeout=300)
            assert proc.returncode in (0, -9), err.decode()[-3000:]
            runs.append(proc.returncode)
            if len(runs) == 2:  # a table growing without end would outrun a backfill killed this often
                writer.stop.set()
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    assert runs.count(-9) >= 1, runs  # killed at least once: the test covers a resume

    catch_up(config, env)
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    commits = lake.commit_log(source)
    records = [commits.read(n) for n in range(1, commits.latest_seq() + 1)]
    assert [r.kind for r in records].count("backfill") == 1, "a killed backfill was begun again"
    assert not records[-1].snapshots
    table = f"{db.name if kind == 'mysql' else 'public'}__ledger"
    with admin.cursor() as cur:
        cur.execute("SELECT id, n, note, amount FROM ledger ORDER BY id")
        expected = [tuple(r) for r in cur.fetchall()]
    state = lake.current(source).read(table).sort_by("id")
    assert list(zip(*(state[c].to_pylist() for c in ("id", "n", "note", "amount")), strict=True)) == expected
    log = without_backfill_rows(lake, source, lake.read_changelog(source, table))
    streamed = log.filter(pc.greater_equal(log["_seq"], 2 << 32))
    assert dict(Counter(streamed["Op"].to_pylist())) == dict(writer.counts), runs


@pytest.mark.slow
@pytest.mark.parametrize("server", ["mariadb", "postgres"])
def test_two_streams_and_bounded_runs_of_one_source_write_one_at_a_time(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two `lakehouse stream` processes of one source run at once and are SIGKILLed at random
    points (at the commit protocol's steps too) and restarted, while `sync --once` runs start
    beside them. One holds the source's lease at a time: the other stands by and takes over when
    the holder dies (a fence commit first); a bounded run is refused naming the holder. Nothing
    wedges, the current state equals the source and every change is in the log once."""
    db = request.getfixturevalue({"mariadb": "mysql_db", "postgres": "pg_db"}[server])
    kind = "postgres" if server == "postgres" else "mysql"
    admin = create_ledger(db, kind, 500)
    config = write_config(tmp_path / "lakehouse.toml", db, tmp_path / "lake", kind)
    env = {**os.environ, "CRASH_PW": db.cdc_password.get_secret_value(), "PYTHONPATH": str(REPO)}
    source = f"crash_{kind}"
    first = lakehouse(config, "sync", "--once", env=env)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()[-3000:]
    writer = Writer(db.admin_connect, kind, first_id=501, seed=23)
    writer.start()
    rng = random.Random(5)
    crash_env = {
        **env,
        "LAKEHOUSE_CRASH_AT": "staged,committed,published",
        "LAKEHOUSE_CRASH_PROBABILITY": "0.05",
    }
    streams: list[tuple[Any, float]] = []
    outputs: list[str] = []
    bounded: Counter[str] = Counter()
    deadline = time.monotonic() + float(os.environ.get("CRASH_TEST_SECONDS", "40"))
    try:
        while time.monotonic() < deadline:
            for proc, until in list(streams):
                if proc.poll() is None and time.monotonic() < until:
                    continue
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                _, err = proc.communicate(timeout=60)
                assert proc.returncode in (-signal.SIGKILL, 0), err.decode()[-3000:]
                outputs.append(err.decode())
                streams.remove((proc, until))
            while len(streams) < 2:
                streams.append(
                    (lakehouse(config, "stream", env=crash_env), time.monotonic() + rng.uniform(2, 6))
                )
            if rng.random() < 0.3:
                run = lakehouse(config, "sync", "--once", env=env)
                _, err = run.communicate(timeout=120)
                text = err.decode()
                assert run.returncode in (0, 2), text[-3000:]
                if run.returncode == 2:
                    assert f"source '{source}' is being written by lakehouse stream on" in text, text[-3000:]
                bounded["refused" if run.returncode else "ran"] += 1
            time.sleep(0.3)
    finally:
        for proc, _ in streams:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    logs = "\n".join(outputs)
    assert "standing by: the lease is held by lakehouse stream" in logs
    assert "lease taken over from lakehouse stream" in logs
    assert bounded["refused"] >= 1, bounded

    catch_up(config, env)
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    commits = lake.commit_log(source)
    records = [commits.read(n) for n in range(1, commits.latest_seq() + 1)]
    epochs = [r.lease_epoch for r in records]
    assert epochs == sorted(epochs), "two writers' commits interleaved"
    assert [r for r in records if r.kind == "fence"], "no takeover was fenced"
    table = f"{db.name if kind == 'mysql' else 'public'}__ledger"
    with admin.cursor() as cur:
        cur.execute("SELECT id, n, note, amount FROM ledger ORDER BY id")
        expected = [tuple(r) for r in cur.fetchall()]
    state = lake.current(source).read(table).sort_by("id")
    assert list(zip(*(state[c].to_pylist() for c in ("id", "n", "note", "amount")), strict=True)) == expected
    log = lake.read_changelog(source, table)
    streamed = log.filter(pc.greater_equal(log["_seq"], 2 << 32))
    assert dict(Counter(streamed["Op"].to_pylist())) == dict(writer.counts), bounded
