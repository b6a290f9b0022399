"""Merge-on-read with key types Arrow cannot binary-search (BIGINT UNSIGNED keys are decimal(20,0))."""

from __future__ import annotations

import decimal
from pathlib import Path

import pyarrow as pa

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from tests.lake.helpers import PATIENTS, changes, schema, snapshot_batch, stream_batch


def test_decimal_keys_merge_on_read(tmp_path: Path) -> None:
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    sch = schema([("id", pa.decimal128(20, 0)), ("name", pa.string())])
    big = decimal.Decimal(2**64 - 1)
    ids = [decimal.Decimal(i) for i in range(1, 50)] + [big]
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": "v0"}) for i in ids], sch)))
    lake.current("src").merge()
    w.write(
        stream_batch(
            10,
            20,
            changes(
                [("U", 11, {"id": big, "name": "v1"}), ("D", 12, {"id": decimal.Decimal(3), "name": None})],
                sch,
            ),
        )
    )
    lake.current("src").merge()
    state = {r["id"]: r["name"] for r in lake.current("src").read(PATIENTS.lake_name).to_pylist()}
    assert state[big] == "v1" and decimal.Decimal(3) not in state and len(state) == 49


def test_composite_keys_merge_on_read(tmp_path: Path) -> None:
    from connectors.events import Column, TableId, TableSchema

    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    table = TableId("src", "health", "plan_enrollments")
    sch = TableSchema(
        table,
        (
            Column("patient_id", pa.decimal128(20, 0)),
            Column("plan_id", pa.int32()),
            Column("note", pa.string()),
        ),
        ("patient_id", "plan_id"),
    )
    rows = [
        ("I", 10, {"patient_id": decimal.Decimal(p), "plan_id": q, "note": "v0"})
        for p in range(1, 20)
        for q in (1, 2)
    ]
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes(rows, sch), tables=(table,)))
    lake.current("src").merge()
    w.write(
        stream_batch(
            10,
            20,
            changes(
                [
                    ("U", 11, {"patient_id": decimal.Decimal(5), "plan_id": 2, "note": "v1"}),
                    ("D", 12, {"patient_id": decimal.Decimal(6), "plan_id": 1, "note": None}),
                ],
                sch,
            ),
        )
    )
    lake.current("src").merge()
    state = {
        (r["patient_id"], r["plan_id"]): r["note"]
        for r in lake.current("src").read(table.lake_name).to_pylist()
    }
    assert (
        state[(decimal.Decimal(5), 2)] == "v1" and (decimal.Decimal(6), 1) not in state and len(state) == 37
    )


def test_string_keys_merge_on_read(tmp_path: Path) -> None:
    """pyiceberg reads strings back as large_string; the changed keys arrive as string."""
    from connectors.events import Column, TableId, TableSchema

    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    table = TableId("src", "public", "tenant_metadata")
    sch = TableSchema(table, (Column("tenant_id", pa.string()), Column("tier", pa.string())), ("tenant_id",))
    w = lake.writer("src")
    w.write(
        snapshot_batch(
            10,
            changes([("I", 10, {"tenant_id": f"t-{i:03d}", "tier": "free"}) for i in range(30)], sch),
            tables=(table,),
        )
    )
    lake.current("src").merge()
    w.write(stream_batch(10, 20, changes([("U", 11, {"tenant_id": "t-007", "tier": "gold"})], sch)))
    lake.current("src").merge()
    state = {r["tenant_id"]: r["tier"] for r in lake.current("src").read(table.lake_name).to_pylist()}
    assert state["t-007"] == "gold" and len(state) == 30
