"""A small synonym-aware index of titles for tests that need documents of their own, not patients."""

from __future__ import annotations

from connectors.opensearch.indices import IndexTemplate

_TEXT = {"type": "text", "analyzer": "text_index", "search_analyzer": "text_search"}

TITLES = IndexTemplate(
    "titles",
    1,
    {
        "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"}},
        "mappings": {
            "dynamic": "strict",
            "properties": {"title": {**_TEXT, "copy_to": "all_text"}, "all_text": _TEXT},
        },
    },
)
