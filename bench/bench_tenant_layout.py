"""Change-log capture with the tenant-partitioned layout vs without, in the same run (issue 16).

The same pre-built batches (ROWS rows of a patients-like table and, as many, of a claims-like
table that takes its tenant through the patient, `via`, its patient in the same batch for half the claims and in the batch before for the
other half; BATCH rows per table per commit; TENANTS
tenants, rows interleaved) are committed by a `LakeWriter` into two fresh local lakes: one without
`[tenancy]` (the baseline) and one with it. Rounds alternate the order so warm-up favours neither.
Printed per variant: rows/s (best round), objects written per commit; then what one tenant's
read of the change log lists and reads with each layout. Run by hand:
    .venv/bin/python bench/bench_tenant_layout.py [rows] [batch] [tenants] [rounds]
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402

from connectors.events import META_FIELDS, Batch, Column, TableChanges, TableId, TableSchema  # noqa: E402
from connectors.lake.config import LakeConfig  # noqa: E402
from connectors.lake.lake import Lake  # noqa: E402
from connectors.postgres.offset import Lsn  # noqa: E402
from connectors.tenancy import TenancyConfig  # noqa: E402

ARGS = [int(a) for a in sys.argv[1:] if a.isdigit()]
ROWS = ARGS[0] if len(ARGS) > 0 else 2_000_000
BATCH = ARGS[1] if len(ARGS) > 1 else 50_000
TENANTS = ARGS[2] if len(ARGS) > 2 else 20
ROUNDS = ARGS[3] if len(ARGS) > 3 else 2
SOURCE = "bench"
PATIENTS = TableId(SOURCE, "health", "patients")
CLAIMS = TableId(SOURCE, "health", "claims")
TENANCY = TenancyConfig(
    tables={
        f"{SOURCE}.patients": {"column": "tenant_id"},
        f"{SOURCE}.claims": {"via": {"table": "patients", "column": "patient_id", "key": "patient_id"}},
    }
)
T0 = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def _meta(n: int, start: int) -> dict[str, pa.Array]:
    return {
        "Op": pa.array(["I"] * n, pa.string()),
        "_commit_ts": pa.array(
            [T0 + dt.timedelta(microseconds=start + i) for i in range(n)], META_FIELDS[1].type
        ),
        "_position": pa.array([str(Lsn(start + i + 1)) for i in range(n)], pa.string()),
        "_txid": pa.array([str(start + i) for i in range(n)], pa.string()),
    }


def build_batches() -> list[Batch]:
    patients = TableSchema(
        PATIENTS,
        (Column("patient_id", pa.int64()), Column("tenant_id", pa.string()), Column("name", pa.string()),
         Column("height_cm", pa.int32()), Column("updated_at", pa.timestamp("us", tz="UTC"))),
        ("patient_id",),
    )  # fmt: skip
    claims = TableSchema(
        CLAIMS,
        (Column("claim_id", pa.int64()), Column("patient_id", pa.int64()), Column("amount", pa.float64()),
         Column("status", pa.string())),
        ("claim_id",),
    )  # fmt: skip
    tenants = [f"tenant-{t:02d}" for t in range(TENANTS)]
    batches = []
    for start in range(0, ROWS, BATCH):
        n = min(BATCH, ROWS - start)
        ids = pa.array(range(start, start + n), pa.int64())
        p = pa.table(
            {
                **_meta(n, start),
                "patient_id": ids,
                "tenant_id": pa.array([tenants[i % TENANTS] for i in range(start, start + n)]),
                "name": pa.array([f"patient {i}" for i in range(start, start + n)]),
                "height_cm": pa.array([150 + i % 50 for i in range(n)], pa.int32()),
                "updated_at": pa.array([T0] * n, pa.timestamp("us", tz="UTC")),
            },
            schema=patients.arrow_schema(),
        )
        c = pa.table(
            {
                **_meta(n, start),
                "claim_id": ids,
                # Half the claims' patients are in the same batch (a transaction), half in the one
                # before (the writer's cache of parents it staged).
                "patient_id": pa.array([max(0, i - BATCH // 2) for i in range(start, start + n)], pa.int64()),
                "amount": pa.array([float(i % 1000) for i in range(n)]),
                "status": pa.array(["submitted"] * n),
            },
            schema=claims.arrow_schema(),
        )
        end = start + n
        batches.append(
            Batch(
                start=Lsn(start), end=Lsn(end), changes=(TableChanges(patients, p), TableChanges(claims, c))
            )
        )
    return batches


def run(batches: list[Batch], root: Path, tenancy: TenancyConfig | None) -> tuple[float, float, Lake]:
    shutil.rmtree(root, ignore_errors=True)
    lake = Lake(LakeConfig(root=str(root)), tenancy)
    writer = lake.writer(SOURCE)
    first = batches[0]
    writer.write(Batch(start=None, end=first.start, snapshot=frozenset({PATIENTS, CLAIMS})))  # empty snapshot
    files = 0
    started = time.perf_counter()
    for batch in batches:
        record = writer.write(batch)
        assert record is not None
        files += sum(len(t.files) for t in record.tables.values()) + len(record.quarantine)
    seconds = time.perf_counter() - started
    rows = sum(b.num_rows for b in batches)
    return rows / seconds, files / len(batches), lake


def tenant_read(lake: Lake, partitioned: bool) -> tuple[int, int, int]:
    """Objects listed, objects read and bytes read to get one tenant's claims changes."""
    table = CLAIMS.lake_name
    prefix = f"changelog/{SOURCE}/{table}" + ("/tenant=tenant-07" if partitioned else "")
    listed = list(lake.storage.list_files(prefix))
    read = [e for e in listed if not e.path.split("/")[3].startswith("_")]
    return len(listed), len(read), sum(e.size for e in read)


def main() -> None:
    print(f"building {ROWS:,} rows per table in batches of {BATCH:,} over {TENANTS} tenants ...")
    batches = build_batches()
    best: dict[str, tuple[float, float]] = {}
    lakes: dict[str, Lake] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(ROUNDS):
            order = [("baseline", None), ("tenants", TENANCY)]
            for name, tenancy in order if r % 2 == 0 else order[::-1]:
                rate, per_commit, lake = run(batches, Path(tmp) / name, tenancy)
                print(f"  round {r + 1} {name:9s} {rate:12,.0f} rows/s  {per_commit:5.1f} objects/commit")
                if name not in best or rate > best[name][0]:
                    best[name] = (rate, per_commit)
                lakes[name] = lake
        base, ten = best["baseline"], best["tenants"]
        print(f"\ncapture, best of {ROUNDS} (2 tables x {ROWS:,} rows, {len(batches)} commits)")
        print(f"  baseline (no tenancy)   {base[0]:12,.0f} rows/s  {base[1]:5.1f} objects/commit")
        print(f"  tenant layout           {ten[0]:12,.0f} rows/s  {ten[1]:5.1f} objects/commit")
        print(f"  tenant layout / baseline: {ten[0] / base[0]:.3f}")
        print("\none tenant's read of the claims change log (objects listed / read / MB read)")
        for name, partitioned in (("baseline", False), ("tenants", True)):
            listed, read, size = tenant_read(lakes[name], partitioned)
            print(f"  {name:9s} {listed:6d} listed {read:6d} read {size / 1e6:9.1f} MB")


if __name__ == "__main__":
    main()
