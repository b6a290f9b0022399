"""A synonym dictionary on a self-managed node: the file under `<config>/analyzers/<package>`.

Amazon OpenSearch Service installs a custom package at `analyzers/<package id>`; the local node
keeps its dictionaries at the same relative path, so index settings are the same in both places.
Installing is an atomic file replace; the search analyzers of the indices that use it are then
reloaded (`POST /_plugins/_refresh_search_analyzers/<index>`, served by the stack's launcher
plugin; close/open of the index where that endpoint is missing), and `_analyze` confirms the new
synonyms are live.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError, TransportError

log = logging.getLogger(__name__)

SEARCH_ANALYZER = "text_search"
INDEX_ANALYZER = "text_index"


class SynonymsNotLiveError(Exception):
    """After a reload, `_analyze` does not show the dictionary's synonyms."""


class LocalPackage:
    """One dictionary file of the local node and the indices that read it."""

    def __init__(self, client: OpenSearch, config_dir: str | os.PathLike[str], package: str) -> None:
        self.client = client
        self.path = Path(config_dir) / "analyzers" / package
        self.synonyms_path = f"analyzers/{package}"

    def read(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None

    def install(self, text: str) -> bool:
        """Write the dictionary (atomically); False when the file already holds exactly this."""
        if self.read() == text:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half of it
        return True

    def reload(self, indices: Sequence[str]) -> list[str]:
        """Reload the search analyzers of `indices` (names or aliases that exist); returns them."""
        reloaded = []
        for index in indices:
            if not self.client.indices.exists(index=index):
                continue
            try:
                self.client.transport.perform_request("POST", f"/_plugins/_refresh_search_analyzers/{index}")
            except (NotFoundError, TransportError) as exc:
                if getattr(exc, "status_code", None) not in (400, 404, 405):
                    raise
                log.info("no analyzer refresh endpoint (%s); closing and reopening %s", exc, index)
                self.client.indices.close(index=index)
                self.client.indices.open(index=index, wait_for_active_shards=1)
            reloaded.append(index)
        return reloaded

    def verify(self, index: str, lines: Sequence[str], sample: int = 3) -> None:
        """Each sampled line's first term expands to every other term of its line."""
        problems = []
        for line in [ln for ln in lines if ln and not ln.startswith("#")][:sample]:
            terms = [t.strip() for t in line.split(",") if t.strip()]
            expanded = self._tokens(index, SEARCH_ANALYZER, terms[0])
            for other in terms[1:]:
                missing = self._tokens(index, INDEX_ANALYZER, other) - expanded
                if missing:
                    problems.append(f"{terms[0]!r} does not expand to {other!r} (missing {sorted(missing)})")
        if problems:
            raise SynonymsNotLiveError(f"index {index}: " + "; ".join(problems))

    def _tokens(self, index: str, analyzer: str, text: str) -> set[str]:
        result: Any = self.client.indices.analyze(index=index, body={"analyzer": analyzer, "text": text})
        return {t["token"] for t in result["tokens"]}
