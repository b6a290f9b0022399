"""The issue's acceptance scenario, end to end on the real local services.

SynonymsTable lives in MariaDB (as Aurora MySQL); its changes reach the lake through the binlog
source; the synonym pipeline renders the dictionary, versions it in S3 (moto), installs it on
the local OpenSearch node and reloads the search analyzers — no reindex, no trigger, no Lambda.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.lake.storage import S3Options
from connectors.mysql.config import MySQLSourceConfig
from connectors.opensearch.bulk import BulkIndexer, Document
from connectors.opensearch.client import open_client
from connectors.opensearch.config import OpenSearchConfig
from connectors.opensearch.indices import IndexManager
from connectors.opensearch.search import search
from pipelines.capture.runner import sync_source
from pipelines.capture.sources import open_source
from pipelines.search.config import SearchConfig, SynonymsConfig
from pipelines.search.synonym_publish import publish_synonyms
from pipelines.search.synonyms_store import SynonymStore
from tests.search.titles import TITLES

DOCUMENTS = ["tennis shoe", "hightop", "croissant", "ice cream"]


class Scenario:
    def __init__(self, mysql_db: Any, stack: Any, aws: dict[str, str], tmp_path: Path) -> None:
        self.conn = mysql_db.admin_connect()
        self.run_sql(
            "CREATE TABLE SynonymsTable (SynID INT AUTO_INCREMENT PRIMARY KEY, Base_Term VARCHAR(255) NOT NULL,"
            " Synonym_1 VARCHAR(255) NULL, Synonym_2 VARCHAR(255) NULL)",
        )
        self.source = MySQLSourceConfig(
            name="syn", host=mysql_db.host, port=mysql_db.port, user=mysql_db.cdc_user,
            password=mysql_db.cdc_password, database=mysql_db.name, tables=("SynonymsTable",), server_id=0,
            batch_max_seconds=0.2,
        )  # fmt: skip
        self.lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
        tag = uuid.uuid4().hex[:8]
        self.alias = f"titles-{tag}"
        self.config = SearchConfig(
            opensearch=OpenSearchConfig(url=stack.opensearch_endpoint),
            people_alias=self.alias,
            synonyms=SynonymsConfig(
                source="syn",
                lake_table=f"{mysql_db.name}__synonymstable".lower(),
                package=f"syn-{tag}",
                local_config_dir=str(stack.service_dir("opensearch") / "config"),
                bucket=f"synonyms-{tag}",
                key="synonyms/test.txt",
                s3=S3Options(
                    endpoint_url=aws["endpoint_url"], access_key_id="testing", secret_access_key="testing"
                ),
            ),
        )
        self.client = open_client(self.config.opensearch)
        self.s3 = boto3.client("s3", **aws)

    def run_sql(self, *statements: str) -> None:
        with self.conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
        self.conn.commit()

    def capture(self) -> None:
        """What the CDC pipeline does: the binlog's changes into the lake, merged."""
        source = open_source(self.source)
        try:
            sync_source(self.lake, source)
        finally:
            source.close()

    def publish(self) -> Any:
        return publish_synonyms(self.lake, self.config, self.client, s3=self.s3)

    def titles(self, text: str) -> list[str]:
        return sorted(h.source["title"] for h in search(self.client, self.alias, text))

    def expands_to(self, text: str) -> set[str]:
        out = self.client.indices.analyze(index=self.alias, body={"analyzer": "text_search", "text": text})
        return {t["token"] for t in out["tokens"]}


@pytest.fixture
def scenario(mysql_db: Any, stack: Any, aws_client_kwargs: dict[str, str], tmp_path: Path) -> Any:
    s = Scenario(mysql_db, stack, aws_client_kwargs, tmp_path)
    yield s
    for name in s.client.indices.get(index=f"{s.alias}*"):
        s.client.indices.delete(index=name)
    Path(s.config.synonyms.local_config_dir, "analyzers", s.config.synonyms.package).unlink(missing_ok=True)


def test_synonym_rows_become_live_synonyms_without_reindexing(scenario: Scenario) -> None:
    s = scenario
    s.run_sql(
        "INSERT INTO SynonymsTable (Base_Term, Synonym_1, Synonym_2) VALUES ('danish', 'croissant', 'pastry')"
    )
    s.capture()
    first = s.publish()
    assert first.changed and first.lines == 1
    # No index exists yet: nothing was reloaded, and the report says where the dictionary waits.
    assert first.reloaded == [] and first.not_created == [s.alias]
    assert first.describe().endswith(
        f"stored new version {first.s3_version}; on the node as analyzers/{s.config.synonyms.package}; "
        f"no index uses it yet, it applies when the {s.alias} index is created"
    )
    # The index reads the dictionary the pipeline installed; the documents go in once.
    index = IndexManager(s.client, s.alias, TITLES, f"analyzers/{s.config.synonyms.package}").ensure()
    docs = [Document(str(i), 1, {"title": title}) for i, title in enumerate(DOCUMENTS)]
    assert BulkIndexer(s.client, s.alias, refresh="wait_for").write(docs).indexed == 4
    assert s.titles("danish") == ["croissant"]
    assert s.titles("gelato") == []

    # A new row in Aurora MySQL: captured, published, live within seconds — the index is untouched.
    s.run_sql(
        "INSERT INTO SynonymsTable (Base_Term, Synonym_1, Synonym_2) VALUES ('gelato', 'ice cream', NULL)",
        "INSERT INTO SynonymsTable (Base_Term, Synonym_1, Synonym_2) VALUES ('sneaker', 'tennis shoe', 'hightop')",
    )
    started = time.monotonic()
    s.capture()
    second = s.publish()
    assert second.changed and second.applied and second.reloaded == [s.alias]
    assert (
        f"stored new version {second.s3_version}; search analyzers of {s.alias} reloaded" in second.describe()
    )
    assert s.titles("gelato") == ["ice cream"]
    assert time.monotonic() - started < 15
    assert s.client.indices.get_alias(name=s.alias) == {index: {"aliases": {s.alias: {}}}}  # no new index
    # Multi-word synonyms work in both directions.
    assert {"ice", "cream"} <= s.expands_to("gelato") and "gelato" in s.expands_to("ice cream")
    assert s.titles("sneaker") == ["hightop", "tennis shoe"]
    assert s.titles("hightop") == ["hightop", "tennis shoe"]

    # Nothing changed: no new version, nothing applied.
    s.capture()
    unchanged = s.publish()
    assert not unchanged.changed and unchanged.describe().endswith(
        f"unchanged (version {second.s3_version}); already live, nothing to apply"
    )

    # Deleting the row removes the synonym in the next version.
    s.run_sql("DELETE FROM SynonymsTable WHERE Base_Term = 'danish'")
    s.capture()
    third = s.publish()
    assert third.changed and s.titles("danish") == []
    assert s.titles("croissant") == ["croissant"]
    store = SynonymStore(s.s3, s.config.synonyms.bucket, s.config.synonyms.key)
    assert len(store.history()) == 3
    assert "danish" in store.read_text(store.history()[-1].version_id)  # the first version is kept


def test_a_malformed_row_is_left_out_and_reported_with_its_id(scenario: Scenario) -> None:
    s = scenario
    s.run_sql(
        "INSERT INTO SynonymsTable (SynID, Base_Term, Synonym_1) VALUES (7, 'danish', 'croissant')",
        "INSERT INTO SynonymsTable (SynID, Base_Term, Synonym_1) VALUES (8, 'bad, term', 'x')",
        "INSERT INTO SynonymsTable (SynID, Base_Term, Synonym_1) VALUES (9, 'lonely', NULL)",
    )
    s.capture()
    report = s.publish()
    assert report.lines == 1
    assert sorted(r.row_id for r in report.rejected) == [8, 9]
