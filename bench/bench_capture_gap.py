"""Does capture wait for maintenance? The longest gap between lake commits of a busy table while
a large table's current state is merged and compacted inside a running `lakehouse stream`.

MariaDB (as Aurora MySQL) holds `big` (ROWS rows) and `small`. One writer thread inserts a `small`
row every 50 ms; another, every 5 s, updates 10,000 random rows of `big` in one transaction. Merges of `big`
are made as heavy as maintenance gets: every merge compacts the whole table copy-on-write (the
bench sets a policy that always rewrites). `stream_source` runs as `lakehouse stream` does, three
times on the same lake and source, for WINDOW seconds each:

* off (baseline) — no merge during the window (`merge_every_seconds` = 1 hour): capture alone;
* ours — merges every second in the stream's maintenance thread (`pipelines.capture.maintenance`);
* inline (previous design) — the same merges run in the capture thread, after a commit, as the
  stream runner did before the maintenance split (reproduced with its `on_commit` hook).

For each: the longest and the median gap between two commits that hold `small` rows, and how
many merges of `big` finished. Run by hand with the stack up:

    .venv/bin/python bench/bench_capture_gap.py [rows] [window seconds]
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
from mariadb_big import big_and_small  # bench/, the script's own directory

from connectors.lake.commits import CommitRecord
from connectors.lake.compaction import ALWAYS_REWRITE
from connectors.lake.config import LakeConfig
from connectors.lake.current import CurrentState
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from pipelines.capture import requests
from pipelines.capture.runner import stream_source, sync_source
from pipelines.capture.sources import open_source

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
WINDOW = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0


class RewritingLake(Lake):
    """The lake, with current-state merges that always compact; notes when each merge of `big` ends."""

    big_merged: list[float] = []

    def current(self, source: str) -> CurrentState:
        state = super().current(source)
        state.compaction = ALWAYS_REWRITE  # the heaviest maintenance a merge can do
        merge = state.merge

        def noted(*args: Any, **kwargs: Any) -> Any:
            results = merge(*args, **kwargs)
            if any(r.table.endswith("__big") for r in results):
                self.big_merged.append(time.monotonic())
            return results

        state.merge = noted  # type: ignore[method-assign]
        return state


def window(
    lake: RewritingLake, config: MySQLSourceConfig, admin: dict[str, Any], variant: str
) -> dict[str, float]:
    commits: list[tuple[float, CommitRecord]] = []
    inline = lake.current(config.name)
    last_inline = time.monotonic()

    def on_commit(record: CommitRecord) -> None:
        nonlocal last_inline
        commits.append((time.monotonic(), record))
        if variant == "inline" and time.monotonic() - last_inline >= 1.0:
            inline.merge(record)
            last_inline = time.monotonic()

    stop, writing = threading.Event(), threading.Event()
    source = open_source(config)
    streamer = threading.Thread(
        target=stream_source,
        args=(lake, source),
        kwargs={
            "stop": stop,
            "merge_every_seconds": 1.0 if variant == "ours" else 3600.0,
            "on_commit": on_commit,
        },
    )
    streamer.start()
    salt = {"off": 0, "ours": 1, "inline": 2}[variant]

    def insert_small() -> None:
        conn = pymysql.connect(**admin, database=config.database, autocommit=True)
        n = 0
        while not writing.wait(0.05):
            n += 1
            with conn.cursor() as cur:
                cur.execute("INSERT INTO small VALUES (%s, 'tick')", ((1 << 24) * salt + n,))
        conn.close()

    def update_big() -> None:
        """10,000 random `big` rows in one transaction every 5 s (by primary key: a quick statement)."""
        conn = pymysql.connect(**admin, database=config.database, autocommit=True)
        rng = random.Random(salt)
        while not writing.wait(5.0):
            ids = ",".join(str(i) for i in rng.sample(range(1, ROWS + 1), 10_000))
            with conn.cursor() as cur:
                cur.execute(f"UPDATE big SET amount = amount + 1 WHERE id IN ({ids})")
        conn.close()

    while not requests.runner_alive(lake.storage, config.name):
        time.sleep(0.1)
    writers = [threading.Thread(target=insert_small), threading.Thread(target=update_big)]
    for w in writers:
        w.start()
    time.sleep(2)
    began = time.monotonic()
    time.sleep(WINDOW)
    ended = time.monotonic()
    writing.set()
    for w in writers:
        w.join()
    stop.set()
    streamer.join(timeout=1800)
    source.close()
    small = f"{config.database}__small"
    times = [t for t, r in commits if began <= t <= ended and small in r.tables]
    gaps = [b - a for a, b in zip([began, *times], [*times, ended], strict=False)]
    return {
        "longest": max(gaps),
        "median": statistics.median(gaps),
        "merges": sum(began <= t <= ended for t in lake.big_merged),
    }


def main() -> None:
    with big_and_small(ROWS) as db, tempfile.TemporaryDirectory() as tmp:
        config = db.config("gap")
        lake = RewritingLake(LakeConfig(root=str(Path(tmp) / "lake")))
        began = time.monotonic()
        source = open_source(config)
        try:
            sync_source(lake, source)  # snapshot and first merge of `big`
        finally:
            source.close()
        print(
            f"`big` {ROWS:,} rows snapshotted and merged in {time.monotonic() - began:.0f} s; "
            f"each variant streams for {WINDOW:.0f} s, `small` written every 50 ms, "
            f"10,000 `big` rows updated every 5 s, every merge of `big` compacts it whole:"
        )
        for variant, label in (
            ("off", "maintenance off (baseline)"),
            ("ours", "maintenance thread (ours)"),
            ("inline", "merge in the capture thread (previous)"),
        ):
            result = window(lake, config, db.admin, variant)
            print(
                f"  {label:40s} longest gap {result['longest']:6.2f} s   median {result['median']:5.2f} s   "
                f"merges of `big` {result['merges']:.0f}"
            )


if __name__ == "__main__":
    main()
