"""Integer key columns of current-state tables are written DELTA_BINARY_PACKED and uncompressed.

A merge in a fresh process reads every key column of the table (connectors/lake/row_locator.py), so
the key columns are encoded for that read; every other column keeps dictionary encoding and the
table's codec. Checked on the files of real merges (a snapshot load, then stream merges with
updates and deletes), read back by pyarrow, pyiceberg and DuckDB; a table can opt out.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.current import CurrentState
from connectors.lake.iceberg_files import KEY_ENCODING_PROPERTY
from connectors.lake.lake import Lake
from connectors.lake.live_rows import live_files
from tests.lake.helpers import PATIENTS, changes, schema, snapshot_batch, stream_batch
from tests.lake.test_current import duckdb_scan, plain

TAGGED = schema((("id", pa.int64()), ("name", pa.string()), ("tags", pa.list_(pa.string()))))


@pytest.fixture
def lake(tmp_path) -> Lake:  # type: ignore[no-untyped-def]
    return Lake(LakeConfig(root=str(tmp_path / "lake")))


def load_and_change(lake: Lake) -> tuple[CurrentState, dict[int, str], int]:
    """A snapshot of 3,000 rows, then two stream merges that update and delete some of them."""
    model = {i: f"p{i % 7}" for i in range(3000)}
    rows = [("I", 10, {"id": k, "name": v, "tags": [v, "x"]}) for k, v in model.items()]
    lake.writer("src").write(snapshot_batch(10, changes(rows, TAGGED)))
    state = lake.current("src")
    state.merge()
    lsn = 10
    for step in range(2):
        batch = []
        for k in range(step, 3000, 97):
            lsn += 1
            if k % 3 == 0:
                model.pop(k, None)
                batch.append(("D", lsn, {"id": k, "name": None, "tags": None}))
            else:
                model[k] = f"u{step}-{k}"
                batch.append(("U", lsn, {"id": k, "name": model[k], "tags": [model[k]]}))
        lake.writer("src").write(stream_batch(lsn - len(batch), lsn, changes(batch, TAGGED)))
        state.merge()
    return state, model, lsn


def column_chunks(lake: Lake, column: str) -> list[pq.ColumnChunkMetaData]:
    table = lake.current("src").load(PATIENTS.lake_name)
    assert table is not None
    out = []
    for entry in live_files(table).data:
        with table.io.new_input(entry.data_file.file_path).open() as f:
            meta = pq.ParquetFile(f).metadata
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            out += [rg.column(c) for c in range(rg.num_columns) if rg.column(c).path_in_schema == column]
    return out


def test_integer_keys_are_delta_encoded_uncompressed_and_other_columns_keep_theirs(lake: Lake) -> None:
    state, model, lsn = load_and_change(lake)
    keys = column_chunks(lake, "id")
    assert len(keys) >= 3  # the snapshot's file and each merge's upserts
    for chunk in keys:
        assert "DELTA_BINARY_PACKED" in chunk.encodings and chunk.compression == "UNCOMPRESSED"
        assert not {"PLAIN_DICTIONARY", "RLE_DICTIONARY"} & set(chunk.encodings)
    for column in ("name", "tags.list.element"):  # a nested column's leaf keeps its dictionary
        for chunk in column_chunks(lake, column):
            assert "RLE_DICTIONARY" in chunk.encodings and chunk.compression == "ZSTD", (column, chunk)
    want = sorted(({"id": k, "name": v} for k, v in model.items()), key=lambda r: r["id"])
    assert plain(state.read(PATIENTS.lake_name)) == want
    assert plain(duckdb_scan(lake)) == want
    # A fresh process locates rows through the delta-encoded keys: one more merge stays exact.
    lake.writer("src").write(
        stream_batch(lsn, lsn + 1, changes([("U", lsn + 1, {"id": 1, "name": "z", "tags": []})], TAGGED))
    )
    [result] = CurrentState(lake.storage, lake.catalog, "src").merge()
    model[1] = "z"
    assert result.rows == len(model)
    assert {r["id"]: r["name"] for r in plain(state.read(PATIENTS.lake_name))} == model


def test_a_table_can_opt_out_and_a_bad_value_names_the_property(lake: Lake) -> None:
    lake.writer("src").write(
        snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "a", "tags": []})], TAGGED))
    )
    state = lake.current("src")
    state.merge()
    table = state.load(PATIENTS.lake_name)
    assert table is not None
    with table.transaction() as tx:
        tx.set_properties({KEY_ENCODING_PROPERTY: "plain"})
    lake.writer("src").write(
        stream_batch(10, 11, changes([("U", 11, {"id": 1, "name": "b", "tags": []})], TAGGED))
    )
    state.merge()
    encodings = [set(c.encodings) for c in column_chunks(lake, "id")]
    assert any("DELTA_BINARY_PACKED" not in e for e in encodings)  # the upsert's file: plain

    table = state.load(PATIENTS.lake_name)
    assert table is not None
    with table.transaction() as tx:
        tx.set_properties({KEY_ENCODING_PROPERTY: "delta-ish"})
    lake.writer("src").write(
        stream_batch(11, 12, changes([("U", 12, {"id": 1, "name": "c", "tags": []})], TAGGED))
    )
    with pytest.raises(ValueError, match=r"lakehouse\.key-encoding='delta-ish'"):
        state.merge()
    assert plain(state.read(PATIENTS.lake_name)) == [{"id": 1, "name": "b"}]  # nothing half-written
