"""Current-state merge: latest version per key, deletes applied, snapshots replace, schema evolves.

Merge-on-read (position-delete files), compaction, snapshot expiry and a racing merger are tested
locally and on moto S3; DuckDB's Iceberg reader must see exactly the rows pyiceberg's scan sees.
"""

from __future__ import annotations

import decimal
import importlib
import pathlib
import random
from urllib.parse import urlparse

import pyarrow as pa
import pytest
from pyiceberg.manifest import DataFileContent

from connectors.events import Batch, Column, TableId, TableSchema
from connectors.lake import iceberg_deletes
from connectors.lake.commits import KEEP_FINISHED_BACKFILLS, CommitConflictError
from connectors.lake.compaction import ALWAYS_REWRITE, NEVER_REWRITE, CompactionPolicy
from connectors.lake.config import LakeConfig, SnapshotRetention
from connectors.lake.current import COMMIT_SEQ_PROPERTY, CurrentState, MergeConflictError
from connectors.lake.lake import Lake
from connectors.postgres.offset import Lsn
from connectors.snapshot_chunks import SnapshotChunk, SnapshotStart
from tests.lake.helpers import PATIENTS, changes, schema, snapshot_batch, stream_batch


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path) -> Lake:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return Lake(LakeConfig(root=str(tmp_path / "lake")))
    s3 = request.getfixturevalue("s3_lake")
    return Lake(LakeConfig(root=s3.root, s3=s3.options, catalog_uri=f"sqlite:///{tmp_path}/catalog.db"))


def rows(lake: Lake, table: str = PATIENTS.lake_name) -> dict[object, dict[str, object]]:
    state = lake.current("src").read(table)
    key = "id"
    return {r[key]: {k: v for k, v in r.items() if not k.startswith("_")} for r in state.to_pylist()}


def test_merge_keeps_the_latest_version_and_applies_deletes(lake: Lake) -> None:
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": f"p{i}"}) for i in range(1, 6)])))
    lake.current("src").merge()
    w.write(
        stream_batch(
            10,
            20,
            changes(
                [
                    ("U", 11, {"id": 1, "name": "first"}),
                    ("U", 12, {"id": 1, "name": "second"}),
                    ("D", 13, {"id": 2, "name": None}),
                    ("I", 14, {"id": 9, "name": "new"}),
                    ("D", 15, {"id": 9, "name": None}),
                    ("I", 16, {"id": 9, "name": "back"}),  # delete then re-insert of the same key
                ]
            ),
        )
    )
    current = lake.current("src")
    [result] = current.merge()
    assert (result.upserts, result.deletes, result.rows) == (2, 1, 5)
    assert rows(lake) == {
        1: {"id": 1, "name": "second"},
        3: {"id": 3, "name": "p3"},
        4: {"id": 4, "name": "p4"},
        5: {"id": 5, "name": "p5"},
        9: {"id": 9, "name": "back"},
    }
    # Re-running the merge is a no-op; a new merge applies only later commits.
    assert current.merge() == []
    w.write(stream_batch(20, 30, changes([("D", 25, {"id": 3, "name": None})])))
    [again] = lake.current("src").merge()
    assert again.commit_seq == 3 and again.rows == 4
    assert 3 not in rows(lake)


def test_a_backfill_snapshot_replaces_the_table(lake: Lake) -> None:
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": "old"}) for i in range(3)])))
    lake.current("src").merge()
    w.write(
        snapshot_batch(10, changes([("I", 40, {"id": 7, "name": "fresh"})]), start=10)
    )  # start=end: a backfill
    assert w.last_committed().floors[PATIENTS].serialize() == "pg-lsn:0/A"
    lake.current("src").merge()
    assert rows(lake) == {7: {"id": 7, "name": "fresh"}}


def test_a_truncate_streamed_during_a_chunked_snapshot_ends_it_and_refuses_older_chunks(lake: Lake) -> None:
    w = lake.writer("src")
    w.begin_snapshot(SnapshotStart(Lsn(100), (changes([]),)))

    def chunk(ids: range, last: bool = False) -> SnapshotChunk:
        rows = changes([("I", 100, {"id": i, "name": "snap"}) for i in ids])
        return SnapshotChunk(rows, (), (ids[-1],), last)

    w.commit_chunk(w.stage_chunk(chunk(range(1, 4)), w.snapshots_in_progress()[PATIENTS.lake_name]))
    # Read and staged before the TRUNCATE commits: its rows are gone from the source by then.
    early = w.stage_chunk(chunk(range(4, 7)), w.snapshots_in_progress()[PATIENTS.lake_name])
    truncate = Batch(
        start=Lsn(100), end=Lsn(200), changes=(changes([("I", 150, {"id": 10, "name": "after"})]),),
        snapshot=frozenset({PATIENTS}),
    )  # fmt: skip
    w.write(truncate)
    assert PATIENTS.lake_name not in w.snapshots_in_progress()
    with pytest.raises(CommitConflictError):
        w.commit_chunk(early)
    w.write(stream_batch(200, 300, changes([("I", 250, {"id": 11, "name": "later"})])))
    lake.current("src").merge()
    assert rows(lake) == {10: {"id": 10, "name": "after"}, 11: {"id": 11, "name": "later"}}


def test_a_chunked_backfill_keeps_the_old_state_until_its_last_chunk_then_finishes_its_request(
    lake: Lake,
) -> None:
    """Begun at the stream's offset: the stream's changes after the begin commit rank above the
    chunk rows (read later), the old current state stays until the last chunk, and the commit of
    the last chunk finishes the request with the rows the chunks committed."""
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": "old"}) for i in range(1, 5)])))
    lake.current("src").merge()
    with pytest.raises(CommitConflictError, match="stream's committed offset"):
        w.begin_backfill(SnapshotStart(Lsn(20), (changes([]),)), "r1")
    w.begin_backfill(SnapshotStart(Lsn(10), (changes([]),)), "r1")
    with pytest.raises(ValueError, match="begun already"):
        w.begin_backfill(SnapshotStart(Lsn(10), (changes([]),)), "r1")

    def chunk(names: dict[int, str], after: int, last: bool = False) -> SnapshotChunk:
        return SnapshotChunk(
            changes([("I", 10, {"id": i, "name": n}) for i, n in names.items()]), (), (after,), last
        )

    w.commit_chunk(
        w.stage_chunk(chunk({1: "snap", 2: "snap"}, 2), w.snapshots_in_progress()[PATIENTS.lake_name])
    )
    # Streamed after the chunk above was read: an update of a row in it, a delete of one still to read.
    w.write(
        stream_batch(
            10, 30, changes([("U", 25, {"id": 1, "name": "new"}), ("D", 26, {"id": 3, "name": None})])
        )
    )
    lake.current("src").merge()
    assert rows(lake)[1] == {"id": 1, "name": "old"}  # the old state until the last chunk
    record = w.commit_chunk(
        w.stage_chunk(chunk({4: "snap"}, 4, last=True), w.snapshots_in_progress()[PATIENTS.lake_name])
    )
    assert record.backfills["r1"].finished == record.seq and record.backfills["r1"].rows == 3
    lake.current("src").merge()
    assert rows(lake) == {
        1: {"id": 1, "name": "new"},
        2: {"id": 2, "name": "snap"},
        4: {"id": 4, "name": "snap"},
    }


def test_a_truncate_finishes_the_backfill_it_ends_and_finished_backfills_are_kept_bounded(lake: Lake) -> None:
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "old"})])))
    offset = 10
    for n in range(KEEP_FINISHED_BACKFILLS + 2):
        w.begin_backfill(SnapshotStart(Lsn(offset), (changes([]),)), f"r{n}")
        truncate = Batch(start=Lsn(offset), end=Lsn(offset + 10), snapshot=frozenset({PATIENTS}))
        record = w.write(truncate)
        assert record is not None and record.backfills[f"r{n}"].finished == record.seq
        offset += 10
    assert sorted(record.backfills, key=lambda r: int(r[1:])) == [
        f"r{n}" for n in range(2, KEEP_FINISHED_BACKFILLS + 2)
    ]


@pytest.mark.parametrize("merged_meanwhile", [False, True])
def test_a_backfill_staged_beside_the_stream_keeps_what_the_stream_committed(
    lake: Lake, merged_meanwhile: bool
) -> None:
    """The stream goes on committing while a backfill is staged; committing the backfill later
    must not undo those commits: the merge replays them over the snapshot."""
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": "old"}) for i in range(1, 4)])))
    w.write(stream_batch(10, 20, changes([("U", 15, {"id": 1, "name": "a1"})])))
    c0 = w.last_committed().seq  # the backfill starts here: the stream's last commit, offset 20
    lake.current("src").merge()
    # The stream commits while the snapshot is read (at position 35, ahead of the stream).
    w.write(
        stream_batch(
            20, 30, changes([("U", 25, {"id": 2, "name": "b2"}), ("I", 26, {"id": 4, "name": "n4"})])
        )
    )
    w.write(stream_batch(30, 40, changes([("D", 38, {"id": 3, "name": None})])))
    if merged_meanwhile:
        lake.current("src").merge()
    snapshot = snapshot_batch(
        35,
        changes([("I", 35, {"id": 1, "name": "a1"}), ("I", 35, {"id": 2, "name": "b2"}),
                 ("I", 35, {"id": 3, "name": "old"}), ("I", 35, {"id": 4, "name": "n4"}),
                 ("I", 35, {"id": 5, "name": "only in the snapshot"})]),
        start=20,
    )  # fmt: skip
    staged = lake.writer("src").stage_backfill([snapshot], replay_after=c0)  # another writer: no shared state
    w.write(stream_batch(40, 50, changes([("U", 45, {"id": 4, "name": "d4"})])))
    record = w.commit_backfill(staged)
    assert record.kind == "backfill" and record.start == record.end == w.last_committed().offset.serialize()
    assert record.tables[PATIENTS.lake_name].replay_after == c0
    lake.current("src").merge()
    assert rows(lake) == {
        1: {"id": 1, "name": "a1"},
        2: {"id": 2, "name": "b2"},
        4: {"id": 4, "name": "d4"},  # changed after the snapshot: the stream's change wins
        5: {"id": 5, "name": "only in the snapshot"},
    }  # 3 was deleted at 38, after the snapshot's position: the replay deletes it again
    w.write(stream_batch(50, 60, changes([("U", 55, {"id": 5, "name": "later"})])))
    lake.current("src").merge()
    assert rows(lake)[5] == {"id": 5, "name": "later"}
    # The change log holds each stream change once and the snapshot rows once, nothing copied.
    log_rows = lake.read_changelog("src", PATIENTS.lake_name)
    assert log_rows.num_rows == 3 + 1 + 2 + 1 + 5 + 1 + 1


def test_a_staged_backfill_vanishes_on_restart_and_commits_nothing(lake: Lake) -> None:
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "old"})])))
    staged = w.stage_backfill(
        [snapshot_batch(12, changes([("I", 12, {"id": 1, "name": "new"})]), start=10)], replay_after=1
    )
    assert any(lake.storage.list_files(staged.unit.staging))
    w.reload()  # a conflict while the stream runs: the staged backfill survives
    assert any(lake.storage.list_files(staged.unit.staging))
    restarted = lake.writer("src")  # a new process: what was staged is gone, nothing committed
    assert not any(lake.storage.list_files(staged.unit.staging))
    assert restarted.last_committed().seq == 1


def test_schema_evolution_adds_columns_and_widens_types(lake: Lake) -> None:
    w = lake.writer("src")
    v1 = schema([("id", pa.int64()), ("score", pa.int32()), ("fee", pa.decimal128(10, 2))])
    w.write(
        snapshot_batch(10, changes([("I", 10, {"id": 1, "score": 5, "fee": decimal.Decimal("1.50")})], v1))
    )
    lake.current("src").merge()
    v2 = schema(
        [("id", pa.int64()), ("score", pa.int64()), ("fee", pa.decimal128(18, 2)), ("email", pa.string())]
    )
    w.write(
        stream_batch(
            10,
            20,
            changes(
                [
                    (
                        "I",
                        12,
                        {"id": 2, "score": 2**40, "fee": decimal.Decimal("1234567890123.45"), "email": "z@x"},
                    )
                ],
                v2,
            ),
        )
    )
    lake.current("src").merge()
    state = lake.current("src").read(PATIENTS.lake_name)
    assert state.schema.field("score").type == pa.int64()
    assert state.schema.field("fee").type == pa.decimal128(18, 2)
    assert rows(lake) == {
        1: {"id": 1, "score": 5, "fee": decimal.Decimal("1.50"), "email": None},
        2: {"id": 2, "score": 2**40, "fee": decimal.Decimal("1234567890123.45"), "email": "z@x"},
    }


def test_composite_keys(lake: Lake) -> None:
    table = TableId("src", "health", "readings")
    sch = TableSchema(
        table,
        (Column("patient", pa.int64()), Column("day", pa.string()), Column("steps", pa.int32())),
        ("patient", "day"),
    )
    w = lake.writer("src")
    w.write(
        snapshot_batch(
            10,
            changes(
                [
                    ("I", 10, {"patient": 1, "day": "a", "steps": 1}),
                    ("I", 10, {"patient": 1, "day": "b", "steps": 2}),
                ],
                sch,
            ),
            tables=(table,),
        )
    )
    w.write(stream_batch(10, 20, changes([("U", 12, {"patient": 1, "day": "b", "steps": 20})], sch)))
    lake.current("src").merge()
    state = lake.current("src").read(table.lake_name).sort_by("day")
    assert state.select(["patient", "day", "steps"]).to_pylist() == [
        {"patient": 1, "day": "a", "steps": 1},
        {"patient": 1, "day": "b", "steps": 20},
    ]


# Count-only retention with no grace: what these tests check (time-based: tests/lake/test_retention.py).
KEEP_3_NOW = SnapshotRetention(keep_snapshots=3, max_snapshot_age_seconds=0, orphan_grace_seconds=0)


def test_old_snapshots_and_their_files_are_expired(lake: Lake) -> None:
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": 1, "name": "a"})])))
    current = CurrentState(lake.storage, lake.catalog, "src", retention=KEEP_3_NOW)
    for i in range(8):
        w.write(stream_batch(10 + i, 11 + i, changes([("U", 11 + i, {"id": 1, "name": f"v{i}"})])))
        current.merge()
        current.delete_orphans()
    table = current.load(PATIENTS.lake_name)
    assert table is not None
    assert len(table.snapshots()) <= 3
    data_files = [e for e in lake.storage.list_files(f"current/src/{PATIENTS.lake_name}/data")]
    assert len(data_files) <= 3
    assert rows(lake) == {1: {"id": 1, "name": "v7"}}


def test_values_the_source_did_not_send_keep_the_lakes_value(lake: Lake) -> None:
    """PostgreSQL leaves unchanged TOAST values out of an UPDATE; the lake keeps what it had."""
    from connectors.events import TableChanges

    sch = schema([("id", pa.int64()), ("doc", pa.string()), ("n", pa.int32())])
    w = lake.writer("src")
    big = "x" * 10_000
    w.write(
        snapshot_batch(
            10,
            changes(
                [("I", 10, {"id": 1, "doc": big, "n": 0}), ("I", 10, {"id": 2, "doc": "small", "n": 0})], sch
            ),
        )
    )
    lake.current("src").merge()
    # Two updates of id 1 without its doc (one merged on its own, one together with a sent value).
    upd = changes([("U", 11, {"id": 1, "doc": None, "n": 1})], sch)
    w.write(stream_batch(10, 20, TableChanges(upd.schema, upd.data, unchanged=((0, ("doc",)),))))
    lake.current("src").merge()
    assert rows(lake)[1] == {"id": 1, "doc": big, "n": 1}
    both = changes(
        [("U", 21, {"id": 2, "doc": "sent", "n": 5}), ("U", 22, {"id": 2, "doc": None, "n": 6})], sch
    )
    w.write(stream_batch(20, 30, TableChanges(both.schema, both.data, unchanged=((1, ("doc",)),))))
    lake.current("src").merge()
    assert rows(lake)[2] == {"id": 2, "doc": "sent", "n": 6}
    assert rows(lake)[1] == {"id": 1, "doc": big, "n": 1}
    # The change log itself says which values were not sent.
    log = lake.read_changelog("src", PATIENTS.lake_name)
    assert log.filter(pa.compute.equal(log["id"], 1))["_unchanged"].to_pylist() == [None, ["doc"]]


# -- merge-on-read, compaction, concurrency, other readers -------------------------------------
def current(
    lake: Lake, policy: CompactionPolicy | None = None, retention: SnapshotRetention | None = None
) -> CurrentState:
    return CurrentState(lake.storage, lake.catalog, "src", compaction=policy, retention=retention)


def live(lake: Lake, table: str = PATIENTS.lake_name) -> iceberg_deletes.LiveFiles:
    loaded = lake.current("src").load(table)
    assert loaded is not None
    return iceberg_deletes.live_files(loaded)


def stray_files(lake: Lake, table: str = PATIENTS.lake_name) -> set[str]:
    """Data/delete/manifest files in the table's directory that no snapshot of it references."""
    loaded = lake.current("src").load(table)
    assert loaded is not None
    referenced: set[str] = set()
    for snapshot in loaded.snapshots():
        referenced.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(loaded.io):
            referenced.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(loaded.io, discard_deleted=False):
                referenced.add(entry.data_file.file_path)
    on_disk = {
        lake.storage.uri(e.path)
        for e in lake.storage.list_files(f"current/src/{table}")
        if e.path.endswith((".parquet", ".avro"))
    }
    return on_disk - referenced


def duckdb_scan(lake: Lake, table: str = PATIENTS.lake_name) -> pa.Table:
    """The table as DuckDB's Iceberg reader sees it (extensions loaded from the wheels, offline)."""
    duckdb = pytest.importorskip("duckdb")
    loaded = lake.current("src").load(table)
    assert loaded is not None
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in ("httpfs", "avro", "iceberg"):  # avro before iceberg (PITFALLS.md)
        module = importlib.import_module(f"duckdb_extension_{name}")
        path = (
            pathlib.Path(module.__file__).parent
            / "extensions"
            / f"v{duckdb.__version__}"
            / f"{name}.duckdb_extension"
        )
        con.sql(f"LOAD '{path}'")
    if lake.storage.is_s3:
        endpoint = urlparse(lake.config.s3.endpoint_url or "")
        con.sql(
            "CREATE SECRET (TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', "
            f"ENDPOINT '{endpoint.netloc}', URL_STYLE 'path', USE_SSL false)"
        )
    return con.sql(f"SELECT * FROM iceberg_scan('{loaded.metadata_location}')").to_arrow_table()


def plain(table: pa.Table, columns: tuple[str, ...] = ("id", "name")) -> list[dict[str, object]]:
    return sorted(table.select(list(columns)).to_pylist(), key=lambda r: r["id"])  # type: ignore[arg-type,return-value]


def test_merge_on_read_adds_position_deletes_that_every_reader_applies(lake: Lake) -> None:
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": f"p{i}"}) for i in range(100)])))
    state = current(lake)
    state.merge()
    assert (len(live(lake).data), len(live(lake).deletes)) == (1, 0)
    w.write(
        stream_batch(
            10,
            20,
            changes(
                [
                    ("U", 11, {"id": 5, "name": "five"}),
                    ("D", 12, {"id": 7, "name": None}),
                    ("I", 13, {"id": 500, "name": "new"}),
                ]
            ),
        )
    )
    [result] = state.merge()
    assert (result.upserts, result.deletes, result.rows) == (2, 1, 100)
    files = live(lake)
    # One new data file (the upserts) and one position-delete file (the old rows of ids 5 and 7).
    assert (len(files.data), len(files.deletes)) == (2, 1)
    assert files.deletes[0].data_file.content == DataFileContent.POSITION_DELETES
    assert files.deleted_rows == 2
    expected = {i: f"p{i}" for i in range(100) if i != 7} | {5: "five", 500: "new"}
    assert {r["id"]: r["name"] for r in plain(state.read(PATIENTS.lake_name))} == expected
    assert plain(duckdb_scan(lake)) == plain(state.read(PATIENTS.lake_name))
    # The snapshot carries the commit seq; merging again changes nothing.
    table = state.load(PATIENTS.lake_name)
    assert table is not None and table.current_snapshot() is not None
    snapshot_id = table.current_snapshot().snapshot_id  # type: ignore[union-attr]
    assert state.applied_seq(table) == 2
    assert table.current_snapshot().summary[COMMIT_SEQ_PROPERTY] == "2"  # type: ignore[index,union-attr]
    assert state.merge() == [] and lake.current("src").merge() == []
    assert state.load(PATIENTS.lake_name).current_snapshot().snapshot_id == snapshot_id  # type: ignore[union-attr]


@pytest.mark.parametrize("policy", ["default", "never"])
def test_random_batches_match_a_model_of_the_source(lake: Lake, policy: str) -> None:
    """Seeded random inserts/updates/deletes/re-inserts: after every merge the table equals a dict
    model of the source table; at the end DuckDB reads the same rows."""
    if lake.storage.is_s3 and policy == "never":
        pytest.skip("one policy is enough on S3 (the storage code paths are the same)")
    rng = random.Random(20261126)
    w = lake.writer("src")
    model = {i: f"v0-{i}" for i in range(200)}
    w.write(snapshot_batch(10, changes([("I", 10, {"id": k, "name": v}) for k, v in model.items()])))
    state = current(lake, NEVER_REWRITE if policy == "never" else None)
    state.merge()
    lsn = 10
    saw_deletes = saw_compaction = False
    for batch in range(30):
        rows = []
        for _ in range(rng.randint(1, 25)):
            lsn += 1
            k = rng.randrange(300)
            if k in model and rng.random() < 0.3:
                model.pop(k)
                rows.append(("D", lsn, {"id": k, "name": None}))
            else:
                op = "U" if k in model else "I"
                model[k] = f"v{batch + 1}-{k}-{lsn}"
                rows.append((op, lsn, {"id": k, "name": model[k]}))
        w.write(stream_batch(lsn - len(rows), lsn, changes(rows)))
        [result] = state.merge()
        assert result.rows == len(model)
        assert {r["id"]: r["name"] for r in plain(state.read(PATIENTS.lake_name))} == model, f"batch {batch}"
        files = live(lake)
        saw_deletes |= bool(files.deletes)
        saw_compaction |= saw_deletes and not files.deletes
    assert saw_deletes
    assert saw_compaction == (policy == "default")
    assert plain(duckdb_scan(lake)) == plain(state.read(PATIENTS.lake_name))
    assert not stray_files(lake)


def test_compaction_bin_packs_small_files_and_expiry_deletes_replaced_files(lake: Lake) -> None:
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": "a"}) for i in range(50)])))
    state = current(lake, CompactionPolicy(max_delete_files=3), KEEP_3_NOW)
    state.merge()
    shapes = []
    for i in range(4):
        w.write(stream_batch(10 + i, 11 + i, changes([("U", 11 + i, {"id": i, "name": f"b{i}"})])))
        state.merge()
        state.delete_orphans()
        files = live(lake)
        shapes.append((len(files.data), len(files.deletes)))
        assert not stray_files(lake)
    # Three merges on read, then the fourth finds four small data files of one size tier: they
    # are rewritten into one file, beside the merge's own, and the delete files that only held
    # positions in them are dropped.
    assert shapes == [(2, 1), (3, 2), (4, 3), (2, 0)]
    expected = {i: ("b" + str(i) if i < 4 else "a") for i in range(50)}
    assert {r["id"]: r["name"] for r in plain(state.read(PATIENTS.lake_name))} == expected
    assert plain(duckdb_scan(lake)) == plain(state.read(PATIENTS.lake_name))
    table = state.load(PATIENTS.lake_name)
    assert table is not None and len(table.snapshots()) <= 3
    # Files of expired snapshots are gone once the newer snapshots no longer need them.
    for i in range(4, 8):
        w.write(stream_batch(10 + i, 11 + i, changes([("U", 11 + i, {"id": 40, "name": f"c{i}"})])))
        state.merge()
        state.delete_orphans()
    parquet = [e for e in lake.storage.list_files(f"current/src/{PATIENTS.lake_name}/data")]
    assert len(parquet) <= 1 + 2 * 3 + 1  # live files + those of the 2 older retained snapshots
    assert not stray_files(lake)


def test_a_deleted_row_of_a_data_file_is_never_deleted_twice(lake: Lake) -> None:
    """Updating the same key again deletes its newest row only (exact deleted-row counts)."""
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": "a"}) for i in range(20)])))
    state = current(lake, NEVER_REWRITE)
    state.merge()
    for i in range(5):
        w.write(stream_batch(10 + i, 11 + i, changes([("U", 11 + i, {"id": 3, "name": f"v{i}"})])))
        [result] = state.merge()
        assert result.rows == 20
    files = live(lake)
    assert files.deleted_rows == 5 and files.data_rows == 25
    assert {r["id"]: r["name"] for r in plain(state.read(PATIENTS.lake_name))}[3] == "v4"


class _RacingState(CurrentState):
    """A merger that lets a rival merge right after it has loaded the table (a deterministic race)."""

    rival: CurrentState | None = None

    def load(self, lake_table: str):  # type: ignore[no-untyped-def]
        table = super().load(lake_table)
        if self.rival is not None:
            rival, self.rival = self.rival, None
            rival.merge()
        return table


def test_a_racing_merger_fails_cleanly_and_its_retry_is_a_no_op(lake: Lake) -> None:
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": "a"}) for i in range(50)])))
    current(lake).merge()
    w.write(
        stream_batch(10, 20, changes([("U", 11, {"id": 1, "name": "b"}), ("D", 12, {"id": 2, "name": None})]))
    )
    loser = _RacingState(lake.storage, lake.catalog, "src")
    loser.rival = current(lake)
    with pytest.raises(MergeConflictError):
        loser.merge()
    # The winner's merge is the table's state; nothing the loser wrote is left behind.
    table = loser.load(PATIENTS.lake_name)
    assert table is not None and loser.applied_seq(table) == 2
    assert len(table.snapshots()) == 2
    assert not stray_files(lake)
    expected = {i: "a" for i in range(50) if i != 2} | {1: "b"}
    assert {r["id"]: r["name"] for r in plain(loser.read(PATIENTS.lake_name))} == expected
    assert loser.merge() == []
    assert len(loser.load(PATIENTS.lake_name).snapshots()) == 2  # type: ignore[union-attr]


def test_merge_on_read_with_composite_keys_schema_evolution_and_unsent_values(lake: Lake) -> None:
    """The paths the copy-on-write tests cover, with every merge on read (never compacting)."""
    from connectors.events import TableChanges

    table = TableId("src", "health", "readings")
    v1 = TableSchema(
        table,
        (
            Column("patient", pa.int64()),
            Column("day", pa.string()),
            Column("steps", pa.int32()),
            Column("doc", pa.string()),
        ),
        ("patient", "day"),
    )
    w = lake.writer("src")
    seed = [
        ("I", 10, {"patient": p, "day": d, "steps": p, "doc": f"doc{p}{d}"}) for p in range(12) for d in "ab"
    ]
    w.write(snapshot_batch(10, changes(seed, v1), tables=(table,)))
    state = current(lake, NEVER_REWRITE)
    state.merge()
    v2 = TableSchema(
        table,
        (*v1.columns[:2], Column("steps", pa.int64()), v1.columns[3], Column("note", pa.string())),
        v1.key,
    )
    upd = changes(
        [
            ("U", 11, {"patient": 1, "day": "b", "steps": 2**40, "doc": None, "note": "n"}),
            ("D", 12, {"patient": 3, "day": "a", "steps": None, "doc": None, "note": None}),
            ("I", 13, {"patient": 99, "day": "z", "steps": 1, "doc": "new", "note": None}),
        ],
        v2,
    )
    w.write(stream_batch(10, 20, TableChanges(upd.schema, upd.data, unchanged=((0, ("doc",)),))))
    [result] = state.merge()
    assert (result.upserts, result.deletes, result.rows) == (2, 1, 24)
    files = iceberg_deletes.live_files(state.load(table.lake_name))  # type: ignore[arg-type]
    assert len(files.deletes) == 1 and files.deleted_rows == 2
    got = state.read(table.lake_name)
    assert got.schema.field("steps").type == pa.int64()
    by_key = {(r["patient"], r["day"]): r for r in got.to_pylist()}
    assert (3, "a") not in by_key and len(by_key) == 24
    assert (by_key[(1, "b")]["steps"], by_key[(1, "b")]["doc"], by_key[(1, "b")]["note"]) == (
        2**40,
        "doc1b",
        "n",
    )
    assert (by_key[(1, "a")]["steps"], by_key[(1, "a")]["note"]) == (1, None)
    cols = ("patient", "day", "steps", "doc", "note")
    seen = sorted(
        duckdb_scan(lake, table.lake_name).select(list(cols)).to_pylist(),
        key=lambda r: (r["patient"], r["day"]),
    )
    assert seen == sorted(got.select(list(cols)).to_pylist(), key=lambda r: (r["patient"], r["day"]))


def _set_target_file_size(lake: Lake, size: int) -> None:
    """A tiny target file size, so a merge's chunked writer rolls over to new data files."""
    table = lake.current("src").load(PATIENTS.lake_name)
    assert table is not None
    with table.transaction() as tx:
        tx.set_properties({"write.target-file-size-bytes": str(size)})


@pytest.mark.parametrize("policy", ["default", "never", "always"])
def test_a_merge_of_many_change_files_and_commits_matches_a_model(
    tmp_path: pathlib.Path, policy: str
) -> None:
    """Several commits, each of several change files (a large transaction staged in chunks), with
    keys changed again across files and commits, merged at once: the rows are read file by file
    (and written in several data files), yet the result is the latest change of every key."""
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    policies = {"default": None, "never": NEVER_REWRITE, "always": ALWAYS_REWRITE}
    rng = random.Random(7)
    w = lake.writer("src")
    model = {i: f"s-{i}" for i in range(0, 400, 2)}
    # The snapshot arrives in key order, in four chunks (four change files, one commit).
    snap = sorted(model.items())
    for n in range(4):
        part = changes([("I", 10, {"id": k, "name": v}) for k, v in snap[n * 50 : (n + 1) * 50]])
        w.write(
            snapshot_batch(10, part)
            if n == 3
            else Batch(start=None, end=None, changes=(part,), complete=False, snapshot=frozenset({PATIENTS}))
        )
    state = current(lake, policies[policy])
    [result] = state.merge()
    assert result.rows == len(model) and result.replaced
    _set_target_file_size(lake, 1)  # every chunk closes its data file
    lsn = 10
    for commit in range(3):
        start = lsn
        for chunk in range(3):
            rows = []
            for _ in range(40):
                lsn += 1
                k = rng.randrange(500)
                if k in model and rng.random() < 0.3:
                    model.pop(k)
                    rows.append(("D", lsn, {"id": k, "name": None}))
                else:
                    op = "U" if k in model else "I"
                    model[k] = f"c{commit}-{chunk}-{lsn}"
                    rows.append((op, lsn, {"id": k, "name": model[k]}))
            w.write(stream_batch(start, lsn, changes(rows), complete=chunk == 2))
    [result] = state.merge()
    assert result.rows == len(model)
    assert {r["id"]: r["name"] for r in plain(state.read(PATIENTS.lake_name))} == model
    files = live(lake)
    assert len(files.data) > 1  # chunks were written as separate files (target size 1 byte)
    assert files.data_rows - files.deleted_rows == len(model)
    assert plain(duckdb_scan(lake)) == plain(state.read(PATIENTS.lake_name))
    assert not stray_files(lake)


def test_the_chunked_writer_leaves_nothing_behind_when_a_write_fails(lake: Lake) -> None:
    """A failure while the change files are read again (pass 2) leaves no data file and no snapshot."""
    w = lake.writer("src")
    w.write(snapshot_batch(10, changes([("I", 10, {"id": i, "name": f"p{i}"}) for i in range(20)])))
    state = current(lake, NEVER_REWRITE)
    state.merge()
    table = state.load(PATIENTS.lake_name)
    assert table is not None
    before = table.current_snapshot().snapshot_id  # type: ignore[union-attr]
    w.write(
        stream_batch(
            10, 20, changes([("U", 11, {"id": 1, "name": "one"}), ("I", 12, {"id": 99, "name": "x"})])
        )
    )

    class Boom(Exception):
        pass

    original = iceberg_deletes.DataFileWriter.write
    calls = []

    def failing(self: iceberg_deletes.DataFileWriter, rows: pa.Table) -> None:
        original(self, rows)
        calls.append(rows.num_rows)
        raise Boom

    iceberg_deletes.DataFileWriter.write = failing  # type: ignore[method-assign]
    try:
        with pytest.raises(Boom):
            state.merge()
    finally:
        iceberg_deletes.DataFileWriter.write = original  # type: ignore[method-assign]
    assert calls == [2]
    table = state.load(PATIENTS.lake_name)
    assert table.current_snapshot().snapshot_id == before  # type: ignore[union-attr]
    assert not stray_files(lake)
    [result] = state.merge()
    assert (result.upserts, result.rows) == (2, 21)
    assert {r["id"]: r["name"] for r in plain(state.read(PATIENTS.lake_name))}[1] == "one"
