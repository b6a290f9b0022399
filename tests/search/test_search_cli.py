"""`lakehouse search` prints ranked, highlighted results — what the engine sees — or one line of error."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.opensearch.bulk import BulkIndexer, Document
from connectors.opensearch.client import open_client
from connectors.opensearch.config import OpenSearchConfig
from connectors.opensearch.indices import IndexManager
from tests.search.titles import TITLES

REPO = Path(__file__).resolve().parents[2]


class Titles:
    """A titles index under a unique alias, with its own synonyms, and a config file naming it."""

    def __init__(self, stack: Any, tmp_path: Path) -> None:
        self.client = open_client(OpenSearchConfig(url=stack.opensearch_endpoint))
        self.alias = f"cli-{uuid.uuid4().hex[:8]}"
        self.package = stack.service_dir("opensearch") / "config" / "analyzers" / self.alias
        self.package.write_text("danish, croissant, pastry\n")
        self.index = IndexManager(self.client, self.alias, TITLES, f"analyzers/{self.alias}").ensure()
        docs = [
            Document(str(i), 1, {"title": t})
            for i, t in enumerate(["croissant", "tennis shoe", "butter croissant", "Café Cardio"])
        ]
        BulkIndexer(self.client, self.alias, refresh="wait_for").write(docs)
        self.config = tmp_path / "lakehouse.toml"
        self.config.write_text(
            f'[lake]\nroot = "{tmp_path}/lake"\n\n[search]\npeople_alias = "{self.alias}"\n\n'
            f'[search.opensearch]\nurl = "{stack.opensearch_endpoint}"\n'
        )

    def search(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "--config", str(self.config), "search", *args],
            cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip


@pytest.fixture
def titles(stack: Any, tmp_path: Path) -> Iterator[Titles]:
    t = Titles(stack, tmp_path)
    yield t
    for name in t.client.indices.get(index=f"{t.alias}*"):
        t.client.indices.delete(index=name)
    t.package.unlink(missing_ok=True)


def test_search_prints_ranked_highlighted_results(titles: Titles) -> None:
    out = titles.search("danish")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].lstrip().startswith("1.") and "croissant" in lines[0]
    assert any("<em>croissant</em>" in line for line in lines)
    assert "tennis shoe" not in out.stdout
    missing = titles.search("gelato", "--index", titles.alias)
    assert missing.returncode == 0 and missing.stdout.strip() == "no results"


def test_a_decomposed_query_finds_the_composed_text(titles: Titles) -> None:
    """A query for "Café" typed as "Cafe" + U+0301 (NFD, as macOS and some keyboards send it)."""
    out = titles.search("Cafe\u0301")
    assert out.returncode == 0, out.stderr
    assert "<em>Café</em> Cardio" in out.stdout


def test_a_missing_index_is_one_line_naming_what_exists(titles: Titles) -> None:
    for wanted in ("catalog", f"{titles.alias}-typo"):
        out = titles.search("danish", "--index", wanted)
        assert out.returncode == 2 and out.stdout == ""
        # One line: no traceback, no WARNING of the failed request before it.
        (line,) = out.stderr.splitlines()
        assert line.startswith(f"lakehouse: error: no index or alias {wanted!r} (aliases: ")
        assert titles.alias in line.split("; indices: ")[0]


def test_a_missing_people_index_says_how_to_create_it(titles: Titles, tmp_path: Path) -> None:
    missing = f"people-{uuid.uuid4().hex[:8]}"
    titles.config.write_text(titles.config.read_text().replace(titles.alias, missing, 1))
    out = titles.search("danish")
    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"lakehouse: error: no index or alias {missing!r} (aliases: ")
    assert titles.alias in line and line.endswith("; `lakehouse index` creates it from the lake")
