"""360° documents indexed from the lake, docs/s, next to opensearch-py `helpers.bulk` of the same documents.

Seeds a sample health world of PATIENTS patients in throw-away databases on the local stack,
captures it into a fresh lake with the real MySQL source, then, into fresh indices with the same
template (synonym search analyzer) on the local OpenSearch node:

* ours, from the change logs: `PeopleIndexer.run(full=True)` — reads the current-state tables,
  builds every document, writes them with external versions (what `lakehouse index` does);
* ours, bulk only: our `BulkIndexer` over the documents the first step built;
* baseline: `opensearch.helpers.bulk` over the same documents (same versions, same chunk bytes).

Run by hand with the stack up:  .venv/bin/python bench/bench_search_indexing.py [patients] [rounds]
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from opensearchpy import helpers  # noqa: E402
from world_databases import WorldDatabases, world_databases  # noqa: E402

from connectors.lake.config import LakeConfig  # noqa: E402
from connectors.lake.lake import Lake  # noqa: E402
from connectors.mysql.config import MySQLSourceConfig  # noqa: E402
from connectors.opensearch.bulk import BulkIndexer  # noqa: E402
from connectors.opensearch.client import open_client  # noqa: E402
from connectors.opensearch.config import OpenSearchConfig  # noqa: E402
from connectors.opensearch.indices import IndexManager, load_template  # noqa: E402
from pipelines.capture.runner import sync_source  # noqa: E402
from pipelines.capture.sources import open_source  # noqa: E402
from pipelines.search.docs import PeopleDocuments, PeopleSources  # noqa: E402
from pipelines.search.index import PeopleIndexer  # noqa: E402
from pipelines.world import create_world  # noqa: E402

PATIENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
TABLES = (
    "patients",
    "health_preferences",
    "plan_enrollments",
    "fitness_plans",
    "insurance_claims",
    "assessments",
)
CHUNK_BYTES = 5 * 1024 * 1024


def main() -> None:
    tag = uuid.uuid4().hex[:8]
    with world_databases(f"bench_{tag}") as world:
        run(world, tag)


def run(world: WorldDatabases, tag: str) -> None:
    stack, my_db = world.stack, world.name
    client = open_client(OpenSearchConfig(url=stack.opensearch_endpoint))
    package = stack.service_dir("opensearch") / "config" / "analyzers" / f"bench-{tag}"
    package.write_text("jogging, running\n")
    try:
        started = time.perf_counter()
        create_world(world.mysql, world.postgres, seed=5, patients=PATIENTS)
        print(f"world of {PATIENTS:,} patients seeded in {time.perf_counter() - started:.0f} s")
        with tempfile.TemporaryDirectory() as lake_dir:
            lake = Lake(LakeConfig(root=lake_dir))
            config = MySQLSourceConfig(
                name="health", host=stack.host, port=stack.mariadb_port, user=stack.admin_user,
                password=stack.admin_password, database=my_db, tables=TABLES, server_id=0,
            )  # fmt: skip
            source = open_source(config)
            try:
                sync_source(lake, source)
            finally:
                source.close()
            sources = PeopleSources(mysql="health", mysql_schema=my_db, devices=None)
            documents = PeopleDocuments(lake, sources)
            template = load_template("people")
            for n in range(1, ROUNDS + 1):
                ours_alias, bulk_alias, base_alias = (
                    f"bench-{tag}-{n}-{k}" for k in ("ours", "bulk", "base")
                )
                indexer = PeopleIndexer(
                    lake, client, alias=ours_alias, sources=sources, synonyms_path=f"analyzers/{package.name}"
                )
                # Every side gets its (empty) index created before its clock starts.
                IndexManager(client, ours_alias, template, f"analyzers/{package.name}").ensure()
                t = time.perf_counter()
                report = indexer.run(full=True)
                ours_s = time.perf_counter() - t
                docs = documents.build(documents.all_patient_ids())
                index = IndexManager(client, bulk_alias, template, f"analyzers/{package.name}").ensure()
                t = time.perf_counter()
                bulk = BulkIndexer(client, index, max_bytes=CHUNK_BYTES).write(docs)
                bulk_s = time.perf_counter() - t
                base_index = IndexManager(client, base_alias, template, f"analyzers/{package.name}").ensure()
                actions = (
                    {
                        "_index": base_index,
                        "_id": d.doc_id,
                        "_version": d.version,
                        "_version_type": "external",
                        "_source": d.source,
                    }
                    for d in docs
                )
                t = time.perf_counter()
                ok, errors = helpers.bulk(
                    client, actions, max_chunk_bytes=CHUNK_BYTES, chunk_size=5_000, stats_only=True
                )
                base_s = time.perf_counter() - t
                assert report.result.indexed == bulk.indexed == ok == len(docs) and not errors
                print(f"round {n}: {len(docs):,} documents")
                print(
                    f"  ours, from the lake (build + index)    {ours_s:7.2f} s  {len(docs) / ours_s:>9,.0f} docs/s"
                )
                print(
                    f"  ours, bulk only (prepared documents)   {bulk_s:7.2f} s  {len(docs) / bulk_s:>9,.0f} docs/s"
                )
                print(
                    f"  opensearch-py helpers.bulk (prepared)  {base_s:7.2f} s  {len(docs) / base_s:>9,.0f} docs/s"
                )
                print(
                    f"  ratio from the lake / helpers.bulk: {base_s / ours_s:.2f}x; bulk only / helpers.bulk: {base_s / bulk_s:.2f}x"
                )
                for alias in (ours_alias, bulk_alias, base_alias):
                    for name in client.indices.get(index=f"{alias}*"):
                        client.indices.delete(index=name)
    finally:
        # Indices first: an index left behind without its synonyms file turns the node red.
        for name in client.indices.get(index=f"bench-{tag}-*", ignore_unavailable=True):
            client.indices.delete(index=name)
        package.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
