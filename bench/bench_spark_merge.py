"""Spark MERGE INTO (local[2]) against the in-process merge, same run, and where Spark starts to win.

For each table size T (``--sizes``), two local lakes get the same current-state table of T rows
(written key-sorted as a snapshot load writes it, `bench_merge_scale.build`) and the same change
batch of C = T x ``--ratio`` changes (80 % updates of existing keys, 15 % inserts, 5 % deletes,
keys uniform over the table, `bench_merge_scale.next_batch`); the batch is committed to both
change logs (not timed). Then one lake is merged in-process (`CurrentState.merge`, a fresh
process's state: no caches) and the other with Spark (`merge_with_spark` in one local[2] JVM,
started and warmed up on a tiny table before the first size). Both must report the same upserts,
deletes and rows.

Printed per size: seconds per path and the ratio, the peak RSS of this Python process during the
in-process merge and of the JVM during the Spark merge; then the JVM start-up and its first (cold)
merge, and the crossover: the smallest measured size where Spark was faster, else the crossover
of straight lines fitted through each path's times (an extrapolation, said as such). The default
threshold for `connectors.lake.spark` is set from it; on Glue or EMR with more executors
the Spark line falls, so measure there too. Run by hand (the 10M build takes a few minutes):

    .venv/bin/python bench/bench_spark_merge.py [--sizes 100000,1000000,10000000] [--ratio 0.1] \
        [--driver-memory 6g]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_merge import TABLE  # noqa: E402
from bench.bench_merge_scale import Subject, build, next_batch  # noqa: E402
from connectors.lake.config import LakeConfig  # noqa: E402
from connectors.lake.current import MergeResult  # noqa: E402
from connectors.lake.lake import Lake  # noqa: E402
from connectors.lake.spark import local_spark_session, merge_with_spark, spark_for_lake  # noqa: E402
from devstack.spark import install  # noqa: E402


class PeakRss:
    """The peak resident memory of some processes while a block runs (sampled every 50 ms)."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        self.processes = processes
        self.peak = 0

    @contextmanager
    def watch(self) -> Iterator[PeakRss]:
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                total = 0
                for p in self.processes:
                    with suppress(psutil.Error):  # a process that ended counts as 0
                        total += p.memory_info().rss
                self.peak = max(self.peak, total)
                stop.wait(0.05)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()


def jvm_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "java"]


def merge_in_process(lake: Lake) -> MergeResult:
    [result] = lake.current(TABLE.source).merge()
    return result


def merge_spark(spark: Any, lake: Lake) -> MergeResult:
    current = lake.current(TABLE.source)
    latest = current.log.latest()
    assert latest is not None
    result = merge_with_spark(
        spark_for_lake(spark, lake), current, TABLE.lake_name, latest.heads[TABLE.lake_name]
    )
    assert result is not None
    return result


def prepare(workdir: str, name: str, rows: int, changes: int, seed: int) -> Lake:
    """A lake with a `rows`-row table and one committed batch of `changes` changes."""
    lake = Lake(LakeConfig(root=os.path.join(workdir, name)))
    subject = Subject(name, rows, lake)
    build(subject)
    lake.writer(TABLE.source).write(next_batch(subject, random.Random(seed), changes))
    return lake


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares line seconds = a + b * rows."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - b * mx, b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000,10000000", help="table rows, comma-separated")
    ap.add_argument("--ratio", type=float, default=0.1, help="changes per table row (1M into 10M: 0.1)")
    ap.add_argument("--driver-memory", default="6g")
    ap.add_argument("--keep", action="store_true", help="keep the lakes (in a temporary directory)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = tempfile.mkdtemp(prefix="bench-spark-merge-")
    jars = install().jars

    # JVM start-up and a first merge on a tiny table (class loading, JIT): reported, not compared.
    warm = prepare(workdir, "warm", 1_000, 100, seed=0)
    started = time.perf_counter()
    spark = local_spark_session(warm, jars, driver_memory=args.driver_memory)
    startup = time.perf_counter() - started
    jvm = PeakRss(jvm_processes())
    with jvm.watch():
        started = time.perf_counter()
        merge_spark(spark, warm)
        first = time.perf_counter() - started
    jvm_idle = jvm.peak

    me = psutil.Process()
    print(f"{'rows':>11} {'changes':>9} {'in-process s':>13} {'spark s':>9} {'spark/in':>9} "
          f"{'py peak MB':>11} {'jvm peak MB':>12}")  # fmt: skip
    measured: list[tuple[int, float, float]] = []
    for n, rows in enumerate(sizes):
        changes = max(1, int(rows * args.ratio))
        ref = prepare(workdir, f"inproc-{rows}", rows, changes, seed=n + 1)
        lake = prepare(workdir, f"spark-{rows}", rows, changes, seed=n + 1)
        py = PeakRss([me])
        with py.watch():
            started = time.perf_counter()
            want = merge_in_process(ref)
            in_process = time.perf_counter() - started
        sp = PeakRss(jvm_processes())
        with sp.watch():
            started = time.perf_counter()
            got = merge_spark(spark, lake)
            with_spark = time.perf_counter() - started
        assert (got.upserts, got.deletes, got.rows) == (want.upserts, want.deletes, want.rows), (got, want)
        measured.append((rows, in_process, with_spark))
        print(
            f"{rows:>11,} {changes:>9,} {in_process:>13.2f} {with_spark:>9.2f} {with_spark / in_process:>9.2f} "
            f"{py.peak / 2**20:>11.0f} {sp.peak / 2**20:>12.0f}",
            flush=True,
        )
        if not args.keep:
            for name in (f"inproc-{rows}", f"spark-{rows}"):
                shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    spark.stop()

    print(f"\nJVM start-up (local[2], driver {args.driver_memory}): {startup:.1f} s; "
          f"first merge on a 1,000-row table (cold JVM): {first:.1f} s; JVM RSS then {jvm_idle / 2**20:.0f} MB")  # fmt: skip
    wins = [rows for rows, ours, theirs in measured if theirs < ours]
    if wins:
        print(
            f"crossover: Spark local[2] was faster from {min(wins):,} rows (smallest measured size where it won)"
        )
    else:
        a_in, b_in = fit([(r, t) for r, t, _ in measured])
        a_sp, b_sp = fit([(r, t) for r, _, t in measured])
        if b_in > b_sp:
            cross = (a_sp - a_in) / (b_in - b_sp)
            print(
                f"crossover: Spark local[2] won at no measured size; straight lines through the times "
                f"cross at about {cross:,.0f} rows (extrapolated: in-process {b_in * 1e6:.2f} s per M rows, "
                f"Spark {b_sp * 1e6:.2f} s per M rows + {a_sp:.1f} s fixed)"
            )
        else:
            print(
                "crossover: none on local[2]: Spark's time grows at least as fast as the in-process "
                f"merge's ({b_sp * 1e6:.2f} vs {b_in * 1e6:.2f} s per M rows); Spark only pays with more cores"
            )
    if args.keep:
        print(f"lakes kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
