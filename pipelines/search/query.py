"""Search as a small Python API (and what `lakehouse search` prints): ranked hits with highlights.

from pipelines.search.query import Searcher
for hit in Searcher.from_config(load_config()).search("coffee shop"):
    print(hit.score, hit.source["name"], hit.highlights)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.opensearch.client import open_client
from connectors.opensearch.search import DEFAULT_FIELDS, Hit, search
from pipelines.config import LakehouseConfig


class Searcher:
    """Searches the people alias of one configuration, or any index or alias named per search.

    `search` raises `connectors.opensearch.search.IndexNotFoundError` (naming the aliases and
    indices that exist) when the index is missing, e.g. before the first `lakehouse index`.
    """

    def __init__(self, client: Any, default_alias: str) -> None:
        self.client = client
        self.default_alias = default_alias

    @classmethod
    def from_config(cls, config: LakehouseConfig) -> Searcher:
        return cls(open_client(config.search.opensearch), config.search.people_alias)

    def search(
        self,
        text: str,
        *,
        index: str | None = None,
        fields: Sequence[str] = DEFAULT_FIELDS,
        filters: Mapping[str, Any] | None = None,
        size: int = 10,
    ) -> list[Hit]:
        return search(
            self.client, index or self.default_alias, text, fields=fields, filters=filters, size=size
        )


def format_hits(hits: Sequence[Hit], title_fields: Sequence[str] = ("name", "title")) -> str:
    """Hits as text for people: rank, score, id, a title, and the highlighted fragments."""
    if not hits:
        return "no results"
    lines = []
    for rank, hit in enumerate(hits, 1):
        title = next((str(hit.source[f]) for f in title_fields if hit.source.get(f)), "")
        lines.append(f"{rank:>2}. {hit.score:6.2f}  {hit.doc_id}  {title}")
        for field, fragments in sorted(hit.highlights.items()):
            lines.append(f"      {field}: {' … '.join(fragments)}")
    return "\n".join(lines)
