"""Search in Dagster: the synonym package and the people index as assets, a sensor, checks.

* `search/synonyms` publishes the synonyms table as a dictionary version (metadata: the live
  version). `synonyms_changed` watches the lake's commit log for new commits of the synonyms
  table and requests a run of `publish_synonyms` — no triggers, no Lambda.
* `search/people` indexes the changed 360° documents. Checks: the index holds one document per
  patient in the lake, and a canary query set (names and emails of a few patients) finds them.
Each body is one call into `pipelines`, plus its metadata.
"""

import random
from collections.abc import Iterator
from typing import Any

import dagster as dg

from connectors.lake.current import MergeConflictError
from connectors.opensearch.client import open_client
from connectors.opensearch.search import search
from dagster_project.assets import merge_pool, table_key
from pipelines.config import LakehouseConfig
from pipelines.search.docs import PeopleDocuments, PeopleSources
from pipelines.search.index import PeopleIndexer
from pipelines.search.synonym_publish import merge_synonyms_table, publish_synonyms, synonyms_path
from pipelines.search.tenants import people_tenant_key

SYNONYMS_KEY = dg.AssetKey(["search", "synonyms"])
PEOPLE_KEY = dg.AssetKey(["search", "people"])
CANARIES = 3  # patients in the canary query set


def build_search_definitions(config: LakehouseConfig) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """(assets, checks, jobs, sensors) for the `[search]` section of a configuration."""
    search_config = config.search
    tenant_key = people_tenant_key(config)  # tenant aliases kept with the index (decisions §22)
    syn = search_config.synonyms
    sources = PeopleSources(
        search_config.mysql_source, search_config.mysql_schema, search_config.devices_source
    )
    configured = {s.name: s for s in config.sources}
    synonyms_table = _source_table_name(configured.get(syn.source), syn.lake_table)
    people_inputs = [
        table_key(source, _source_table_name(configured.get(source), lake_table), "current")
        for source, lake_table in sources.tables()
        if source in configured
    ]

    @dg.asset(
        key=SYNONYMS_KEY,
        group_name="search",
        kinds={"opensearch", "s3"},
        deps=[table_key(syn.source, synonyms_table, "current")] if syn.source in configured else [],
        required_resource_keys={"lake"},
        description="The synonyms table as a versioned dictionary, live in the search analyzers.",
        # It merges the synonyms table's current state first: maintenance of that source's lake.
        pool=merge_pool(syn.source),
    )
    def synonyms(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        lake = context.resources.lake.lake()
        try:
            merge_synonyms_table(lake, syn)
        except MergeConflictError:  # the other merger got there first: catch up to the newest commit
            merge_synonyms_table(lake, syn)
        report = publish_synonyms(lake, search_config, open_client(search_config.opensearch))
        return dg.MaterializeResult(
            metadata={
                "live_s3_version": report.s3_version,
                "sha256": report.sha256,
                "lines": report.lines,
                "rejected_rows": dg.MetadataValue.json(
                    [{"row_id": r.row_id, "reason": r.reason} for r in report.rejected]
                ),
                "new_version": report.changed,
                "applied": report.applied,
                "package": report.package_id,
                "package_version": report.package_version,
                "reloaded_indices": ", ".join(report.reloaded),
                "seconds": round(report.seconds, 3),
            }
        )

    @dg.asset(
        key=PEOPLE_KEY,
        group_name="search",
        kinds={"opensearch"},
        deps=[*people_inputs, SYNONYMS_KEY],
        required_resource_keys={"lake"},
        description="The customer/patient 360° index (alias), kept in step with the lake.",
    )
    def people(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        indexer = PeopleIndexer(
            context.resources.lake.lake(), open_client(search_config.opensearch), alias=search_config.people_alias,
            sources=sources, synonyms_path=synonyms_path(search_config), tenant_key=tenant_key,
        )  # fmt: skip
        report = indexer.run()
        r = report.result
        problem = report.stale_problem()
        if problem:  # the index was written from another lake: nothing new would ever land
            raise dg.Failure(
                description=problem, metadata={"stale_skipped": r.stale, "patients": report.patients}
            )
        return dg.MaterializeResult(
            metadata={
                "index": report.index,
                "full_rebuild": report.full,
                "patients": report.patients,
                "indexed": r.indexed,
                "deleted": r.deleted,
                "stale_skipped": r.stale,
                "dead_lettered": len(r.failures),
                "dead_letter_file": report.dead_letter_file or "",
                "document_version": report.version,
                "seconds": round(report.seconds, 3),
            }
        )

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                "document_count_matches_lake",
                asset=PEOPLE_KEY,
                description="The index holds one document per patient in the lake. When it fails, "
                "materialize `search/people` (changed patients are re-indexed) and look at its "
                "`dead_lettered` count and dead-letter file.",
            ),
            dg.AssetCheckSpec(
                "canary_query_finds_patient",
                asset=PEOPLE_KEY,
                description="For a few patients drawn from the lake, a search for their name and a term "
                "query for their email find them. When it fails, `canaries` lists each miss: check the "
                "analyzers and synonyms (`search/synonyms`) and re-index with `lakehouse index --full`.",
            ),
        ],
        can_subset=True,
        required_resource_keys={"lake"},
        name="people_index_checks",
    )
    def people_checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        client = open_client(search_config.opensearch)
        documents = PeopleDocuments(context.resources.lake.lake(), sources)
        ids = documents.all_patient_ids()
        client.indices.refresh(index=search_config.people_alias)
        indexed = int(client.count(index=search_config.people_alias)["count"])
        selected = {k.name for k in context.selected_asset_check_keys}
        if "document_count_matches_lake" in selected:
            yield dg.AssetCheckResult(
                check_name="document_count_matches_lake",
                passed=indexed == len(ids),
                metadata={"documents": indexed, "patients_in_lake": len(ids)},
            )
        if "canary_query_finds_patient" not in selected:
            return
        # The canary set: for a few patients drawn from the lake, their name and their email
        # (an exact keyword) must each find them; every miss is listed, by patient id and the kind
        # of query only: no personal data goes into the event log.
        sample = random.Random(len(ids)).sample(ids, min(CANARIES, len(ids)))
        results: list[dict[str, Any]] = []
        for doc in documents.build(sample):
            source = doc.source or {}
            queries = [("all_text", str(source.get("name") or ""))]
            for field, text in queries:
                hits = (
                    search(client, search_config.people_alias, text, fields=[field], size=20) if text else []
                )
                results.append(
                    {
                        "patient_id": doc.doc_id,
                        "query": "name",
                        "found": doc.doc_id in {h.doc_id for h in hits},
                    }
                )
            if source.get("email"):
                found = client.search(
                    index=search_config.people_alias, body={"query": {"term": {"email": source["email"]}}}
                )["hits"]["hits"]
                results.append(
                    {
                        "patient_id": doc.doc_id,
                        "query": "email",
                        "found": doc.doc_id in {h["_id"] for h in found},
                    }
                )
        yield dg.AssetCheckResult(
            check_name="canary_query_finds_patient",
            passed=bool(results) and all(r["found"] for r in results),
            metadata={
                "canaries": dg.MetadataValue.json(results),
                "misses": sum(not r["found"] for r in results),
            },
        )

    publish_job = dg.define_asset_job("publish_synonyms", selection=dg.AssetSelection.assets(SYNONYMS_KEY))

    @dg.sensor(job=publish_job, minimum_interval_seconds=5, default_status=dg.DefaultSensorStatus.STOPPED)
    def synonyms_changed(context: dg.SensorEvaluationContext) -> Iterator[dg.RunRequest]:
        """A new commit of the synonyms table in the lake: publish the next dictionary version."""
        from connectors.lake.lake import Lake

        latest = Lake(config.lake).commit_log(syn.source).latest()
        head = latest.heads.get(syn.lake_table, 0) if latest else 0
        if head and str(head) != context.cursor:
            context.update_cursor(str(head))
            yield dg.RunRequest(run_key=f"synonyms-{head}")

    return [synonyms, people], [people_checks], [publish_job], [synonyms_changed]


def _source_table_name(source: Any, lake_table: str) -> str:
    """The table's name as the source lists it (asset keys use it), from its lake name."""
    if source is None:
        return lake_table.split("__", 1)[-1]
    for table in source.tables:
        if lake_table.endswith("__" + table.lower()):
            return str(table)
    return lake_table.split("__", 1)[-1]
