"""Search in Dagster: the synonyms and people assets materialize, their checks pass, the sensor fires."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_project.definitions import build_definitions
from dagster_project.resources import password_env_var
from pipelines.config import load_config, parse_config
from tests.search.test_people_index import TABLES, World

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_configuration_has_search_assets_checks_and_sensor() -> None:
    defs = build_definitions(load_config(REPO / "lakehouse.toml"))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"search/synonyms", "search/people"} <= keys
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("search/people", "document_count_matches_lake") in checks
    assert ("search/people", "canary_query_finds_patient") in checks
    assert "synonyms_changed" in [s.name for s in defs.sensors or []]


def test_synonyms_and_people_materialize_with_metadata_and_passing_checks(
    mysql_db: Any, pg_db: Any, stack: Any, aws_client_kwargs: dict[str, str], tmp_path: Path
) -> None:
    world = World(mysql_db, pg_db, stack, tmp_path)
    try:
        config = parse_config(
            {
                "lake": {"root": str(tmp_path / "lake")},
                "sources": [
                    {
                        "kind": "mysql", "name": "health", "host": mysql_db.host, "port": mysql_db.port,
                        "user": mysql_db.cdc_user, "database": mysql_db.name, "tables": [*TABLES, "SynonymsTable"],
                    }
                ],
                "search": {
                    "opensearch": {"url": stack.opensearch_endpoint},
                    "people_alias": world.alias,
                    "mysql_source": "health",
                    "mysql_schema": mysql_db.name,
                    "devices_source": None,
                    "synonyms": {
                        "source": "health",
                        "lake_table": f"{mysql_db.name}__synonymstable",
                        "package": world.package.name,
                        "local_config_dir": str(world.package.parent.parent),
                        "bucket": f"syn-{world.alias}",
                        "s3": {"endpoint_url": aws_client_kwargs["endpoint_url"], "access_key_id": "testing", "secret_access_key": "testing"},
                    },
                },
            }
        )  # fmt: skip
        os.environ[password_env_var("health")] = mysql_db.cdc_password.get_secret_value()
        defs = build_definitions(config)
        instance = dg.DagsterInstance.ephemeral()
        # Every asset but the table partitions (`<source>_by_table`, run per table) in one run.
        graph = defs.resolve_asset_graph()
        keys = {
            k
            for k in graph.get_all_asset_keys()
            if graph.get(k).is_executable and not (graph.get(k).group_name or "").endswith("_by_table")
        }
        checks = {c for c in graph.asset_check_keys if c.asset_key in keys}
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection=keys, asset_check_selection=checks
        )
        result = job.execute_in_process(instance=instance)
        assert result.success
        mats = {
            e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()
            if e.asset_key is not None
        }
        synonyms = mats["search/synonyms"]
        assert synonyms["lines"].value > 0 and synonyms["live_s3_version"].value and synonyms["applied"].value
        people = mats["search/people"]
        assert people["indexed"].value == len(world.patient_ids()) and people["dead_lettered"].value == 0
        evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert evaluations["document_count_matches_lake"] and evaluations["canary_query_finds_patient"]
        # The canaries are listed by patient id and query kind: no name or e-mail in the event log.
        [canary] = [
            e for e in result.get_asset_check_evaluations() if e.check_name == "canary_query_finds_patient"
        ]
        canaries = canary.metadata["canaries"].value
        assert canaries and all(set(c) == {"patient_id", "query", "found"} for c in canaries)  # type: ignore[union-attr]
        assert {c["query"] for c in canaries} <= {"name", "email"}  # type: ignore[union-attr, index]

        # The sensor: nothing new -> no run; a synonyms commit in the lake -> one run request.
        sensor = defs.resolve_sensor_def("synonyms_changed")

        def tick(cursor: str | None) -> tuple[int, str | None]:
            data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))
            return len(data.run_requests or []), data.cursor

        _, cursor = tick(None)
        assert tick(cursor) == (0, cursor)
        world.sql("INSERT INTO SynonymsTable (Base_Term, Synonym_1) VALUES ('physio', 'physiotherapist')")
        assert defs.resolve_job_def("micro_batches").execute_in_process(instance=instance).success
        fired, moved = tick(cursor)
        assert fired == 1 and moved != cursor
    finally:
        os.environ.pop(password_env_var("health"), None)
        for name in world.client.indices.get(index=f"{world.alias}*"):
            world.client.indices.delete(index=name)
        world.package.unlink(missing_ok=True)
