"""How long a backfill stops the other tables: the longest gap between lake commits of a busy table
while a big table is re-snapshotted inside a running `lakehouse stream`.

MariaDB (as Aurora MySQL) holds `big` (ROWS rows) and `small`, into which a writer thread inserts
a row every 50 ms. `stream_source` runs exactly as `lakehouse stream` does; a backfill of `big` is
requested as `lakehouse backfill` would. Two runs in the same process, same data:

* ours — the backfill is read in chunks beside the stream, each committed between two stream
  commits (resumable after its last committed chunk);
* previous — the backfill staged whole by a worker beside the stream and committed at once
  (the design before chunked backfills, still the DynamoDB path), forced by hiding the source's
  chunk reading from the runner;
* baseline — the backfill served in line (the stream pauses, re-snapshots, then catches up),
  forced by hiding the source's configuration from the runner.

For each run: the backfill's duration, and the longest gap between two commits that contain
`small` rows during it (the other tables' freshness). Run by hand with the stack up:
    .venv/bin/python bench/bench_backfill_stall.py [rows]
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
from mariadb_big import big_and_small  # bench/, the script's own directory

from connectors.lake.commits import CommitRecord
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from pipelines.capture import requests
from pipelines.capture.runner import stream_source, sync_source
from pipelines.capture.sources import open_source

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000


class Hiding:
    """The source with some attributes hidden from the runner."""

    hidden: tuple[str, ...] = ()

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in self.hidden:
            raise AttributeError(name)
        return getattr(self._inner, name)


class InLine(Hiding):
    """Without `config`/`clone` the runner serves backfills in line."""

    hidden = ("config", "clone")


class Whole(Hiding):
    """Without chunk reading the runner stages a backfill whole beside the stream."""

    hidden = ("begin_snapshot", "begin_backfill", "snapshot_chunks")


def run(config: MySQLSourceConfig, admin: Any, lake_root: Path, *, variant: int) -> tuple[float, float]:
    lake = Lake(LakeConfig(root=str(lake_root)))
    source = open_source(config)
    try:
        sync_source(lake, source)
    finally:
        source.close()
    commits: list[tuple[float, CommitRecord]] = []
    stop, writing = threading.Event(), threading.Event()
    source = open_source(config)
    wrapped: Any = (lambda s: s, Whole, InLine)[variant](source)
    streamer = threading.Thread(
        target=stream_source,
        args=(lake, wrapped),
        kwargs={
            "stop": stop,
            "merge_every_seconds": 3600,
            "on_commit": lambda r: commits.append((time.monotonic(), r)),
        },
    )
    streamer.start()

    def write() -> None:
        conn = pymysql.connect(**admin, database=config.database, autocommit=True)
        n = 0
        while not writing.is_set():
            n += 1
            with conn.cursor() as cur:
                cur.execute("INSERT INTO small VALUES (%s, 'tick')", (10_000_000 + n + (1 << 20) * variant,))
            time.sleep(0.05)
        conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while not requests.runner_alive(lake.storage, config.name):
            time.sleep(0.1)
        time.sleep(2)
        asked = time.monotonic()
        request_id = requests.submit(lake.storage, config.name, ["big"])
        outcome = requests.wait(lake.storage, config.name, request_id, timeout=600)
        done = time.monotonic()
        assert outcome["ok"], outcome
        time.sleep(1)
    finally:
        writing.set()
        writer.join()
        stop.set()
        streamer.join(timeout=120)
        source.close()
    small = f"{config.database}__small"
    times = [asked] + [t for t, r in commits if asked <= t and small in r.tables] + [done]
    stall = max(b - a for a, b in zip(times, times[1:], strict=False))
    return done - asked, stall


def main() -> None:
    with big_and_small(ROWS) as db:
        print(f"backfill of {ROWS:,} rows inside `lakehouse stream`, other table written every 50 ms:")
        variants = (
            "ours: chunks beside the stream",
            "previous: staged whole beside",
            "baseline: served in line",
        )
        for variant, label in enumerate(variants):
            with tempfile.TemporaryDirectory() as tmp:
                took, stall = run(db.config(f"bf_{variant}"), db.admin, Path(tmp) / "lake", variant=variant)
            print(
                f"  {label:34s} backfill {took:6.1f} s ({ROWS / took:9,.0f} rows/s)   "
                f"longest gap between `small` commits {stall:6.2f} s"
            )


if __name__ == "__main__":
    main()
