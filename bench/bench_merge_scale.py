"""Current-state merge cost against table size: the same 10,000-change batch into 1M and 10M rows.

Two current-state tables (one source each, one local lake, SQLite catalog) are loaded with
`--small` and `--large` rows, key-sorted as a snapshot load writes them; then both get the same
sequence of batches: per batch `--batch-rows` changes, 80 % updates of existing keys, 15 % inserts
of new keys and 5 % deletes, keys drawn uniformly over each table's own key range (so a batch
touches every part of either table, as a random 10k-key batch does). Each batch is committed to
the change log (not timed) and merged (timed, including any compaction the policy triggers inside
that merge, so the mean is the amortised cost).

Two phases, the tables alternating batch by batch:
- warm: one `CurrentState` per table across `--batches` merges (a streaming `sync` process: its
  manifest and key-column caches stay warm);
- cold: a fresh `CurrentState` for each of `--cold-batches` merges (a `sync --once` run or a
  Dagster run: nothing cached).

Printed: seconds per merge (mean, max) per table and phase, the ratio large/small, the compactions
seen, the live files at the end and the peak RSS. The initial tables are written directly with the
lake's data file writer in key order, in chunks (not through the change log), so the 10M build takes
well under a minute. Run by hand:

    .venv/bin/python bench/bench_merge_scale.py [--small 1000000] [--large 10000000] \
        [--batches 12] [--cold-batches 6] [--batch-rows 10000]
"""

from __future__ import annotations

import argparse
import logging
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_merge import TABLE, as_changes, rows_table  # noqa: E402
from connectors.events import Batch  # noqa: E402
from connectors.lake.config import LakeConfig  # noqa: E402
from connectors.lake.current import COMMIT_SEQ_PROPERTY, CurrentState  # noqa: E402
from connectors.lake.iceberg_commit import commit_snapshot  # noqa: E402
from connectors.lake.iceberg_files import write_chunks  # noqa: E402
from connectors.lake.lake import Lake  # noqa: E402
from connectors.lake.live_rows import live_files  # noqa: E402
from connectors.postgres.offset import Lsn  # noqa: E402

CHUNK_ROWS = 500_000


@dataclass
class Subject:
    """One current-state table under test and what was measured on it."""

    name: str
    rows: int
    lake: Lake
    next_id: int = 0
    deleted: set[int] = field(default_factory=set)
    lsn: int = 1
    warm: list[float] = field(default_factory=list)
    cold: list[float] = field(default_factory=list)
    state: CurrentState | None = None

    source: str = TABLE.source

    def live_count(self) -> int:
        return self.next_id - len(self.deleted)


def state_chunks(target: pa.Schema, rows: int) -> Iterator[pa.Table]:
    """The initial rows in the current state's schema, key order, vectorised (no Python rows)."""
    for start in range(0, rows, CHUNK_ROWS):
        ids = pa.array(range(start, min(start + CHUNK_ROWS, rows)), pa.int64())
        n = len(ids)
        text = pc.cast(ids, pa.string())
        columns = {
            "id": ids,
            "patient_id": pc.remainder(ids, 50_000),
            "amount": pc.remainder(pc.multiply(ids, 7919), 10_000_000)
            .cast(pa.decimal128(21, 2))
            .cast(pa.decimal128(12, 2)),
            "status": pa.nulls(n, pa.string()).fill_null("base"),
            "note": pc.binary_join_element_wise("note ", text, " base", ""),
            "updated_at": pa.array([0] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "_commit_ts": pa.array([0] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "_position": pa.array([str(Lsn(1))] * n, pa.string()),
            "_seq": pc.add(ids, 1 << 32),
        }
        yield pa.table({f.name: pc.cast(columns[f.name], f.type) for f in target}, schema=target)


def build(subject: Subject) -> None:
    """Create the table through a tiny snapshot load, then replace its rows by `rows` rows."""
    writer = subject.lake.writer(subject.source)
    seed = rows_table([0], random.Random(0), "base")
    writer.write(
        Batch(
            start=None,
            end=Lsn(1),
            changes=(as_changes(seed, "I", 1),),
            snapshot=frozenset({TABLE}),
            floors={TABLE: Lsn(1)},
        )
    )
    state = subject.lake.current(subject.source)
    state.merge()
    table = state.load(TABLE.lake_name)
    assert table is not None
    added = write_chunks(
        table, table.schema().as_arrow(), state_chunks(table.schema().as_arrow(), subject.rows)
    )
    commit_snapshot(
        table,
        added=added,
        removed=live_files(table).all,
        removes_all=True,
        properties={COMMIT_SEQ_PROPERTY: str(state.applied_seq(table))},
        retention=state.retention,
        now_ms=int(time.time() * 1000),
    )
    subject.next_id = subject.rows


def next_batch(subject: Subject, rng: random.Random, batch_rows: int) -> Batch:
    """80 % updates, 15 % inserts, 5 % deletes; keys uniform over the table's own key range."""
    n_upd, n_del = int(batch_rows * 0.8), int(batch_rows * 0.05)
    n_ins = batch_rows - n_upd - n_del
    picked: list[int] = []
    seen: set[int] = set()
    while len(picked) < n_upd + n_del:
        k = rng.randrange(subject.next_id)
        if k not in seen and k not in subject.deleted:
            seen.add(k)
            picked.append(k)
    upd, dele = sorted(picked[:n_upd]), sorted(picked[n_upd:])
    ins = list(range(subject.next_id, subject.next_id + n_ins))
    subject.next_id += n_ins
    subject.deleted.update(dele)
    subject.lsn += 1
    lsn = subject.lsn
    tag = f"b{lsn}"
    return Batch(
        start=Lsn(lsn - 1),
        end=Lsn(lsn),
        changes=(
            as_changes(rows_table(upd, rng, tag), "U", lsn),
            as_changes(rows_table(ins, rng, tag), "I", lsn),
            as_changes(rows_table(dele, rng, tag), "D", lsn),
        ),
    )


class _CompactionCounter(logging.Handler):
    """Counts the merges that compacted (the merge logs "compacting (...)")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "compacting" in message:
            self.messages.append(message)


def merge_once(subject: Subject, batch: Batch, cold: bool) -> float:
    subject.lake.writer(subject.source).write(batch)
    if cold or subject.state is None:
        subject.state = subject.lake.current(subject.source)
    started = time.perf_counter()
    subject.state.merge()
    elapsed = time.perf_counter() - started
    (subject.cold if cold else subject.warm).append(elapsed)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=1_000_000)
    ap.add_argument("--large", type=int, default=10_000_000)
    ap.add_argument("--batches", type=int, default=12, help="warm merges per table")
    ap.add_argument("--cold-batches", type=int, default=6, help="cold merges per table")
    ap.add_argument("--batch-rows", type=int, default=10_000)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    counter = _CompactionCounter()
    logger = logging.getLogger("connectors.lake.current")
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    workdir = tempfile.mkdtemp(prefix="bench-merge-scale-")
    try:
        subjects = [
            Subject(name, rows, Lake(LakeConfig(root=f"{workdir}/{name}")))
            for name, rows in (("small", args.small), ("large", args.large))
        ]
        for s in subjects:
            started = time.perf_counter()
            build(s)
            print(f"built {s.name}: {s.rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
        rngs = {s.name: random.Random(42) for s in subjects}
        for phase, count in (("warm", args.batches), ("cold", args.cold_batches)):
            for i in range(count):
                for s in subjects:
                    before = len(counter.messages)
                    elapsed = merge_once(s, next_batch(s, rngs[s.name], args.batch_rows), phase == "cold")
                    if args.verbose or len(counter.messages) > before:
                        note = "; ".join(counter.messages[before:])
                        print(f"  {phase} {i} {s.name}: {elapsed:.2f} s {note}", flush=True)
        for s in subjects:
            state = s.lake.current(s.source)
            table = state.load(TABLE.lake_name)
            assert table is not None
            assert state.live_rows(table) == s.live_count(), (state.live_rows(table), s.live_count())
            files = live_files(table)
            print(
                f"{s.name}: {s.rows:,} rows at start, {s.live_count():,} at end; live files: "
                f"{len(files.data)} data, {len(files.deletes)} delete; "
                f"{files.deleted_rows:,} deleted rows"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    small, large = subjects
    print(
        f"\nbatches of {args.batch_rows:,} changes (80% updates, 15% inserts, 5% deletes); "
        f"{len(counter.messages)} compaction(s) in all"
    )
    print(f"{'phase':<6}{'table':>14}{'mean s/merge':>14}{'max s':>8}{'ratio large/small':>20}")
    for phase in ("warm", "cold"):
        a, b = getattr(small, phase), getattr(large, phase)
        if not a or not b:
            continue
        for s, times in ((small, a), (large, b)):
            print(f"{phase:<6}{s.rows:>14,}{statistics.mean(times):>14.2f}{max(times):>8.2f}", end="")
            print(f"{statistics.mean(b) / statistics.mean(a):>20.2f}" if s is large else "")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
