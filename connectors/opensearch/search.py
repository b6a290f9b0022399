"""Search for people: a ranked, highlighted result list — what the engine sees, in plain values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch

DEFAULT_FIELDS = ("all_text",)


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
    """Full-text `text` over `fields` (synonym-aware search analyzer), `filters` as exact terms."""
    must: dict[str, Any] = {
        "multi_match": {"query": text, "fields": list(fields), "type": "best_fields", "operator": "and"}
    }
    query: dict[str, Any] = {"bool": {"must": [must]}}
    if filters:
        query["bool"]["filter"] = [{"term": {k: v}} for k, v in filters.items()]
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
    response = client.search(index=index, body=body)
    return [
        Hit(
            doc_id=h["_id"],
            score=float(h["_score"] or 0.0),
            source=h.get("_source", {}),
            highlights={k: tuple(v) for k, v in h.get("highlight", {}).items()},
        )
        for h in response["hits"]["hits"]
    ]
