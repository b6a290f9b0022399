"""What time-based snapshot retention costs a merge: the same merges with and without it.

One 100k-row current-state table (local lake, SQLite catalog) gets the same stream of small
commits (200 changed rows each), merged after each commit with `lake.current(...).merge()`:
- "retain 1h": the lake's default retention (every snapshot superseded within the hour is kept,
  so the table's metadata grows with every merge of the run), the maintenance pass after the run;
- "keep 3, delete now": retention by count only (age 0, grace 0) and the maintenance pass right
  after each merge, timed with it: the rule before this change, on the new code;
- "retain 10s": the steady state of a long run in small: each merge expires the snapshot that
  crossed the age while about a hundred stay, so it computes orphans against all of them;
- "baseline": with `--baseline DIR`, the same script run in a subprocess against another checkout
  of `connectors/` (e.g. ``git archive HEAD connectors | tar -x -C /tmp/base``): the code before.
Merge time is reported for the first and the last 50 merges; a merge-time growth in "retain 1h"
is the cost of carrying an hour of snapshots in every metadata.json. Run by hand:

    .venv/bin/python bench/bench_retention.py [--rows 100000] [--merges 300] [--baseline /tmp/base]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow as pa

from connectors.events import Batch, Column, TableChanges, TableId, TableSchema
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.postgres.offset import Lsn

TABLE = TableId("bench", "health", "patients")
SCHEMA = TableSchema(
    TABLE, (Column("id", pa.int64()), Column("name", pa.string()), Column("n", pa.int64())), ("id",)
)
NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


def changes(ids: list[int], op: str, lsn: int, tag: str) -> TableChanges:
    n = len(ids)
    return TableChanges(
        SCHEMA,
        pa.table(
            {
                "Op": pa.array([op] * n, pa.string()),
                "_commit_ts": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
                "_position": pa.array([str(Lsn(lsn))] * n, pa.string()),
                "_txid": pa.array([str(lsn)] * n, pa.string()),
                "id": pa.array(ids, pa.int64()),
                "name": pa.array([f"{tag}-{i}" for i in ids], pa.string()),
                "n": pa.array([lsn] * n, pa.int64()),
            },
            schema=SCHEMA.arrow_schema(),
        ),
    )


def run(variant: str, rows: int, merges: int, batch_rows: int, workdir: str) -> dict[str, object]:
    """One variant in this interpreter's code: per-merge times and the table's size at the end."""
    config: dict[str, object] = {"root": f"{workdir}/{variant.replace(' ', '_')}"}
    count_only = variant.startswith("keep 3")
    if count_only:
        config["retention"] = {"keep_snapshots": 3, "max_snapshot_age_seconds": 0, "orphan_grace_seconds": 0}
    if variant == "retain 10s":  # steady state: every merge expires one of ~100 kept snapshots
        config["retention"] = {"max_snapshot_age_seconds": 10}
    lake = Lake(LakeConfig(**config))  # type: ignore[arg-type]
    writer = lake.writer("bench")
    writer.write(
        Batch(
            start=None,
            end=Lsn(1),
            changes=(changes(list(range(rows)), "I", 1, "seed"),),
            snapshot=frozenset({TABLE}),
            floors={TABLE: Lsn(1)},
        )
    )
    current = lake.current("bench")
    current.merge()
    times = []
    for i in range(merges):
        lsn = 2 + i
        ids = [(lsn * 7919 + k * 104729) % rows for k in range(batch_rows)]
        writer.write(
            Batch(start=Lsn(lsn - 1), end=Lsn(lsn), changes=(changes(sorted(set(ids)), "U", lsn, "u"),))
        )
        started = time.perf_counter()
        current.merge()
        if count_only:
            current.delete_orphans()
        times.append(time.perf_counter() - started)
    maintenance = None
    if hasattr(current, "delete_orphans") and not count_only:
        started = time.perf_counter()
        current.delete_orphans()
        maintenance = time.perf_counter() - started
    table = current.load(TABLE.lake_name)
    assert table is not None
    on_disk = list(lake.storage.list_files(f"current/bench/{TABLE.lake_name}"))
    return {
        "variant": variant,
        "first": statistics.mean(times[:50]),
        "last": statistics.mean(times[-50:]),
        "p95": sorted(times)[int(0.95 * len(times))],
        "total": sum(times),
        "snapshots": len(table.snapshots()),
        "metadata_kb": os.path.getsize(table.metadata_location.removeprefix("file://")) / 1024,
        "files": len(on_disk),
        "maintenance_s": maintenance,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--merges", type=int, default=300)
    parser.add_argument("--batch-rows", type=int, default=200)
    parser.add_argument("--baseline", help="a checkout whose connectors/ is the code before (subprocess)")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one variant, JSON out (the subprocess)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        if args.only:
            print(json.dumps(run(args.only, args.rows, args.merges, args.batch_rows, workdir)))
            return
        results = []
        if args.baseline:
            out = subprocess.run(
                [sys.executable, __file__, "--only", "baseline", "--rows", str(args.rows),
                 "--merges", str(args.merges), "--batch-rows", str(args.batch_rows)],
                env={**os.environ, "PYTHONPATH": args.baseline, "PYTHONDONTWRITEBYTECODE": "1"},
                check=True, capture_output=True, text=True, cwd=args.baseline,
            )  # fmt: skip
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        for variant in ("keep 3, delete now", "retain 1h", "retain 10s"):
            results.append(run(variant, args.rows, args.merges, args.batch_rows, workdir))
    print(f"{args.merges} merges of {args.batch_rows} updated rows into {args.rows:,} rows (local lake)")
    print(f"{'variant':<20} {'first50 ms':>10} {'last50 ms':>10} {'p95 ms':>8} {'total s':>8} "
          f"{'snapshots':>9} {'meta KB':>8} {'files':>6} {'maint s':>8}")  # fmt: skip
    for r in results:
        maint = r["maintenance_s"]
        print(
            f"{r['variant']:<20} {1000 * r['first']:>10.1f} {1000 * r['last']:>10.1f} "  # type: ignore[operator]
            f"{1000 * r['p95']:>8.1f} {r['total']:>8.1f} {r['snapshots']:>9} "  # type: ignore[operator]
            f"{r['metadata_kb']:>8.0f} {r['files']:>6} {'' if maint is None else f'{maint:.2f}':>8}"
        )


if __name__ == "__main__":
    main()
