"""The lake's commit protocol: atomic offsets, compare-and-swap, replay, roll-forward — locally and on S3."""

from __future__ import annotations

import pyarrow as pa
import pytest

from connectors.lake.commits import CommitConflictError, OffsetMismatchError
from connectors.lake.storage import Storage
from connectors.lake.writer import LakeWriter
from connectors.postgres.offset import Lsn
from tests.lake.helpers import PATIENTS, changes, schema, snapshot_batch, stream_batch


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path) -> Storage:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return Storage(str(tmp_path / "lake"))
    s3 = request.getfixturevalue("s3_lake")
    return Storage(s3.root, s3.options)


def visible_files(storage: Storage) -> list[str]:
    return sorted(e.path for e in storage.list_files("changelog"))


def test_snapshot_then_stream_commits_offsets_with_data(storage: Storage) -> None:
    w = LakeWriter(storage, "src")
    assert w.last_committed().offset is None
    snap = w.write(
        snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "a"}), ("I", 10, {"id": 2, "name": "b"})]))
    )
    assert snap is not None and snap.kind == "snapshot" and snap.seq == 1
    rec = w.write(
        stream_batch(
            10, 20, changes([("U", 15, {"id": 1, "name": "a2"}), ("D", 20, {"id": 2, "name": None})])
        )
    )
    assert rec is not None and rec.seq == 2 and rec.tables[PATIENTS.lake_name].ops == {"U": 1, "D": 1}
    # A new writer (a restart) sees the same state, read back from the lake alone.
    state = LakeWriter(storage, "src").last_committed()
    assert state.seq == 2 and state.offset == Lsn(20) and state.floors == {PATIENTS: Lsn(10)}
    assert len(visible_files(storage)) == 2
    table = storage.read_parquet(rec.tables[PATIENTS.lake_name].files[0].path)
    assert table.column_names[:4] == ["Op", "_commit_ts", "_position", "_txid"]
    assert table["_seq"].to_pylist() == [(2 << 32), (2 << 32) + 1]


def test_replaying_a_committed_batch_is_a_no_op(storage: Storage) -> None:
    w = LakeWriter(storage, "src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "a"})])))
    batch = stream_batch(10, 20, changes([("U", 15, {"id": 1, "name": "a2"})]))
    assert w.write(batch) is not None
    before = visible_files(storage)
    assert w.write(batch) is None
    assert LakeWriter(storage, "src").write(batch) is None
    assert visible_files(storage) == before


def test_batch_not_starting_at_the_committed_offset_is_refused(storage: Storage) -> None:
    w = LakeWriter(storage, "src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "a"})])))
    with pytest.raises(OffsetMismatchError, match="starts at pg-lsn:0/C"):
        w.write(stream_batch(12, 20, changes([("U", 15, {"id": 1, "name": "x"})])))
    assert LakeWriter(storage, "src").last_committed().seq == 1


def test_two_runners_cannot_both_commit_the_next_batch(storage: Storage) -> None:
    LakeWriter(storage, "src").write(snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "a"})])))
    a, b = LakeWriter(storage, "src"), LakeWriter(storage, "src")
    assert a.write(stream_batch(10, 20, changes([("U", 15, {"id": 1, "name": "from-a"})]))) is not None
    with pytest.raises(CommitConflictError):
        b.write(stream_batch(10, 21, changes([("U", 16, {"id": 1, "name": "from-b"})])))
    state = LakeWriter(storage, "src").last_committed()
    assert state.seq == 2 and state.offset == Lsn(20)
    names = [n for f in visible_files(storage) for n in storage.read_parquet(f)["name"].to_pylist()]
    assert "from-b" not in names
    assert not list(storage.list_files("_staging"))
    # After reloading, b continues from a's commit.
    assert b.reload().offset == Lsn(20)
    assert b.write(stream_batch(20, 30, changes([("U", 25, {"id": 1, "name": "b2"})]))) is not None


def test_incomplete_batches_stay_invisible_until_the_unit_commits(storage: Storage) -> None:
    w = LakeWriter(storage, "src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 0, "name": "z"})])))
    for i in range(3):
        part = changes([("I", 20, {"id": 100 + i * 10 + j, "name": "big"}) for j in range(10)])
        assert w.write(stream_batch(10, 20, part, complete=False)) is None
    assert len(visible_files(storage)) == 1
    assert len(list(storage.list_files("_staging"))) == 3
    # A crash now (a new writer) discards the staged files and keeps the old offset.
    restarted = LakeWriter(storage, "src")
    assert restarted.last_committed().offset == Lsn(10)
    assert not list(storage.list_files("_staging"))
    assert len(visible_files(storage)) == 1
    # Redelivered in full, the unit commits once, with all rows in order.
    for i in range(3):
        part = changes([("I", 20, {"id": 100 + i * 10 + j, "name": "big"}) for j in range(10)])
        restarted.write(stream_batch(10, 20, part, complete=False))
    rec = restarted.write(stream_batch(10, 20))
    assert rec is not None and rec.rows == 30 and len(rec.tables[PATIENTS.lake_name].files) == 3


def test_a_commit_whose_files_were_not_moved_is_rolled_forward(storage: Storage, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    w = LakeWriter(storage, "src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "a"})])))

    def crash(record):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt("killed after the commit record, before publishing")

    monkeypatch.setattr(w, "_publish", crash)
    with pytest.raises(KeyboardInterrupt):
        w.write(stream_batch(10, 20, changes([("U", 15, {"id": 1, "name": "a2"})])))
    assert len(visible_files(storage)) == 1  # committed but not yet moved
    restarted = LakeWriter(storage, "src")
    assert restarted.last_committed().offset == Lsn(20)
    assert len(visible_files(storage)) == 2
    assert not list(storage.list_files("_staging"))


def test_rows_spanning_midnight_land_in_two_date_partitions(storage: Storage) -> None:
    import datetime as dt

    w = LakeWriter(storage, "src")
    late = dt.datetime(2026, 11, 26, 23, 59, 59, 999999, tzinfo=dt.UTC)
    tc1 = changes([("I", 10, {"id": 1, "name": "late"})], ts=late)
    tc2 = changes([("I", 11, {"id": 2, "name": "early"})], ts=late + dt.timedelta(microseconds=1))
    w.write(snapshot_batch(11, pa_concat(tc1, tc2)))
    parts = {f.split("/")[3] for f in visible_files(storage)}
    assert parts == {"commit_date=2026-11-26", "commit_date=2026-11-27"}


def test_quarantined_rows_are_committed_with_the_batch(storage: Storage) -> None:
    import datetime as dt

    from connectors.events import Batch, QuarantinedRow

    w = LakeWriter(storage, "src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "a"})])))
    bad = QuarantinedRow(
        PATIENTS,
        "0/F",
        dt.datetime(2026, 11, 26, tzinfo=dt.UTC),
        "column born: 0000-00-00 is not a date",
        "{...}",
    )
    rec = w.write(Batch(start=Lsn(10), end=Lsn(20), quarantined=(bad,)))
    assert rec is not None and rec.quarantined_rows == 1
    q = storage.read_parquet(rec.quarantine[0].path)
    assert q["reason"].to_pylist() == ["column born: 0000-00-00 is not a date"]
    assert q["table_name"].to_pylist() == ["patients"]


def test_schema_clash_with_metadata_columns_is_named() -> None:
    with pytest.raises(ValueError, match="_seq"):
        schema([("id", pa.int64()), ("_seq", pa.int64())])


def pa_concat(a, b):  # type: ignore[no-untyped-def]
    from connectors.events import TableChanges

    return TableChanges(a.schema, pa.concat_tables([a.data, b.data]))


def test_an_empty_table_in_a_snapshot_records_its_schema(storage: Storage) -> None:
    w = LakeWriter(storage, "src")
    rec = w.write(snapshot_batch(10, changes([])))
    assert rec is not None and rec.tables[PATIENTS.lake_name].rows == 0
    [ref] = rec.tables[PATIENTS.lake_name].files
    written = storage.read_parquet(ref.path)
    assert written.num_rows == 0 and written.schema.metadata[b"lakehouse.key"] == b"id"


def test_a_replayed_stream_batch_that_truncates_a_table_is_a_no_op(storage: Storage) -> None:
    """PostgreSQL TRUNCATE arrives as a stream batch naming the table in `snapshot`."""
    from connectors.events import Batch

    w = LakeWriter(storage, "src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "a"})])))
    truncate = Batch(
        start=Lsn(10),
        end=Lsn(20),
        changes=(changes([("I", 20, {"id": 9, "name": "after"})]),),
        snapshot=frozenset({PATIENTS}),
    )
    rec = w.write(truncate)
    assert rec is not None and rec.kind == "snapshot" and rec.tables[PATIENTS.lake_name].snapshot
    before = visible_files(storage)
    assert LakeWriter(storage, "src").write(truncate) is None
    assert visible_files(storage) == before


def test_reading_the_lake_leaves_a_writers_staged_unit_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`lakehouse show` and the Dagster checks read while a stream runner is mid-unit."""
    from connectors.lake.config import LakeConfig
    from connectors.lake.lake import Lake
    from pipelines.report import print_lake

    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 0, "name": "z"})])))
    w.write(stream_batch(10, 20, changes([("I", 20, {"id": 1, "name": "staged"})]), complete=False))
    print_lake(lake, ["src"], sample=1)
    assert lake.commit_log("src").latest_seq() == 1
    rec = w.write(stream_batch(10, 20))
    assert rec is not None and rec.rows == 1
    assert lake.read_changelog("src", PATIENTS.lake_name)["name"].to_pylist() == ["z", "staged"]
