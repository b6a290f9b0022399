"""The 360° people index: built from the lake, kept in step incrementally, versions that protect order.

A small seeded health world in MariaDB (and its PostgreSQL half) is captured into a fresh lake by
the real MySQL source; the indexer writes to the local OpenSearch node under a unique alias.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from connectors.opensearch.bulk import BulkIndexer, Document
from connectors.opensearch.client import open_client
from connectors.opensearch.config import OpenSearchConfig
from connectors.opensearch.indices import IndexManager, IndexTemplate, load_template
from pipelines import search_docs, search_index
from pipelines.runner import sync_source
from pipelines.search_docs import PeopleSources
from pipelines.search_index import PeopleIndexer
from pipelines.sources import open_source
from pipelines.world import create_world

TABLES = (
    "patients",
    "health_preferences",
    "plan_enrollments",
    "fitness_plans",
    "insurance_claims",
    "assessments",
)


class World:
    def __init__(self, mysql_db: Any, pg_db: Any, stack: Any, tmp_path: Path) -> None:
        self.my = mysql_db.admin_connect()
        create_world(self.my, pg_db.admin_connect(), seed=3, patients=25)
        self.source = MySQLSourceConfig(
            name="health", host=mysql_db.host, port=mysql_db.port, user=mysql_db.cdc_user,
            password=mysql_db.cdc_password, database=mysql_db.name, tables=TABLES, server_id=0,
        )  # fmt: skip
        self.lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
        self.client = open_client(OpenSearchConfig(url=stack.opensearch_endpoint))
        self.alias = f"people-{uuid.uuid4().hex[:8]}"
        self.package = stack.service_dir("opensearch") / "config" / "analyzers" / f"{self.alias}-syn"
        self.package.write_text("jogging, running\n")
        self.sources = PeopleSources(mysql="health", mysql_schema=mysql_db.name, devices=None)
        self.indexer = PeopleIndexer(
            self.lake,
            self.client,
            alias=self.alias,
            sources=self.sources,
            synonyms_path=f"analyzers/{self.package.name}",
        )

    def sql(self, *statements: str) -> None:
        with self.my.cursor() as cur:
            for s in statements:
                cur.execute(s)
        self.my.commit()

    def capture(self) -> None:
        source = open_source(self.source)
        try:
            sync_source(self.lake, source)
        finally:
            source.close()

    def patient_ids(self) -> set[str]:
        with self.my.cursor() as cur:
            cur.execute("SELECT patient_id FROM patients")
            return {str(r[0]) for r in cur.fetchall()}

    def indexed(self) -> dict[str, dict[str, Any]]:
        self.client.indices.refresh(index=self.alias)
        hits = self.client.search(
            index=self.alias, body={"size": 1000, "query": {"match_all": {}}, "version": True}
        )
        return {h["_id"]: {**h["_source"], "_version": h["_version"]} for h in hits["hits"]["hits"]}


@pytest.fixture
def world(mysql_db: Any, pg_db: Any, stack: Any, tmp_path: Path) -> Any:
    w = World(mysql_db, pg_db, stack, tmp_path)
    yield w
    for name in w.client.indices.get(index=f"{w.alias}*"):
        w.client.indices.delete(index=name)
    w.package.unlink(missing_ok=True)


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


def test_an_index_written_from_another_lake_fails_the_run_until_recreated(
    world: World, tmp_path: Path
) -> None:
    world.capture()
    world.capture()  # more commits: this lake's document versions run ahead of a fresh lake's
    world.sql(
        "UPDATE patients SET city = 'Elsewhere' WHERE patient_id = (SELECT MIN(patient_id) FROM patients)"
    )
    world.capture()
    first = world.indexer.run()
    assert first.stale_problem() is None and first.result.indexed == len(world.patient_ids())
    # The lake rebuilt at a new root: its commit numbers, and so its versions, start again.
    rebuilt = Lake(LakeConfig(root=str(tmp_path / "rebuilt")))
    source = open_source(world.source)
    try:
        sync_source(rebuilt, source)
    finally:
        source.close()
    indexer = PeopleIndexer(
        rebuilt,
        world.client,
        alias=world.alias,
        sources=world.sources,
        synonyms_path=world.indexer.synonyms_path,
    )
    refused = indexer.run(full=True)
    assert refused.result.stale == len(world.patient_ids()) and refused.result.indexed == 0
    problem = refused.stale_problem()
    assert problem is not None and "lakehouse index --recreate" in problem and world.alias in problem
    again = indexer.run(recreate=True)
    assert again.stale_problem() is None and again.result.indexed == len(world.patient_ids())
    assert {d["_version"] for d in world.indexed().values()} == {again.version}


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
