"""Search survives a rebuilt lake: versions from source time keep order across lakes (issue 14).

The index is kept while the lake under it is rebuilt from scratch, restored from an older copy of
its directory, or snapshotted again: real changes made afterwards reach the index, and a document
built from older source state never replaces a newer one. Real MariaDB, lakes and OpenSearch node.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.opensearch.bulk import BulkIndexer, Document
from connectors.opensearch.indices import IndexManager, load_template
from pipelines.capture.runner import resnapshot_source
from pipelines.capture.sources import open_source
from pipelines.search.versions import SECOND, VERSION_SCHEME, TableClock, advance, commit_clock
from tests.search.people_world import World


def _ids(world: World) -> list[str]:
    return sorted(world.patient_ids(), key=int)


def test_a_lake_rebuilt_from_scratch_keeps_indexing_into_the_same_index(world: World, tmp_path: Path) -> None:
    world.capture()
    world.sql(
        "UPDATE patients SET city = 'Elsewhere' WHERE patient_id = (SELECT MIN(patient_id) FROM patients)"
    )
    world.capture()
    first = world.indexer.run()
    assert first.stale_problem() is None and first.result.indexed == len(_ids(world))
    before = world.indexed()
    # The lake rebuilt at a new root: its commit numbers start again, its snapshot is of now.
    rebuilt = Lake(LakeConfig(root=str(tmp_path / "rebuilt")))
    world.capture(rebuilt)
    assert rebuilt.commit_log("health").latest_seq() < world.lake.commit_log("health").latest_seq()
    indexer = world.indexer_for(rebuilt)
    again = indexer.run()
    assert again.full and again.result.stale == 0 and again.stale_problem() is None
    after = world.indexed()
    assert after.keys() == before.keys()
    assert all(after[pid]["_version"] >= before[pid]["_version"] for pid in before)
    # A real change after the rebuild reaches the index.
    pid = _ids(world)[0]
    world.sql(f"UPDATE patients SET given_name = 'Rebuilt' WHERE patient_id = {pid}")
    world.capture(rebuilt)
    changed = indexer.run()
    assert (changed.full, changed.patients, changed.result.indexed, changed.result.stale) == (False, 1, 1, 0)
    assert world.indexed()[pid]["name"].startswith("Rebuilt")
    assert world.indexed()[pid]["_version"] == changed.version > after[pid]["_version"]


def test_a_lake_restored_from_an_older_copy_never_overwrites_newer_documents(
    world: World, tmp_path: Path
) -> None:
    lake_dir = tmp_path / "lake"
    world.capture()
    world.indexer.run()
    backup = tmp_path / "backup"
    shutil.copytree(lake_dir, backup)  # the older copy: catalog, commit log and checkpoint
    # Newer source state reaches the index from the lake that goes on.
    world.sql("UPDATE patients SET city = 'Newertown'")
    world.capture()
    world.indexer.run()
    newest = world.indexed()
    assert all(d["city"] == "Newertown" for d in newest.values())
    # The lake directory restored from the older copy, the index kept.
    shutil.rmtree(lake_dir)
    shutil.copytree(backup, lake_dir)
    restored = Lake(LakeConfig(root=str(lake_dir)))
    indexer = world.indexer_for(restored)
    replay = indexer.run(full=True)  # every document of the older state, written again
    assert replay.result.indexed == 0 and replay.result.stale == len(newest)
    assert world.indexed() == newest  # nothing newer was overwritten
    problem = replay.stale_problem()  # and the run says why it did nothing
    assert problem is not None and world.alias in problem and "restored from an older copy" in problem
    # Capture goes on in the restored lake: it replays the newer change from the binlog, then a
    # real new one arrives; both are in the index afterwards, and the older state never was.
    latest = _ids(world)[0]
    world.sql(f"UPDATE patients SET given_name = 'Latest' WHERE patient_id = {latest}")
    world.capture(restored)
    caught_up = indexer.run()
    assert caught_up.stale_problem() is None and caught_up.result.indexed == len(newest)
    docs = world.indexed()
    assert docs[latest]["name"].startswith("Latest") and not newest[latest]["name"].startswith("Latest")
    assert all(d["city"] == "Newertown" for d in docs.values())
    assert all(docs[pid]["_version"] > newest[pid]["_version"] for pid in docs)


def test_a_resnapshot_moves_versions_forward_and_later_changes_still_land(world: World) -> None:
    world.capture()
    first = world.indexer.run()
    source = open_source(world.source)
    try:
        resnapshot_source(world.lake, source)  # every row again, stamped with the snapshot's time
    finally:
        source.close()
    second = world.indexer.run()
    assert second.version > first.version and second.result.stale == 0
    assert second.result.indexed == len(_ids(world))
    pid = _ids(world)[-1]
    world.sql(f"UPDATE patients SET given_name = 'Resnapshotted' WHERE patient_id = {pid}")
    world.capture()
    third = world.indexer.run()
    assert third.version > second.version and third.result.stale == 0
    assert world.indexed()[pid]["name"].startswith("Resnapshotted")


def test_an_index_with_commit_seq_versions_is_written_again_with_source_clocks(world: World) -> None:
    """An index and checkpoint left by an indexer before source clocks (versions = sums of commit
    seqs, no `version_scheme` in the mapping's `_meta`) are replaced in one full run, no flag needed."""
    world.capture()
    seqs = world.indexer.documents.state_seqs()
    old_version = sum(seqs.values())
    IndexManager(world.client, world.alias, load_template("people"), world.indexer.synonyms_path).ensure()  # type: ignore[arg-type]
    old_docs = [Document(pid, old_version, {"patient_id": pid, "name": "OLD"}) for pid in _ids(world)]
    BulkIndexer(world.client, world.alias, refresh=True).write(old_docs)
    world.lake.storage.write_bytes(f"search/{world.alias}/_checkpoint.json", json.dumps(seqs).encode())
    report = world.indexer.run()
    assert report.rewrote_scheme and report.full and report.result.indexed == len(old_docs)
    assert report.version > old_version and report.stale_problem() is None
    assert not any(d["name"] == "OLD" for d in world.indexed().values())
    manager = IndexManager(world.client, world.alias, load_template("people"), "x")  # type: ignore[arg-type]
    assert manager.meta()["version_scheme"] == VERSION_SCHEME
    nothing = world.indexer.run()  # upgraded: incremental again
    assert not nothing.rewrote_scheme and not nothing.full and nothing.patients == 0


def test_source_clocks_order_commits_within_a_second_and_never_step_back() -> None:
    s = 1_767_000_000 * SECOND
    # Within one source second the lake's commit time orders commits, capped inside that second.
    assert commit_clock(s + 500_000, s + 200) == s + 200  # a snapshot's µs time floors to its second
    assert commit_clock(s, s + 700_000) == s + 700_000
    assert commit_clock(s, s + 5 * SECOND) == s + SECOND - 1  # replayed late: still before s + 1
    assert commit_clock(s + 2 * SECOND, s) == s + 2 * SECOND  # a lake clock behind the source's
    assert commit_clock(None, s + 42) == s + 42  # no rows (an empty snapshot): as of its commit
    # A table's clock never ties or steps back once it moved on, and a re-run keeps its clock.
    previous = TableClock(seq=7, clock=s + SECOND - 1)
    assert advance(s + SECOND - 1, 8, previous) == s + SECOND  # a tie
    assert advance(s - 3 * SECOND, 9, previous) == s + SECOND  # a long transaction's earlier second
    assert advance(s + 9 * SECOND, 9, previous) == s + 9 * SECOND
    assert advance(s - SECOND, 7, previous) == previous.clock
    assert advance(s - SECOND, 6, previous) == s - SECOND  # older than the checkpoint: older version
    assert advance(s, 3, None) == s
