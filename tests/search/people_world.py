"""The seeded health world every people-index test starts from: MariaDB captured into a lake by the
real MySQL source, an indexer writing to the local OpenSearch node under a unique alias."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from connectors.opensearch.client import open_client
from connectors.opensearch.config import OpenSearchConfig
from pipelines.capture.runner import sync_source
from pipelines.capture.sources import open_source
from pipelines.search.docs import PeopleSources
from pipelines.search.index import PeopleIndexer
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
    """25 seeded patients in MariaDB, their lake, and an indexer to a unique alias on the local node."""

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

    def capture(self, lake: Lake | None = None) -> None:
        """Capture what changed into the world's lake (or into `lake`)."""
        source = open_source(self.source)
        try:
            sync_source(lake or self.lake, source)
        finally:
            source.close()

    def indexer_for(self, lake: Lake) -> PeopleIndexer:
        """An indexer of `lake` writing to the same alias (a rebuilt or restored lake, say)."""
        return PeopleIndexer(
            lake,
            self.client,
            alias=self.alias,
            sources=self.sources,
            synonyms_path=self.indexer.synonyms_path,
        )

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
