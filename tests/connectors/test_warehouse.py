"""The local DuckDB warehouse reads the lake: current state through Iceberg, change logs through Parquet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from connectors.catalog.warehouse import connect, query, register_lake
from connectors.events import TableId
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from tests.lake.helpers import changes, schema, snapshot_batch, stream_batch

REPO = Path(__file__).resolve().parents[2]
ODD = TableId("src", "health", "Odd Table")  # a name that needs quoting


def _lake(root: Path) -> Lake:
    lake = Lake(LakeConfig(root=str(root)))
    sch = schema((("id", pa.int64()), ("name", pa.string())), table=ODD)
    writer = lake.writer("src")
    writer.write(
        snapshot_batch(
            5, changes([("I", 5, {"id": i, "name": f"n{i}"}) for i in range(1, 6)], sch), tables=(ODD,)
        )
    )
    writer.write(
        stream_batch(
            5, 6, changes([("U", 6, {"id": 1, "name": "renamed"}), ("D", 6, {"id": 2, "name": "n2"})], sch)
        )
    )
    lake.current("src").merge()
    return lake


def test_current_state_and_change_log_views(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    con = connect()
    names = register_lake(con, lake, ["src"])
    assert sorted(names) == ["src.health__odd table", "src_changelog.health__odd table"]
    current = query(con, 'SELECT id, name FROM src."health__odd table" ORDER BY id').to_pylist()
    assert current == sorted(
        lake.current("src").read("health__odd table").select(["id", "name"]).to_pylist(),
        key=lambda r: r["id"],
    )
    assert [r["id"] for r in current] == [1, 3, 4, 5] and current[0]["name"] == "renamed"
    log = query(
        con, 'SELECT "Op", count(*) AS n FROM src_changelog."health__odd table" GROUP BY 1 ORDER BY 1'
    ).to_pylist()
    assert log == [{"Op": "D", "n": 1}, {"Op": "I", "n": 5}, {"Op": "U", "n": 1}]
    days = query(con, 'SELECT DISTINCT commit_date FROM src_changelog."health__odd table"').num_rows
    assert days == 1  # the Hive partition column is there


def test_lakehouse_query_prints_a_table(tmp_path: Path) -> None:
    _lake(tmp_path / "lake")
    config = tmp_path / "lakehouse.toml"
    config.write_text(
        f'[lake]\nroot = "{tmp_path / "lake"}"\n\n[[sources]]\nname = "src"\nkind = "postgres"\nport = 1\nuser = "u"\ndatabase = "d"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--config", str(config), "query", 'SELECT count(*) AS live FROM src."health__odd table"'],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.splitlines()[0].strip() == "live" and out.stdout.splitlines()[2].strip() == "4"
    assert (tmp_path / "lake" / "warehouse.duckdb").exists()
