"""Shared by the crash tests: run `lakehouse` in a child process and kill it again and again."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from connectors.lake.lake import Lake
from pipelines.capture import requests

REPO = Path(__file__).resolve().parents[1]
# The commit protocol's named steps (connectors/faults.py): files staged but not committed; commit
# record written but files not moved; published but the source not acknowledged; acknowledged.
CRASH_POINTS = ["staged", "committed", "published", "acknowledged"]


def lakehouse(config: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`lakehouse --config <config> <args>` in a child process (stderr captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "--config", str(config), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill_streams_repeatedly(
    config: Path,
    env: dict[str, str],
    rng: random.Random,
    *,
    until: Callable[[], bool] | None = None,
    after_kill: Callable[[], None] | None = None,
    points: Sequence[str | None] = (*CRASH_POINTS, None, None),
    probability: float = 0.2,
) -> Counter[str]:
    """Run `lakehouse stream` over and over for $CRASH_TEST_SECONDS (default 40), or until
    `until()` is true: each run is SIGKILLed after 1.5-4 s, or dies at a crash point drawn at
    random from `points` (None: none), each time it passes it with `probability`; returns kills by
    point, and calls `after_kill()` after each. A run that exits by itself with an error fails
    the test."""
    kills: Counter[str] = Counter()
    deadline = time.monotonic() + float(os.environ.get("CRASH_TEST_SECONDS", "40"))
    while time.monotonic() < deadline and not (until is not None and until()):
        point = rng.choice(list(points))
        run_env = dict(env)
        if point:
            run_env |= {"LAKEHOUSE_CRASH_AT": point, "LAKEHOUSE_CRASH_PROBABILITY": str(probability)}
        proc = lakehouse(config, "stream", env=run_env)
        try:
            proc.wait(timeout=rng.uniform(1.5, 4.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if proc.returncode == -signal.SIGKILL:
            kills[point or "random"] += 1
            if after_kill is not None:
                after_kill()
        elif proc.returncode != 0:
            stderr = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            pytest.fail(f"stream exited with {proc.returncode}: {stderr}")
    return kills


def catch_up(config: Path, env: dict[str, str]) -> str:
    """A final `lakehouse sync --once`; returns its stderr (it must succeed)."""
    final = lakehouse(config, "sync", "--once", env=env)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-3000:]
    return err.decode()


@contextmanager
def backfills_requested(lake: Lake, source: str, tables: Sequence[str], every: float = 2.5) -> Iterator[None]:
    """Keep asking the running stream for a backfill of `tables` (whenever none is pending), as
    `lakehouse backfill` would, so the kills also land while one is staged or committed."""
    stop = threading.Event()

    def ask() -> None:
        while not stop.wait(every):
            if not requests.pending(lake.storage, source):
                requests.submit(lake.storage, source, list(tables))

    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    try:
        yield
    finally:
        stop.set()
        asker.join(timeout=30)


def ensure_a_backfill(
    config: Path, env: dict[str, str], lake: Lake, source: str, tables: Sequence[str]
) -> None:
    """If the kills left no backfill committed (a slow machine), serve one in an unkilled stream,
    so the checks below always cover a backfill."""
    commits = lake.commit_log(source)
    if any(commits.read(n).kind == "backfill" for n in range(1, commits.latest_seq() + 1)):
        return
    pending = requests.pending(lake.storage, source)
    request_id = pending[0].request_id if pending else requests.submit(lake.storage, source, list(tables))
    proc = lakehouse(config, "stream", env=env)
    try:
        outcome = requests.wait(lake.storage, source, request_id, timeout=120)
        assert outcome["ok"], outcome
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def without_backfill_rows(lake: Lake, source: str, log: pa.Table, key: Sequence[str] = ("id",)) -> pa.Table:
    """The change log without the rows of backfills (there must be some), checking them.

    Snapshot rows have bit 31 of `_seq` set and rank just below commit ``c + 1``: ``(c << 32) +
    2^31 + i``. For a chunked backfill (or snapshot) `c` is the commit that began it, and its rows
    come in the chunk commits after; for a backfill staged whole, `c` is the commit it replays
    after. Checked: every committed snapshot row is in the log once (their count is the rows the
    chunk and backfill commits recorded), and no key is read twice into one backfill (a resumed
    backfill continues after its last committed chunk). The initial snapshot began with commit 1.
    """
    commits = lake.commit_log(source)
    records = [commits.read(n) for n in range(1, commits.latest_seq() + 1)]
    backfills = [r for r in records if r.kind == "backfill"]
    assert backfills, "no backfill was committed between the kills"
    began = {
        t.replay_after if t.replay_after is not None else r.seq for r in backfills for t in r.tables.values()
    }
    snapshot_rows = pc.equal(pc.bit_wise_and(log["_seq"], 1 << 31), 1 << 31)
    committed = sum(r.rows for r in records if r.kind in ("chunk", "backfill"))
    assert log.filter(snapshot_rows).num_rows == committed
    from_backfill = pc.and_(
        snapshot_rows,
        pc.is_in(pc.shift_right(log["_seq"], 32), value_set=pa.array(sorted(began), pa.int64())),
    )
    rows = log.filter(from_backfill)
    for base in began:
        one = rows.filter(pc.equal(pc.shift_right(rows["_seq"], 32), base))
        keys = list(zip(*(one[k].to_pylist() for k in key), strict=True))
        assert len(keys) == len(set(keys)), f"a key was read twice into the backfill begun at commit {base}"
    return log.filter(pc.invert(from_backfill))
