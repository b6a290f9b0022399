"""Versioned index templates behind aliases, and the roll-out of a mapping change.

Templates live in `connectors/opensearch/templates/<name>.json` with a `version`. Readers and
writers only use the alias; the index behind it is `<alias>_v<version>`. When the template's
version changes, `IndexManager.ensure()` creates the new index, copies every document into it
(server-side `_reindex` keeping the external versions) and swaps the alias in one atomic
`_aliases` call, so searches never see a missing or half-filled index.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from opensearchpy import OpenSearch

log = logging.getLogger(__name__)

_TEMPLATES = "connectors.opensearch.templates"
SYNONYMS_PLACEHOLDER = "${synonyms_path}"


class IndexSetupError(Exception):
    """An index could not be created, filled or switched; the message says which and why."""


@dataclass(frozen=True, slots=True)
class IndexTemplate:
    """Settings and mappings of one kind of index, with its version."""

    name: str
    version: int
    body: dict[str, Any]

    def render(self, synonyms_path: str) -> dict[str, Any]:
        """The create-index body, with the shared analysis settings and the dictionary path."""
        body = copy.deepcopy(self.body)
        analysis = json.loads(_read("analysis.json").replace(SYNONYMS_PLACEHOLDER, synonyms_path))
        analysis.pop("_comment", None)
        body.setdefault("settings", {})["analysis"] = analysis
        body.setdefault("mappings", {})["_meta"] = {"template": self.name, "template_version": self.version}
        return body


def load_template(name: str) -> IndexTemplate:
    """The template `templates/<name>.json` shipped with the package."""
    try:
        raw = json.loads(_read(f"{name}.json"))
    except FileNotFoundError:
        raise IndexSetupError(f"no index template {name!r} in {_TEMPLATES}") from None
    version = raw.pop("version", None)
    if not isinstance(version, int) or version < 1:
        raise IndexSetupError(f"index template {name!r} needs an integer 'version' >= 1")
    raw.pop("_comment", None)
    return IndexTemplate(name, version, raw)


def _read(filename: str) -> str:
    return resources.files(_TEMPLATES).joinpath(filename).read_text()


class IndexManager:
    """One alias and the versioned indices behind it."""

    def __init__(self, client: OpenSearch, alias: str, template: IndexTemplate, synonyms_path: str) -> None:
        self.client = client
        self.alias = alias
        self.template = template
        self.synonyms_path = synonyms_path

    @property
    def index(self) -> str:
        """The index the current template version lives in."""
        return f"{self.alias}_v{self.template.version}"

    def current(self) -> list[str]:
        """The indices the alias points at now ([] when it does not exist)."""
        # A missing alias is the normal first-run case: ignore=404 answers it with an error body
        # instead of an exception, and opensearch-py does not log it as a failed request.
        response = self.client.indices.get_alias(name=self.alias, ignore=404)
        return [] if response.get("status") == 404 else sorted(response)

    def ensure(self, follow: Callable[[str], list[dict[str, Any]]] | None = None) -> str:
        """Make the alias point at the current template's index (creating, filling, swapping).

        `follow(index)` gives the `_aliases` actions of aliases that move with this one (the tenant
        aliases, connectors/opensearch/tenant_aliases.py); they go in the same atomic call.
        """
        behind = self.current()
        if behind == [self.index]:
            return self.index
        if not self.client.indices.exists(index=self.index):
            log.info(
                "creating index %s (template %s v%d)", self.index, self.template.name, self.template.version
            )
            self.client.indices.create(index=self.index, body=self.template.render(self.synonyms_path))
        for old in behind:
            self._copy(old, self.index)
        actions: list[dict[str, Any]] = [{"remove": {"index": old, "alias": self.alias}} for old in behind]
        actions.append({"add": {"index": self.index, "alias": self.alias}})
        if follow is not None:
            actions += follow(self.index)
        self.client.indices.update_aliases(body={"actions": actions})  # one atomic switch
        if behind:
            log.info("alias %s switched from %s to %s", self.alias, behind, self.index)
        return self.index

    def _copy(self, source: str, dest: str) -> None:
        """Server-side reindex keeping each document's external version (newer writes win)."""
        body = {
            "source": {"index": source},
            "dest": {"index": dest, "version_type": "external"},
            "conflicts": "proceed",  # a document already written to the new index is newer
        }
        result = self.client.reindex(body=body, wait_for_completion=True, refresh=True, request_timeout=3600)
        failures = result.get("failures") or []
        if failures:
            raise IndexSetupError(
                f"reindex {source} -> {dest} failed for {len(failures)} documents: {failures[:3]}"
            )
        log.info("reindexed %s -> %s: %s documents", source, dest, result.get("total"))

    def meta(self) -> dict[str, Any]:
        """The mapping's `_meta` of the index behind the alias ({} when there is none)."""
        behind = self.current()
        if len(behind) != 1:
            return {}
        mapping = self.client.indices.get_mapping(index=behind[0])[behind[0]]["mappings"]
        return dict(mapping.get("_meta") or {})

    def update_meta(self, **values: Any) -> None:
        """Add `values` to the `_meta` of the index behind the alias (PUT _mapping replaces the whole
        `_meta` object, so the existing keys are sent again)."""
        for name in self.current():
            mapping = self.client.indices.get_mapping(index=name)[name]["mappings"]
            meta = {**(mapping.get("_meta") or {}), **values}
            self.client.indices.put_mapping(index=name, body={"_meta": meta})

    def drop_current(self) -> list[str]:
        """Delete the indices the alias points at (the alias goes with them): `ensure` then builds
        the current template's index afresh."""
        dropped = self.current()
        for name in dropped:
            log.info("deleting index %s behind alias %s", name, self.alias)
            self.client.indices.delete(index=name)
        return dropped

    def drop_old(self) -> list[str]:
        """Delete this alias's indices of older template versions that the alias no longer uses."""
        prefix = f"{self.alias}_v"
        names = [n for n in self.client.indices.get(index=f"{prefix}*") if n != self.index]
        in_use = set(self.current())
        dropped = [n for n in names if n not in in_use]
        for name in dropped:
            self.client.indices.delete(index=name)
        return dropped
