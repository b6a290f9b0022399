"""Text in one Unicode form everywhere, and a first run that logs nothing alarming (real node)."""

from __future__ import annotations

import logging
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.opensearch.bulk import BulkIndexer, Document
from connectors.opensearch.client import open_client
from connectors.opensearch.config import OpenSearchConfig
from connectors.opensearch.indices import IndexManager
from connectors.opensearch.search import search
from pipelines.search.synonyms import SynonymRow, render_dictionary
from pipelines.search.tables import json_words
from tests.search.titles import TITLES

NFD_CAFE = "cafe\u0301"  # "e" + COMBINING ACUTE ACCENT: what macOS and some keyboards send


class Node:
    def __init__(self, stack: Any) -> None:
        self.client = open_client(OpenSearchConfig(url=stack.opensearch_endpoint))
        self.alias = f"nfc-{uuid.uuid4().hex[:8]}"
        self.package: Path = stack.service_dir("opensearch") / "config" / "analyzers" / self.alias

    def titles(self, text: str) -> list[str]:
        return sorted(h.source["title"] for h in search(self.client, self.alias, text))


@pytest.fixture
def node(stack: Any) -> Iterator[Node]:
    n = Node(stack)
    yield n
    for name in n.client.indices.get(index=f"{n.alias}*"):
        n.client.indices.delete(index=name)
    n.package.unlink(missing_ok=True)


def test_creating_an_alias_for_the_first_time_logs_no_warning(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node.package.write_text("# empty\n")
    with caplog.at_level(logging.INFO):
        index = IndexManager(node.client, node.alias, TITLES, f"analyzers/{node.alias}").ensure()
    # "The alias does not exist yet" is the normal first run: opensearch-py logs any failed
    # request but a 404 to HEAD as a WARNING, so the look-up must not produce one.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert f"creating index {index}" in caplog.text


def test_synonym_terms_documents_and_queries_meet_in_one_unicode_form(node: Node) -> None:
    dictionary = render_dictionary([SynonymRow(1, (NFD_CAFE.upper(), "coffee shop", None))])
    assert dictionary.text.splitlines()[1] == "café, coffee shop"
    assert unicodedata.is_normalized("NFC", dictionary.text)
    node.package.write_text(dictionary.text)
    IndexManager(node.client, node.alias, TITLES, f"analyzers/{node.alias}").ensure()
    docs = [Document("1", 1, {"title": "Café au lait"}), Document("2", 1, {"title": "Tea room"})]
    BulkIndexer(node.client, node.alias, refresh="wait_for").write(docs)
    assert node.titles("coffee shop") == ["Café au lait"]  # the synonym line matches composed text
    assert node.titles(NFD_CAFE) == ["Café au lait"]  # so does a decomposed query
    assert node.titles(f"{NFD_CAFE} au lait") == ["Café au lait"]


def test_json_escapes_that_spell_a_decomposed_accent_are_composed() -> None:
    assert json_words('{"note": "cafe\\u0301", "k": 1}') == "café"
