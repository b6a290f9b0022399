"""Sustained workload: source commit -> change log and -> merged current state, p95, at rising rates.

The sample world (MariaDB as Aurora MySQL, PostgreSQL beside it) is seeded, and the world's
`workload` runs in its own process at each RATE (operations per second, across both databases,
as `lakehouse workload --rate` does). `stream_source` captures every MySQL-side world table as
`lakehouse stream` does (shipped defaults: merges every 5 s). A probe thread commits a 5-row
transaction into a `pings` table ten times a second and notes when each COMMIT returned; for each
ping we record when the lake commit holding it was made (change log) and when the first merge
covering that commit finished (current state); load and pings go on for two merge intervals after
the measured window, so the last measured pings are merged as in a steady stream. Two designs, same run, same world:

* ours — merges in the stream's maintenance thread (`pipelines.capture.maintenance`);
* previous — the same merges in the capture thread, after a commit (the design before the
  split, reproduced with the runner's `on_commit` hook).

A rate is held when the workload reaches at least 95 % of it and the change-log lag does not grow.
Run by hand with the stack up:

    .venv/bin/python bench/bench_sustained.py [seconds per rate] [rate,rate,...] [patients]
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pymysql
from world_databases import world_databases  # bench/, the script's own directory

from connectors.events import Batch, TableId
from connectors.lake.commits import CommitRecord
from connectors.lake.config import LakeConfig
from connectors.lake.current import CurrentState
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from connectors.offsets import Offset
from pipelines.capture.runner import stream_source, sync_source
from pipelines.capture.sources import open_source
from pipelines.world import create_world
from pipelines.world.schema import TABLES

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
# Operations per second; "max": as fast as the workload process goes (it is single-threaded).
RATES = [
    None if r == "max" else float(r) for r in (sys.argv[2] if len(sys.argv) > 2 else "100,200,max").split(",")
]
PATIENTS = int(sys.argv[3]) if len(sys.argv) > 3 else 5_000
MERGE_EVERY = 5.0  # the shipped `lake.merge_every_seconds`
PING_RATE, PING_ROWS = 10.0, 5
TAIL = 2 * MERGE_EVERY + 3  # load and pings go on this long after the measured pings, so they merge


class Probe:
    """Wraps the source: which ping ids each batch handed over (so a commit can claim them)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.pending: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def stream(
        self, since: Offset, floors: Mapping[TableId, Offset], until: Offset | None = None
    ) -> Iterator[Batch]:
        for batch in self._inner.stream(since, floors, until):
            for changes in batch.changes:
                if changes.table.name == "pings":
                    self.pending.extend(changes.data["id"].to_pylist())
            yield batch


class NotingLake(Lake):
    """The lake; notes (time, commit seq) of each merge that brought `pings` up to date."""

    pings_merged: list[tuple[float, int]] = []

    def current(self, source: str) -> CurrentState:
        state = super().current(source)
        merge = state.merge

        def noted(*args: Any, **kwargs: Any) -> Any:
            results = merge(*args, **kwargs)
            for r in results:
                if r.table.endswith("__pings"):
                    self.pings_merged.append((time.time(), r.commit_seq))
            return results

        state.merge = noted  # type: ignore[method-assign]
        return state


def workload_process(
    settings: dict[str, Any], database: str, rate: float | None, seconds: float, seed: int, out: Any
) -> None:
    """The world's workload at `rate` for `seconds`, in a process of its own (no GIL shared)."""
    import psycopg2

    from pipelines.world.workload import Workload, WorkloadConfig

    my = pymysql.connect(**settings["mysql"], database=database, charset="utf8mb4", autocommit=True)
    pg = psycopg2.connect(**settings["postgres"], dbname=database)
    stats = Workload(my, pg, WorkloadConfig(seed=seed)).run(rate=rate, duration=seconds)
    out.put(stats.operations)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values, default=float("nan"))


def window(
    lake: NotingLake,
    config: MySQLSourceConfig,
    settings: dict[str, Any],
    rate: float | None,
    seed: int,
    design: str,
) -> str:
    committed: dict[int, float] = {}
    in_log: dict[int, tuple[float, int]] = {}
    inline = lake.current(config.name)
    last_inline = time.monotonic()
    source = Probe(open_source(config))

    def on_commit(record: CommitRecord) -> None:
        nonlocal last_inline
        now = time.time()
        for i in source.pending:
            in_log.setdefault(i, (now, record.seq))
        source.pending.clear()
        if design == "previous" and time.monotonic() - last_inline >= MERGE_EVERY:
            inline.merge(record)
            last_inline = time.monotonic()

    stop = threading.Event()
    streamer = threading.Thread(
        target=stream_source,
        args=(lake, source),
        kwargs={
            "stop": stop,
            "on_commit": on_commit,
            "merge_every_seconds": MERGE_EVERY if design == "ours" else 3600.0,
        },
    )
    streamer.start()
    time.sleep(2)
    lake.pings_merged.clear()
    results: Any = multiprocessing.get_context("spawn").Queue()
    worker = multiprocessing.get_context("spawn").Process(
        target=workload_process, args=(settings, config.database, rate, SECONDS + TAIL, seed, results)
    )
    worker.start()
    conn = pymysql.connect(**settings["mysql"], database=config.database)
    next_id = int(time.time() * 1000) * 100
    next_at = time.monotonic()
    deadline = time.time() + SECONDS  # pings committed after it are not measured, only keep the load on
    end = next_at + SECONDS + TAIL
    with conn.cursor() as cur:
        while time.monotonic() < end:
            ids = list(range(next_id, next_id + PING_ROWS))
            next_id += PING_ROWS
            cur.executemany("INSERT INTO pings VALUES (%s, 'ping')", [(i,) for i in ids])
            conn.commit()
            now = time.time()
            committed.update((i, now) for i in ids)
            next_at += 1.0 / PING_RATE
            time.sleep(max(0.0, next_at - time.monotonic()))
    worker.join()
    if worker.exitcode != 0:
        raise RuntimeError(
            f"the workload process failed (exit code {worker.exitcode}); see its traceback above"
        )
    operations = results.get()
    stop.set()
    with conn.cursor() as cur:  # wakes an idle stream so it sees the stop flag
        cur.execute("INSERT INTO pings VALUES (%s, 'stop')", (next_id,))
        conn.commit()
    streamer.join(timeout=600)
    source.close()
    conn.close()
    committed = {i: t for i, t in committed.items() if t < deadline}
    to_log = [in_log[i][0] - t for i, t in committed.items() if i in in_log]
    merges = sorted(lake.pings_merged)
    to_state = []
    for i, t in committed.items():
        if i in in_log:
            seq = in_log[i][1]
            done = next((m for m, s in merges if s >= seq), None)
            if done is not None:
                to_state.append(done - t)
    lost = len(committed) - len(to_log)
    return (
        f"{'max' if rate is None else f'{rate:.0f}':>6s} ops/s asked, {operations / (SECONDS + TAIL):6.0f} done   "
        f"commit -> change log p95 {p95(to_log):6.2f} s (max {max(to_log):6.2f})   "
        f"-> merged state p95 {p95(to_state):6.2f} s (max {max(to_state, default=float('nan')):6.2f}, "
        f"n={len(to_state)}/{len(committed)})" + (f"   {lost} pings never committed" if lost else "")
    )


def main() -> None:
    tag = uuid.uuid4().hex[:8]
    with world_databases(f"bench_{tag}") as world, tempfile.TemporaryDirectory() as lake_dir:
        stack = world.stack
        pw = stack.admin_password.get_secret_value()
        settings = {
            "mysql": {
                "host": stack.host,
                "port": stack.mariadb_port,
                "user": stack.admin_user,
                "password": pw,
            },
            "postgres": {
                "host": stack.host,
                "port": stack.postgres_port,
                "user": stack.admin_user,
                "password": pw,
            },
        }
        began = time.monotonic()
        create_world(world.mysql, world.postgres, seed=7, patients=PATIENTS)
        with world.mysql.cursor() as cur:
            cur.execute("CREATE TABLE pings (id BIGINT PRIMARY KEY, note VARCHAR(20))")
        tables = tuple(t.name for t in TABLES if t.engine == "mysql") + ("pings",)
        config = MySQLSourceConfig(
            name="sustained", host=stack.host, port=stack.mariadb_port, user=stack.cdc_user,
            password=stack.cdc_password, database=world.name, tables=tables, server_id=0,
        )  # fmt: skip
        lake = NotingLake(LakeConfig(root=lake_dir))
        source = open_source(config)
        try:
            sync_source(lake, source)
        finally:
            source.close()
        print(
            f"world of {PATIENTS:,} patients seeded and snapshotted in {time.monotonic() - began:.0f} s; "
            f"{len(tables)} MySQL tables streamed; {SECONDS:.0f} s per rate; merges every {MERGE_EVERY:g} s; "
            f"pings {PING_RATE:g} tx/s x {PING_ROWS} rows"
        )
        for design, label in (
            ("ours", "maintenance thread (ours)"),
            ("previous", "merge in the capture thread (previous)"),
        ):
            print(label)
            for n, rate in enumerate(RATES):
                seed = 1000 * (design == "previous") + n  # each run its own seed: new rows, new keys
                print("  " + window(lake, config, settings, rate, seed, design), flush=True)


if __name__ == "__main__":
    main()
