"""Search for people: a ranked, highlighted result list — what the engine sees, in plain values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch

from connectors.opensearch.text import normalize_text

DEFAULT_FIELDS = ("all_text",)


class IndexNotFoundError(LookupError):
    """The index or alias to search does not exist; the message names the ones that do."""

    def __init__(self, index: str, aliases: Sequence[str], indices: Sequence[str]) -> None:
        self.index, self.aliases, self.indices = index, tuple(aliases), tuple(indices)
        if aliases or indices:
            existing = f"aliases: {_names(aliases, 50)}; indices: {_names(indices, 20)}"
        else:
            existing = "the cluster has no indices yet"
        super().__init__(f"no index or alias {index!r} ({existing})")


def _names(names: Sequence[str], limit: int) -> str:
    """Names for one line of error: a cluster with daily indices has thousands."""
    shown = ", ".join(names[:limit]) or "none"
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


@dataclass(frozen=True, slots=True)
class Hit:
    doc_id: str
    score: float
    source: Mapping[str, Any]
    highlights: Mapping[str, tuple[str, ...]]


def search(
    client: OpenSearch,
    index: str,
    text: str,
    *,
    fields: Sequence[str] = DEFAULT_FIELDS,
    filters: Mapping[str, Any] | None = None,
    size: int = 10,
) -> list[Hit]:
    """Full-text `text` over `fields` (synonym-aware search analyzer), `filters` as exact terms.

    The query is normalised to the indices' Unicode form first (see connectors/opensearch/text.py),
    as documents and synonyms are. Raises `IndexNotFoundError` when `index` does not exist.
    """
    must: dict[str, Any] = {
        "multi_match": {
            "query": normalize_text(text),
            "fields": list(fields),
            "type": "best_fields",
            "operator": "and",
        }
    }
    query: dict[str, Any] = {"bool": {"must": [must]}}
    if filters:
        query["bool"]["filter"] = [
            {"term": {k: normalize_text(v) if isinstance(v, str) else v}} for k, v in filters.items()
        ]
    highlight_fields: dict[str, Any] = {f: {} for f in fields}
    if list(fields) == list(DEFAULT_FIELDS):
        # all_text is a copy_to target with no _source: highlight the fields it is made of instead.
        highlight_fields = {"*": {}}
    body = {
        "query": query,
        "size": size,
        "highlight": {
            "fields": highlight_fields,
            "require_field_match": False,
            "pre_tags": ["<em>"],
            "post_tags": ["</em>"],
        },
    }
    # ignore=404: a missing index is answered below with what exists, and opensearch-py then does
    # not log the failed request as a WARNING first (it logs every non-ignored error status).
    response = client.search(index=index, body=body, ignore=404)
    if response.get("status") == 404:  # a search response has no "status"; an error body does
        raise IndexNotFoundError(index, *search_targets(client))
    return [
        Hit(
            doc_id=h["_id"],
            score=float(h["_score"] or 0.0),
            source=h.get("_source", {}),
            highlights={k: tuple(v) for k, v in h.get("highlight", {}).items()},
        )
        for h in response["hits"]["hits"]
    ]


def search_targets(client: OpenSearch) -> tuple[list[str], list[str]]:
    """The (aliases, indices) a search can name, sorted; hidden and system ('.'-prefixed) ones left out."""
    listing = client.indices.get_alias(index="*")  # {index: {"aliases": {alias: {...}}}}
    indices = sorted(name for name in listing if not name.startswith("."))
    aliases = sorted(
        {alias for name in indices for alias in listing[name].get("aliases", {}) if not alias.startswith(".")}
    )
    return aliases, indices
