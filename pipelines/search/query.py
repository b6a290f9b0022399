"""Search as a small Python API (and what `lakehouse search` prints): ranked hits with highlights.

from pipelines.search.query import Searcher
for hit in Searcher.from_config(load_config()).search("coffee shop"):
    print(hit.score, hit.source["name"], hit.highlights)

`search(..., tenant="acme-002")` searches that tenant's filtered alias and nothing else
(connectors/opensearch/tenant_aliases.py): hits, highlights and scores come from its documents only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.opensearch.client import open_client
from connectors.opensearch.search import DEFAULT_FIELDS, Hit, IndexNotFoundError, search
from connectors.opensearch.tenant_aliases import TenantAliasError, TenantAliases
from pipelines.config import LakehouseConfig
from pipelines.search.tenants import people_tenant_key


class TenantSearchError(LookupError):
    """A tenant-scoped search that cannot run: no tenancy declared, or a tenant with no alias.

    The message names the tenant asked for and never another tenant's id.
    """


class Searcher:
    """Searches the people alias of one configuration, or any index or alias named per search.

    `search` raises `connectors.opensearch.search.IndexNotFoundError` (naming the aliases and
    indices that exist) when the index is missing, e.g. before the first `lakehouse index`, and
    `TenantSearchError` for a tenant without documents.
    """

    def __init__(self, client: Any, default_alias: str, tenant_key: str | None = None) -> None:
        self.client = client
        self.default_alias = default_alias
        self.tenants = TenantAliases(client, default_alias, tenant_key) if tenant_key else None

    @classmethod
    def from_config(cls, config: LakehouseConfig) -> Searcher:
        return cls(
            open_client(config.search.opensearch), config.search.people_alias, people_tenant_key(config)
        )

    def search(
        self,
        text: str,
        *,
        index: str | None = None,
        fields: Sequence[str] = DEFAULT_FIELDS,
        filters: Mapping[str, Any] | None = None,
        size: int = 10,
        tenant: str | None = None,
    ) -> list[Hit]:
        """Ranked hits for `text`; with `tenant`, from that tenant's alias of the people index only."""
        if tenant is None:
            return search(
                self.client, index or self.default_alias, text, fields=fields, filters=filters, size=size
            )
        if index not in (None, self.default_alias):
            raise TenantSearchError(
                f"a tenant search reads the people alias {self.default_alias!r}, not {index!r}"
            )
        target = self.tenant_alias(tenant)
        try:
            return search(self.client, target, text, fields=fields, filters=filters, size=size)
        except IndexNotFoundError:
            # `from None`: the IndexNotFoundError lists every alias, other tenants' included.
            raise TenantSearchError(
                f"no documents of tenant {tenant!r} in {self.default_alias!r} (no alias {target!r}); "
                "`lakehouse index` makes a tenant's alias once its documents are indexed"
            ) from None

    def tenant_alias(self, tenant: str) -> str:
        """The alias a search for `tenant` reads."""
        if self.tenants is None:
            raise TenantSearchError(
                f"no tenancy declared for the people index {self.default_alias!r}: declare the patients' "
                'tenant column in [tenancy.tables."<source>.patients"]'
            )
        try:
            return self.tenants.name(tenant)
        except TenantAliasError as e:
            raise TenantSearchError(str(e)) from None


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
