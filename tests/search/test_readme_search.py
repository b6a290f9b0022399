"""The README's search examples, run as written through the CLI on an indexed sample world.

The seeded world (its seed synonyms included) is captured into a fresh lake, the synonyms are
published and the people documents indexed; then every `lakehouse search "..."` line of the
README, and the query of its Python example, must print ranked results.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.lake.storage import S3Options
from connectors.mysql.config import MySQLSourceConfig
from connectors.opensearch.config import OpenSearchConfig
from pipelines.capture.runner import sync_source
from pipelines.capture.sources import open_source
from pipelines.search.config import SearchConfig, SynonymsConfig
from pipelines.search.synonym_publish import publish_synonyms
from tests.search.test_people_index import World

REPO = Path(__file__).resolve().parents[2]


def readme_queries() -> list[str]:
    """The queries of the README's search examples: CLI lines and the Python one-liner."""
    text = (REPO / "README.md").read_text()
    cli = re.findall(r'lakehouse search "([^"]+)"', text)
    python = re.findall(r'Searcher\.from_config\(.*?\)\.search\("([^"]+)"\)', text)
    return [*cli, *python]


@pytest.fixture
def indexed_world(
    mysql_db: Any, pg_db: Any, stack: Any, aws_client_kwargs: dict[str, str], tmp_path: Path
) -> Iterator[tuple[World, Path]]:
    world = World(mysql_db, pg_db, stack, tmp_path)
    try:
        world.capture()
        synonyms = MySQLSourceConfig(
            name="syn", host=mysql_db.host, port=mysql_db.port, user=mysql_db.cdc_user,
            password=mysql_db.cdc_password, database=mysql_db.name, tables=("SynonymsTable",), server_id=0,
        )  # fmt: skip
        source = open_source(synonyms)
        try:
            sync_source(world.lake, source)
        finally:
            source.close()
        config = SearchConfig(
            opensearch=OpenSearchConfig(url=stack.opensearch_endpoint),
            people_alias=world.alias,
            synonyms=SynonymsConfig(
                source="syn",
                lake_table=f"{mysql_db.name}__synonymstable".lower(),
                package=world.package.name,
                local_config_dir=str(world.package.parent.parent),
                bucket=f"readme-{uuid.uuid4().hex[:8]}",
                s3=S3Options(
                    endpoint_url=aws_client_kwargs["endpoint_url"], access_key_id="testing", secret_access_key="testing"
                ),
            ),
        )  # fmt: skip
        published = publish_synonyms(world.lake, config, world.client)
        assert published.lines > 0 and not published.rejected
        assert world.indexer.run().result.indexed == len(world.patient_ids())
        config_file = tmp_path / "lakehouse.toml"
        config_file.write_text(
            f'[lake]\nroot = "{tmp_path}/lake"\n\n[search]\npeople_alias = "{world.alias}"\n\n'
            f'[search.opensearch]\nurl = "{stack.opensearch_endpoint}"\n'
        )
        yield world, config_file
    finally:
        for name in world.client.indices.get(index=f"{world.alias}*"):
            world.client.indices.delete(index=name)
        world.package.unlink(missing_ok=True)


def test_the_readme_search_examples_print_results(indexed_world: tuple[World, Path]) -> None:
    world, config_file = indexed_world
    queries = readme_queries()
    assert queries, "the README documents no `lakehouse search` example"
    world.client.indices.refresh(index=world.alias)
    for query in queries:
        out = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "--config", str(config_file), "search", query],
            cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip
        assert out.returncode == 0 and out.stderr == "", (query, out.stderr)
        lines = out.stdout.splitlines()
        assert lines and lines[0].lstrip().startswith("1."), (query, out.stdout)
        assert "<em>" in out.stdout, (query, out.stdout)
