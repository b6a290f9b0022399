"""Current-state merge: changed rows/s into a one-million-row table, ours vs pyiceberg's `upsert`.

Both sides start from the same 1M-row Iceberg table (SQLite catalog, local warehouse) and apply the
same batches of changed rows (updates of existing keys and inserts of new ones). Ours goes the
whole way: change log commit (staged Parquet + commit record) and then the Iceberg merge; the
baseline is `Table.upsert(batch, join_cols=["id"])` on the same data. Our merge is merge-on-read
(one data file and one position-delete file per merge) and compacts, inside the timed loop, the
files the default `CompactionPolicy` picks (a full size tier of small files, data files over 20 %
deleted, delete files past 16) — run more batches to see that cost amortised; how the merge cost
grows with the table is `bench_merge_scale.py`. The key
column cache of `CurrentState` is warm after the first merge, as in a streaming run. Run by hand:

    .venv/bin/python bench/bench_merge.py [--rows 1000000] [--batches 5] [--batch-rows 20000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import logging
import random
import resource
import shutil
import tempfile
import time

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

from connectors.events import Batch, Column, TableChanges, TableId, TableSchema
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.postgres.offset import Lsn

TABLE = TableId("bench", "health", "claims")
SCHEMA = TableSchema(
    TABLE,
    (
        Column("id", pa.int64()),
        Column("patient_id", pa.int64()),
        Column("amount", pa.decimal128(12, 2)),
        Column("status", pa.string()),
        Column("note", pa.string()),
        Column("updated_at", pa.timestamp("us", tz="UTC")),
    ),
    ("id",),
)
NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


def rows_table(ids: list[int], rng: random.Random, tag: str) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "patient_id": pa.array([i % 50_000 for i in ids], pa.int64()),
            "amount": pa.array(
                [decimal.Decimal(rng.randint(100, 10_000_000)).scaleb(-2) for _ in ids], pa.decimal128(12, 2)
            ),
            "status": pa.array([tag] * n, pa.string()),
            "note": pa.array([f"note {i} {tag}" for i in ids], pa.string()),
            "updated_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def as_changes(data: pa.Table, op: str, lsn: int) -> TableChanges:
    n = data.num_rows
    meta = {
        "Op": pa.array([op] * n, pa.string()),
        "_commit_ts": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        "_position": pa.array([str(Lsn(lsn))] * n, pa.string()),
        "_txid": pa.array([str(lsn)] * n, pa.string()),
    }
    cols = {**meta, **{c: data[c] for c in data.column_names}}
    return TableChanges(SCHEMA, pa.table(cols, schema=SCHEMA.arrow_schema()))


def make_batches(rows: int, batches: int, batch_rows: int, seed: int = 1) -> list[tuple[pa.Table, pa.Table]]:
    """Per batch: (updates of existing keys, inserts of new keys) — 80% / 20%."""
    rng = random.Random(seed)
    out = []
    next_id = rows
    for b in range(batches):
        n_upd = int(batch_rows * 0.8)
        upd_ids = sorted(rng.sample(range(rows), n_upd))
        ins_ids = list(range(next_id, next_id + batch_rows - n_upd))
        next_id += len(ins_ids)
        out.append((rows_table(upd_ids, rng, f"upd{b}"), rows_table(ins_ids, rng, f"ins{b}")))
    return out


def run_ours(base: pa.Table, batches: list[tuple[pa.Table, pa.Table]], workdir: str) -> tuple[float, int]:
    lake = Lake(LakeConfig(root=f"{workdir}/ours"))
    writer = lake.writer("bench")
    writer.write(
        Batch(
            start=None,
            end=Lsn(1),
            changes=(as_changes(base, "I", 1),),
            snapshot=frozenset({TABLE}),
            floors={TABLE: Lsn(1)},
        )
    )
    current = lake.current("bench")
    current.merge()
    compactions = _CompactionCounter()
    logging.getLogger("connectors.lake.current").addHandler(compactions)
    logging.getLogger("connectors.lake.current").setLevel(logging.INFO)
    changed = 0
    started = time.perf_counter()
    for i, (upd, ins) in enumerate(batches):
        lsn = 2 + i
        writer.write(
            Batch(
                start=Lsn(lsn - 1),
                end=Lsn(lsn),
                changes=(as_changes(upd, "U", lsn), as_changes(ins, "I", lsn)),
            )
        )
        current.merge()
        changed += upd.num_rows + ins.num_rows
    elapsed = time.perf_counter() - started
    logging.getLogger("connectors.lake.current").removeHandler(compactions)
    assert current.read(TABLE.lake_name).num_rows == base.num_rows + sum(b[1].num_rows for b in batches)
    print(f"ours: {len(batches)} merges, {compactions.count} of them compactions")
    return elapsed, changed


class _CompactionCounter(logging.Handler):
    """Counts the merges that compacted (the merge logs "compacting (...)")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "compacting" in record.getMessage():
            self.count += 1


def run_pyiceberg(
    base: pa.Table, batches: list[tuple[pa.Table, pa.Table]], workdir: str
) -> tuple[float, int]:
    catalog = SqlCatalog("b", uri=f"sqlite:///{workdir}/pyice.db", warehouse=f"file://{workdir}/pyice")
    catalog.create_namespace("b")
    schema = pa.schema([f.with_nullable(True) for f in base.schema])
    table = catalog.create_table("b.claims", schema=schema)
    table.append(base.cast(schema))
    changed = 0
    started = time.perf_counter()
    for upd, ins in batches:
        batch = pa.concat_tables([upd, ins]).cast(schema)
        table.upsert(batch, join_cols=["id"])
        changed += batch.num_rows
    elapsed = time.perf_counter() - started
    assert table.scan().to_arrow().num_rows == base.num_rows + sum(b[1].num_rows for b in batches)
    return elapsed, changed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batches", type=int, default=5)
    ap.add_argument("--batch-rows", type=int, default=20_000)
    args = ap.parse_args()
    base = rows_table(list(range(args.rows)), random.Random(0), "base")
    batches = make_batches(args.rows, args.batches, args.batch_rows)
    workdir = tempfile.mkdtemp(prefix="bench-merge-")
    try:
        ours_s, ours_n = run_ours(base, batches, workdir)
        ours_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        base_s, base_n = run_pyiceberg(base, batches, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ours_rate, base_rate = ours_n / ours_s, base_n / base_s
    print(
        f"table rows: {args.rows:,}; batches: {args.batches} x {args.batch_rows:,} changed rows (80% updates)"
    )
    print(f"ours (change log commit + Iceberg merge): {ours_rate:12,.0f} changed rows/s  ({ours_s:.2f} s)")
    print(f"baseline pyiceberg Table.upsert:          {base_rate:12,.0f} changed rows/s  ({base_s:.2f} s)")
    print(
        f"ratio: {ours_rate / base_rate:.1f}x   peak RSS: {ours_rss:.0f} MB after ours (data generation and "
        f"the initial 1M-row load included), {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
        "after the baseline"
    )


if __name__ == "__main__":
    main()
