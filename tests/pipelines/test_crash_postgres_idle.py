"""Kill `lakehouse stream` 100 times while mostly *unrelated* WAL moves: no restart may find the slot
confirmed past the lake (a false "position lost, resnapshot"), and nothing is lost or duplicated.

The window this guards: psycopg2 (2.8+) confirms keepalive positions by itself once every data
message it saw was confirmed, and before it saw any; a stream whose source is idle while other
tables change keeps receiving such keepalives, and a kill between that automatic confirmation and
the lake's heartbeat commit left the slot ahead of the lake. The source now answers the server
itself and confirms only lake-committed positions (`connectors.postgres.replication`).

A writer thread commits small transactions to a table outside the publication all the time, and
now and then a captured change (counted). Each `lakehouse stream` run is SIGKILLed at a random
moment after its replication session started (a fifth of the runs die at the commit protocol's
`published`/`acknowledged` crash points instead). After every kill the slot's confirmed position
must not be ahead of the lake's last commit, and the next run must start streaming (it fails at
start with PositionLostError otherwise). At the end a `lakehouse sync --once` catches up, and the
current state must equal the table and the change log hold every captured change exactly once.

Takes about 4 minutes ($PG_IDLE_KILLS, default 100, sets the number of kills).
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.postgres.offset import Lsn
from tests.crash_support import REPO, catch_up, lakehouse

SOURCE = "idle_pg"
STARTED = "streaming binary values from"  # logged once the replication session is open


class Writer(threading.Thread):
    """Unrelated WAL all the time; a captured change now and then (counted once committed)."""

    def __init__(self, connect: Any, seed: int) -> None:
        super().__init__(daemon=True)
        self.conn = connect()
        self.conn.autocommit = False
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self.error: BaseException | None = None
        self.live: list[int] = list(range(1, 101))
        self.next_id = 101

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                with self.conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO unrelated (payload) SELECT md5(random()::text) FROM generate_series(1, 20)"
                    )
                self.conn.commit()
                if self.rng.random() < 0.04:  # about one captured transaction a second
                    self._captured_change()
                time.sleep(self.rng.uniform(0.01, 0.03))
        except BaseException as e:  # surfaced by the test
            self.error = e

    def _captured_change(self) -> None:
        pending: Counter[str] = Counter()
        added: list[int] = []
        with self.conn.cursor() as cur:
            for _ in range(self.rng.randint(1, 3)):
                op = self.rng.random()
                if op < 0.5 or len(self.live) < 10:
                    cur.execute(
                        "INSERT INTO captured VALUES (%s, 0, %s)", (self.next_id, f"new {self.next_id} ✓")
                    )
                    added.append(self.next_id)
                    self.next_id += 1
                    pending["I"] += 1
                elif op < 0.85:
                    cur.execute(
                        "UPDATE captured SET n = n + 1, note = %s WHERE id = %s",
                        (f"u{time.time_ns()}", self.rng.choice(self.live)),
                    )
                    pending["U"] += cur.rowcount
                else:
                    cur.execute(
                        "DELETE FROM captured WHERE id = %s",
                        (self.live.pop(self.rng.randrange(len(self.live))),),
                    )
                    pending["D"] += cur.rowcount
        self.conn.commit()
        self.counts.update(pending)
        self.live.extend(added)


def _config(path: Path, db: Any, lake_root: Path) -> Path:
    path.write_text(
        f"""
[lake]
root = "{lake_root}"

[[sources]]
name = "{SOURCE}"
kind = "postgres"
host = "{db.host}"
port = {db.port}
user = "{db.cdc_user}"
password = "${{CRASH_PW}}"
database = "{db.name}"
schema = "public"
tables = ["captured"]
batch_max_rows = 300
batch_max_seconds = 0.2
idle_heartbeat_seconds = 1.0
"""
    )
    return path


class Run:
    """One `lakehouse stream` child, its stderr read by a thread (to see when it streams)."""

    def __init__(self, config: Path, env: dict[str, str], command: tuple[str, ...]) -> None:
        self.proc: subprocess.Popen[bytes] = lakehouse(config, *command, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.put(raw.decode(errors="replace"))

    def wait_streaming(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                continue
            self.log.append(line)
            if STARTED in line:
                return True
        return False

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        while not self.lines.empty():
            self.log.append(self.lines.get())
        return code


def _slot(admin: Any, slot: str) -> tuple[int | None, Lsn]:
    """(active pid, confirmed position) of the slot."""
    with admin.cursor() as cur:
        cur.execute(
            "SELECT active_pid, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        )
        pid, confirmed = cur.fetchone()
    return pid, Lsn.parse(confirmed)


def _released(admin: Any, slot: str) -> Lsn:
    deadline = time.monotonic() + 30
    pid, confirmed = _slot(admin, slot)
    while pid is not None:
        assert time.monotonic() < deadline, f"slot {slot} still held by {pid}"
        time.sleep(0.02)
        pid, confirmed = _slot(admin, slot)
    return confirmed


def _lake_end(lake: Lake) -> Lsn:
    latest = lake.commit_log(SOURCE).latest()
    assert latest is not None
    return Lsn.parse(latest.end.removeprefix("pg-lsn:"))


def _watch(admin: Any, lake: Lake, slot: str, run: Run | None, seconds: float, when: str) -> None:
    """The invariant, checked every few milliseconds for `seconds` (at least once, and no longer
    than `run` lives): the server never holds a confirmed position the lake has not committed.
    The slot is read first: the lake only moves forward, so a later lake read cannot make a
    confirmation that ran ahead look fine."""
    deadline = time.monotonic() + seconds
    while True:
        _pid, confirmed = _slot(admin, slot)
        lake_end = _lake_end(lake)
        assert confirmed <= lake_end, (
            f"{when}: the slot is confirmed up to {confirmed}, the lake only has {lake_end}"
        )
        if time.monotonic() >= deadline or (run is not None and run.proc.poll() is not None):
            return
        time.sleep(0.01)


@pytest.mark.slow
def test_kills_while_only_unrelated_wal_moves_never_lose_the_position(pg_db: Any, tmp_path: Path) -> None:
    admin = pg_db.admin_connect()
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE captured (id bigint PRIMARY KEY, n int NOT NULL, note text)")
        cur.execute("INSERT INTO captured SELECT i, 0, 'seed ' || i FROM generate_series(1, 100) i")
        cur.execute("CREATE TABLE unrelated (id bigserial PRIMARY KEY, payload text)")
    config = _config(tmp_path / "lakehouse.toml", pg_db, tmp_path / "lake")
    env = {**os.environ, "CRASH_PW": pg_db.cdc_password.get_secret_value(), "PYTHONPATH": str(REPO)}
    first = lakehouse(config, "sync", "--once", env=env)
    assert first.wait(timeout=120) == 0, first.stderr.read().decode()[-3000:] if first.stderr else ""
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    slot = f"lakehouse_{SOURCE}"

    writer = Writer(pg_db.admin_connect, seed=11)
    writer.start()
    rng = random.Random(5)
    kills: Counter[str] = Counter()
    started = time.monotonic()
    try:
        number = 0
        while sum(kills.values()) < int(os.environ.get("PG_IDLE_KILLS", "100")):
            number += 1
            point = rng.choice(["published", "acknowledged"]) if rng.random() < 0.2 else None
            crash = {"LAKEHOUSE_CRASH_AT": point, "LAKEHOUSE_CRASH_PROBABILITY": "0.3"} if point else {}
            # Some are bounded runs (`sync --once`, what the Dagster assets run), which ask for the
            # server's position every 0.2 s while catching up. Most of those, and a few streams, start
            # behind a burst of unrelated WAL: the walsender then reports positions inside it for a
            # while before any data or the end (where psycopg2's own feedback used to bite).
            bounded = rng.random() < 0.35
            burst = rng.random() < (0.9 if bounded else 0.1)
            if burst:
                with admin.cursor() as cur:
                    cur.execute(
                        "INSERT INTO unrelated (payload) SELECT md5(i::text) FROM generate_series(1, 150000) i"
                    )
            run = Run(config, env | crash, ("sync", "--once") if bounded else ("stream",))
            streaming = run.wait_streaming(timeout=60)
            if streaming:  # let it run for a random while, checking the invariant all along
                _watch(admin, lake, slot, run, rng.uniform(0.0, 2.5 if burst else 1.0), f"run {number}")
            code = run.kill()
            output = "".join(run.log)[-3000:]
            assert any(STARTED in line for line in run.log), (
                f"run {number} did not start streaming:\n{output}"
            )
            assert code == -signal.SIGKILL or (bounded and code == 0), (
                f"run {number} exited with {code}:\n{output}"
            )
            assert "PositionLost" not in output and "resnapshot" not in output, output
            if code == -signal.SIGKILL:
                kills[("sync" if bounded else "stream") + (" after a burst" if burst else "")] += 1
            _released(admin, slot)  # once its walsender is gone, the slot stays as it is
            _watch(admin, lake, slot, None, 0.0, f"after run {number}")
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, writer.error
    assert sum(writer.counts.values()) >= 20, writer.counts  # captured changes did happen meanwhile
    elapsed = time.monotonic() - started
    print(f"{sum(kills.values())} kills in {elapsed:.0f}s: {dict(kills)}; captured {dict(writer.counts)}")

    catch_up(config, env)
    with admin.cursor() as cur:
        cur.execute("SELECT id, n, note FROM captured ORDER BY id")
        expected = [tuple(r) for r in cur.fetchall()]
    state = lake.current(SOURCE).read("public__captured").sort_by("id")
    assert list(zip(*(state[c].to_pylist() for c in ("id", "n", "note")), strict=True)) == expected

    log = lake.read_changelog(SOURCE, "public__captured")
    streamed = log.filter(pc.greater_equal(log["_seq"], 2 << 32))  # commit 1 is the snapshot
    assert dict(Counter(streamed["Op"].to_pylist())) == dict(writer.counts)
    inserted = [
        i for op, i in zip(streamed["Op"].to_pylist(), streamed["id"].to_pylist(), strict=True) if op == "I"
    ]
    assert len(inserted) == len(set(inserted))
    _released(admin, slot)
    _watch(admin, lake, slot, None, 0.0, "at the end")
