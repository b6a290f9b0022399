"""The 360° people index: built from the lake, kept in step incrementally, versions that protect order.

A small seeded health world in MariaDB (and its PostgreSQL half) is captured into a fresh lake by
the real MySQL source; the indexer writes to the local OpenSearch node under a unique alias.
"""

from __future__ import annotations

from typing import Any

import pytest

from connectors.opensearch.bulk import BulkIndexer, Document
from connectors.opensearch.indices import IndexManager, IndexTemplate, load_template
from pipelines.search import docs as search_docs
from pipelines.search import index as search_index
from tests.search.people_world import TABLES, World


def test_full_then_incremental_indexing_follows_the_lake(world: World) -> None:
    world.capture()
    first = world.indexer.run()
    assert first.full and first.result.indexed == len(world.patient_ids())
    docs = world.indexed()
    assert set(docs) == world.patient_ids()
    # Two changes: a patient renamed, another one deleted (children first: no cascades in the binlog).
    ids = sorted(world.patient_ids(), key=int)
    renamed, gone = ids[0], ids[1]
    world.sql(
        f"UPDATE patients SET given_name = 'Zebedee' WHERE patient_id = {renamed}",
        *(
            f"DELETE FROM {t} WHERE patient_id = {gone}"
            for t in TABLES
            if t not in ("patients", "fitness_plans")
        ),
        f"DELETE FROM patients WHERE patient_id = {gone}",
    )
    world.capture()
    second = world.indexer.run()
    assert not second.full and second.patients == 2
    assert (second.result.indexed, second.result.deleted) == (1, 1)
    docs_after = world.indexed()
    assert set(docs_after) == world.patient_ids()
    assert docs_after[renamed]["name"].startswith("Zebedee")
    assert docs_after[renamed]["_version"] == second.version > docs[renamed]["_version"]
    # Nothing new in the lake: nothing to index.
    assert world.indexer.run().patients == 0


def test_a_late_or_replayed_document_never_overwrites_a_newer_one(world: World) -> None:
    world.capture()
    world.indexer.run()
    pid = sorted(world.patient_ids(), key=int)[0]
    current = world.indexed()[pid]
    stale = Document(
        pid, current["_version"] - 1, {**{k: v for k, v in current.items() if k != "_version"}, "name": "OLD"}
    )
    replay = Document(pid, current["_version"], {k: v for k, v in current.items() if k != "_version"})
    result = BulkIndexer(world.client, world.alias, refresh=True).write([stale, replay])
    # The older version is refused; the same version is written again, unchanged (external_gte).
    assert result.stale == 1 and result.indexed == 1
    assert world.indexed()[pid]["name"] == current["name"]
    assert world.indexed()[pid]["_version"] == current["_version"]


def test_refused_documents_go_to_the_dead_letter_table(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.capture()
    real_documents = search_docs._documents

    def documents_with_a_bad_one(*args: Any) -> list[Document]:
        docs = real_documents(*args)
        bad = docs[0]
        assert bad.source is not None
        return [Document(bad.doc_id, bad.version, {**bad.source, "not_in_mapping": 1}), *docs[1:]]

    monkeypatch.setattr(search_docs, "_documents", documents_with_a_bad_one)
    report = world.indexer.run()
    assert len(report.result.failures) == 1 and report.result.indexed == len(world.patient_ids()) - 1
    assert report.dead_letter_file is not None
    dead = world.lake.storage.read_parquet(report.dead_letter_file).to_pylist()
    assert dead[0]["doc_id"] == report.result.failures[0].doc_id
    assert (
        "strict_dynamic_mapping_exception" in dead[0]["reason"]
        and '"not_in_mapping": 1' in dead[0]["document"]
    )


def test_a_mapping_change_rolls_out_as_a_new_index_and_an_atomic_alias_swap(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.capture()
    world.indexer.run()
    before = world.indexed()
    v1 = load_template("people")
    body = {
        **v1.body,
        "mappings": {
            **v1.body["mappings"],
            "properties": {**v1.body["mappings"]["properties"], "segment": {"type": "keyword"}},
        },
    }
    monkeypatch.setattr(search_index, "load_template", lambda name: IndexTemplate(name, v1.version + 1, body))
    report = world.indexer.run()
    assert report.index == f"{world.alias}_v{v1.version + 1}"
    assert list(world.client.indices.get_alias(name=world.alias)) == [report.index]
    after = world.indexed()
    assert {k: v["_version"] for k, v in after.items()} == {k: v["_version"] for k, v in before.items()}
    assert IndexManager(
        world.client, world.alias, IndexTemplate("people", v1.version + 1, body), "x"
    ).drop_old() == [f"{world.alias}_v{v1.version}"]


def test_synonyms_apply_to_people_search(world: World) -> None:
    world.capture()
    world.indexer.run()
    pid = sorted(world.patient_ids(), key=int)[0]
    world.sql(f"UPDATE assessments SET notes = 'recommends running twice a week' WHERE patient_id = {pid}")
    world.capture()
    world.indexer.run()
    world.client.indices.refresh(index=world.alias)
    from connectors.opensearch.search import search

    hits = search(world.client, world.alias, "jogging")
    assert pid in {h.doc_id for h in hits}
    assert any(
        "<em>running</em>" in f for h in hits if h.doc_id == pid for fs in h.highlights.values() for f in fs
    )


def test_decomposed_text_in_the_source_is_indexed_and_found_composed(world: World) -> None:
    world.capture()
    world.indexer.run()
    pid = sorted(world.patient_ids(), key=int)[0]
    decomposed = "Zoe\u0301"  # "e" + COMBINING ACUTE ACCENT, as some clients write it
    world.sql(f"UPDATE patients SET given_name = '{decomposed}' WHERE patient_id = {pid}")
    world.capture()
    world.indexer.run()
    assert world.indexed()[pid]["name"].startswith("Zoé")  # U+00E9: NFC
    from connectors.opensearch.search import search

    for query in ("Zoé", decomposed, "zoe"):
        assert pid in {h.doc_id for h in search(world.client, world.alias, query)}, query
