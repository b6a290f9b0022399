"""Per-tenant filtered aliases: one alias per tenant present in an index, filtered to its documents.

The alias `<alias>-<tag key>-<tenant>` points at the index behind `<alias>` with the filter
`{"term": {"tenant_id": <tenant>}}`. OpenSearch adds an alias's filter to every search, count and
aggregation through it (global aggregations included), so the hits, highlights and aggregations of
a search through a tenant's alias come from that tenant's documents only.

It does not confine everything: reads by id through the alias (GET, mget, termvectors) return any
document of the index, and term suggesters read the shard's whole term dictionary (both checked on
the local node, tests/search/test_tenant_search.py). So the tenant-scoped search only ever sends a
`_search`, and on a managed cluster a tenant's role may search its alias and nothing else
(`search_role`; docs/decisions.md §22).

Alias names are lowercase ASCII: a tenant id keeps `a-z 0-9 _ -` and every other byte of its UTF-8
form becomes `.<hex>` ("Wisła-006" -> "people-tenant-.57is.c5.82a-006"). The encoding is one-to-one,
so two tenants can never share an alias (lowercasing alone would merge "Acme" and "acme").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch

log = logging.getLogger(__name__)

TENANT_FIELD = "tenant_id"
MAX_NAME_BYTES = 255  # OpenSearch's limit on index and alias names
_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_PAGE = 1_000  # tenants per composite-aggregation page


class TenantAliasError(ValueError):
    """A tenant id that no alias can name (empty, or the name would pass OpenSearch's length limit)."""


def encode_name_part(text: str) -> str:
    """`text` as a lowercase ASCII alias-name part, one-to-one (see the module docstring)."""
    return "".join(c if c in _KEEP else "".join(f".{b:02x}" for b in c.encode()) for c in text)


@dataclass(frozen=True, slots=True)
class TenantAliasChange:
    """What one sync did: aliases added (or re-pointed), removed, and tenants no alias can name."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unnamed: tuple[str, ...] = ()


class TenantAliases:
    """The tenant aliases that follow one alias (`<alias>-<tag key>-<tenant>`)."""

    def __init__(self, client: OpenSearch, alias: str, tag_key: str, field: str = TENANT_FIELD) -> None:
        self.client = client
        self.alias = alias
        self.field = field
        self.prefix = f"{alias}-{encode_name_part(tag_key)}-"

    def name(self, tenant: str) -> str:
        """The alias of `tenant`'s documents."""
        if not tenant:
            raise TenantAliasError("a tenant id must not be empty")
        name = self.prefix + encode_name_part(tenant)
        if len(name.encode()) > MAX_NAME_BYTES:
            raise TenantAliasError(f"tenant id {tenant!r} makes an alias name over {MAX_NAME_BYTES} bytes")
        return name

    def filter(self, tenant: str) -> dict[str, Any]:
        return {"term": {self.field: tenant}}

    def tenants(self, index: str) -> set[str]:
        """The tenant ids of the documents in `index` (a composite aggregation, page by page)."""
        tenants: set[str] = set()
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {"size": _PAGE, "sources": [{"t": {"terms": {"field": self.field}}}]}
            if after:
                composite["after"] = after
            body = {"size": 0, "aggs": {"tenants": {"composite": composite}}}
            buckets = self.client.search(index=index, body=body)["aggregations"]["tenants"]
            tenants.update(str(b["key"]["t"]) for b in buckets["buckets"])
            after = buckets.get("after_key")
            if not after or len(buckets["buckets"]) < _PAGE:
                return tenants

    def existing(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The tenant aliases that exist now: {alias: {index: alias body (its filter)}}."""
        listing = self.client.indices.get_alias(index="*", name=f"{self.prefix}*")
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for index, entry in listing.items():
            for name, body in entry.get("aliases", {}).items():
                out.setdefault(name, {})[index] = body
        return out

    def actions(self, index: str) -> tuple[list[dict[str, Any]], TenantAliasChange]:
        """The `_aliases` actions that leave exactly one alias per tenant of `index`, on `index`.

        Aliases of tenants without documents are removed, and so is every tenant alias on another
        index (the one the main alias leaves when it moves): send these in the same `_aliases` call
        as the main alias's switch, and tenants follow it atomically.
        """
        wanted: dict[str, str] = {}
        unnamed: list[str] = []
        for tenant in sorted(self.tenants(index)):
            try:
                wanted[self.name(tenant)] = tenant
            except TenantAliasError as e:
                unnamed.append(tenant)
                log.error("%s: no tenant alias: %s", self.alias, e)
        actions: list[dict[str, Any]] = []
        added, removed = [], []
        existing = self.existing()
        for name, on in sorted(existing.items()):
            for other in sorted(set(on) - {index} if name in wanted else set(on)):
                actions.append({"remove": {"index": other, "alias": name}})
            if name not in wanted:
                removed.append(name)
        for name, tenant in sorted(wanted.items()):
            if existing.get(name, {}).get(index, {}).get("filter") != self.filter(tenant):
                actions.append({"add": {"index": index, "alias": name, "filter": self.filter(tenant)}})
                added.append(name)
        return actions, TenantAliasChange(tuple(added), tuple(removed), tuple(unnamed))

    def sync(self, index: str) -> TenantAliasChange:
        """Make the tenant aliases those of `index`'s documents now (refreshed first), in one call."""
        self.client.indices.refresh(index=index)
        actions, change = self.actions(index)
        if actions:
            self.client.indices.update_aliases(body={"actions": actions})
            log.info(
                "%s: tenant aliases %d added, %d removed", self.alias, len(change.added), len(change.removed)
            )
        return change


def search_role(alias: str) -> dict[str, Any]:
    """An OpenSearch security role (fine-grained access control) that may only search `alias`.

    Search actions only: the `read` action group also allows GET and mget by id, which a filtered
    alias does not confine. A `_search` may still carry a term suggester (the shard's vocabulary):
    serve tenants through the tenant-scoped search, not raw query DSL. `PUT _plugins/_security/api/roles/<name>` with this body, then map the
    tenant's IAM role or user to it.
    """
    return {
        "index_permissions": [
            {
                "index_patterns": [alias],
                "allowed_actions": ["indices:data/read/search*", "indices:data/read/msearch*"],
            }
        ]
    }
