"""Tenants in search (issue 16): each tenant searches its filtered alias of the people index only.

The seeded world is split between two tenants, "acme" and "wisła" (a non-ASCII id, on purpose),
plus "maple" with one patient. Two patients are alike: Ada Kringle (acme) and Ada Strudel of
Zanzibar (wisła), and the index's synonyms make "kringle" and "strudel" one word. Enforcement is
the local OpenSearch node's alias filter, not a filter added by our client.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connectors.opensearch.indices import IndexTemplate, load_template
from connectors.opensearch.tenant_aliases import (
    TenantAliasError,
    TenantAliases,
    encode_name_part,
    search_role,
)
from pipelines.search import index as search_index
from pipelines.search.index import PeopleIndexer
from pipelines.search.query import Searcher, TenantSearchError
from tests.search.people_world import World

REPO = Path(__file__).resolve().parents[2]
A, B, M = "acme", "wisła", "maple"


class Tenants:
    """The world split between tenants, indexed with tenant aliases, and a searcher of it."""

    def __init__(self, world: World) -> None:
        self.world = world
        ids = sorted(world.patient_ids(), key=int)
        self.pa, self.pb, self.pm = ids[0], ids[1], ids[2]
        self.a_ids = {p for i, p in enumerate(ids) if i % 2 == 0 and p != self.pm}
        world.package.write_text("kringle, strudel\n")  # read when the index is created (first run)
        world.sql(
            f"UPDATE patients SET tenant_id = IF(patient_id IN ({','.join(self.a_ids)}), '{A}', '{B}')",
            f"UPDATE patients SET tenant_id = '{M}' WHERE patient_id = {self.pm}",
            f"UPDATE patients SET given_name = 'Ada', family_name = 'Kringle' WHERE patient_id = {self.pa}",
            "UPDATE patients SET given_name = 'Ada', family_name = 'Strudel', city = 'Zanzibar' "
            f"WHERE patient_id = {self.pb}",
        )
        world.capture()
        self.indexer = PeopleIndexer(
            world.lake, world.client, alias=world.alias, sources=world.sources,
            synonyms_path=world.indexer.synonyms_path, tenant_key="tenant",
        )  # fmt: skip
        self.searcher = Searcher(world.client, world.alias, "tenant")
        self.aliases = TenantAliases(world.client, world.alias, "tenant")

    def ids(self, text: str, tenant: str | None = None) -> set[str]:
        self.world.client.indices.refresh(index=self.world.alias)
        return {h.doc_id for h in self.searcher.search(text, tenant=tenant, size=100)}

    def tenant_aliases(self) -> dict[str, list[str]]:
        """{alias: [indices]} of the world's tenant aliases."""
        return {name: sorted(on) for name, on in self.aliases.existing().items()}


@pytest.fixture
def tenants(world: World) -> Tenants:
    return Tenants(world)


def test_alias_names_are_one_to_one_lowercase_ascii() -> None:
    assert encode_name_part("wisła-006") == "wis.c5.82a-006"
    assert encode_name_part("Acme") != encode_name_part("acme") == "acme"
    assert encode_name_part("a.b") == "a.2eb" != encode_name_part("a.2eb")  # "." is escaped too
    names = TenantAliases(None, "people", "tenant")  # type: ignore[arg-type]
    assert names.name("acme-002") == "people-tenant-acme-002"
    with pytest.raises(TenantAliasError):
        names.name("")
    with pytest.raises(TenantAliasError):
        names.name("ł" * 100)  # 600 bytes once escaped
    # The managed-service role searches the alias and cannot read documents by id.
    (permission,) = search_role("people-tenant-acme")["index_permissions"]
    assert permission["index_patterns"] == ["people-tenant-acme"]
    assert not any("get" in a or a in ("read", "indices:data/read/*") for a in permission["allowed_actions"])


def test_a_tenant_never_finds_another_tenants_documents(tenants: Tenants) -> None:
    report = tenants.indexer.run()
    alias = tenants.world.alias
    names = {t: tenants.aliases.name(t) for t in (A, B, M)}
    assert names[B] == f"{alias}-tenant-wis.c5.82a"
    assert report.tenant_aliases is not None and set(report.tenant_aliases.added) == set(names.values())
    assert tenants.tenant_aliases() == {n: [report.index] for n in names.values()}

    # A word only B's document has: the shared alias finds it, A's alias does not.
    assert tenants.ids("zanzibar") == {tenants.pb}
    assert tenants.ids("zanzibar", tenant=A) == set()
    assert tenants.ids("zanzibar", tenant=B) == {tenants.pb}
    # Through the synonym both documents match; each tenant gets its own, highlighted as its own.
    assert tenants.ids("strudel") == {tenants.pa, tenants.pb}
    for tenant, own, word in ((A, tenants.pa, "Kringle"), (B, tenants.pb, "Strudel")):
        tenants.world.client.indices.refresh(index=alias)
        hits = tenants.searcher.search("strudel", tenant=tenant, size=100)
        assert {h.doc_id for h in hits} == {own}
        (hit,) = hits
        assert hit.source["tenant_id"] == tenant
        fragments = [f for fs in hit.highlights.values() for f in fs]
        assert any(f"<em>{word}</em>" in f for f in fragments), fragments
    # "ada": both patients are called Ada, each tenant sees only its own Ada and its own patients.
    ada_a = tenants.ids("ada", tenant=A)
    assert tenants.pa in ada_a and tenants.pb not in ada_a and ada_a <= tenants.a_ids

    # Aggregations through the alias, a global one included, count A's documents only.
    aggs = {
        "tenants": {"terms": {"field": "tenant_id", "size": 100}},
        "everything": {"global": {}, "aggs": {"tenants": {"terms": {"field": "tenant_id", "size": 100}}}},
    }
    response = tenants.world.client.search(
        index=names[A], body={"size": 0, "query": {"match_all": {}}, "aggs": aggs}
    )
    expected = [{"key": A, "doc_count": len(tenants.a_ids)}]
    assert response["aggregations"]["tenants"]["buckets"] == expected
    assert response["aggregations"]["everything"]["tenants"]["buckets"] == expected
    assert response["hits"]["total"]["value"] == len(tenants.a_ids)

    # An unknown tenant is one error naming it, and no other tenant.
    with pytest.raises(TenantSearchError) as refused:
        tenants.searcher.search("ada", tenant="nobody")
    message = str(refused.value)
    assert "'nobody'" in message and not any(t in message for t in (A, B, M, "wis.c5"))
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    with pytest.raises(TenantSearchError):
        Searcher(tenants.world.client, alias).search("ada", tenant=A)  # no tenancy declared


def test_tenant_aliases_follow_moves_new_and_emptied_tenants(tenants: Tenants) -> None:
    tenants.indexer.run()
    names = {t: tenants.aliases.name(t) for t in (A, B, M, "newco")}
    # B's Ada moves to A; maple's only patient to A (maple has none left); one of B's to a new tenant.
    newcomer = sorted(set(tenants.world.patient_ids()) - tenants.a_ids - {tenants.pb, tenants.pm}, key=int)[0]
    tenants.world.sql(
        f"UPDATE patients SET tenant_id = '{A}' WHERE patient_id IN ({tenants.pb}, {tenants.pm})",
        f"UPDATE patients SET tenant_id = 'newco' WHERE patient_id = {newcomer}",
    )
    tenants.world.capture()
    report = tenants.indexer.run()
    assert not report.full and report.patients == 3
    assert report.tenant_aliases is not None
    assert report.tenant_aliases.added == (names["newco"],)
    assert report.tenant_aliases.removed == (names[M],)
    assert set(tenants.tenant_aliases()) == {names[A], names[B], names["newco"]}

    assert tenants.ids("zanzibar", tenant=A) == {tenants.pb}
    assert tenants.ids("zanzibar", tenant=B) == set()
    assert tenants.ids("strudel", tenant=A) == {tenants.pa, tenants.pb}
    assert tenants.pb not in tenants.ids("ada", tenant=B)
    with pytest.raises(TenantSearchError, match="'maple'"):
        tenants.searcher.search("ada", tenant=M)
    assert tenants.world.client.count(index=names["newco"])["count"] == 1
    # Nothing changed: no alias call at all.
    assert tenants.indexer.run().tenant_aliases is None


def test_tenant_aliases_move_with_the_main_alias_in_one_call(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tenants.indexer.run()
    v1 = load_template("people")
    monkeypatch.setattr(
        search_index, "load_template", lambda name: IndexTemplate(name, v1.version + 1, v1.body)
    )
    calls: list[list[dict[str, Any]]] = []
    indices = tenants.world.client.indices
    real = indices.update_aliases

    def update_aliases(body: dict[str, Any], **kwargs: Any) -> Any:
        calls.append(body["actions"])
        return real(body=body, **kwargs)

    monkeypatch.setattr(indices, "update_aliases", update_aliases)
    report = tenants.indexer.run()
    assert report.index != first.index
    switch = calls[0]
    assert {"remove": {"index": first.index, "alias": tenants.world.alias}} in switch
    added = {a["add"]["alias"] for a in switch if "add" in a}
    assert added == {tenants.world.alias, *(tenants.aliases.name(t) for t in (A, B, M))}
    assert tenants.tenant_aliases() == {tenants.aliases.name(t): [report.index] for t in (A, B, M)}
    assert tenants.ids("zanzibar", tenant=A) == set()


def test_what_a_filtered_alias_does_not_confine(tenants: Tenants) -> None:
    """Vendor behaviour docs/decisions.md §22 relies on: an alias filter applies to searches only.

    A read by id and a term suggester through A's alias reach B's document. The tenant-scoped
    search sends neither; a managed cluster's tenant role may only search (`search_role`).
    """
    tenants.indexer.run()
    client, alias_a = tenants.world.client, tenants.aliases.name(A)
    client.indices.refresh(index=alias_a)
    assert client.get(index=alias_a, id=tenants.pb)["_source"]["tenant_id"] == B
    body = {"size": 0, "suggest": {"s": {"text": "zanzibr", "term": {"field": "all_text"}}}}
    options = client.search(index=alias_a, body=body)["suggest"]["s"][0]["options"]
    assert "zanzibar" in {o["text"] for o in options}


def test_lakehouse_search_tenant(tenants: Tenants, mysql_db: Any, stack: Any, tmp_path: Path) -> None:
    tenants.indexer.run()
    tenants.world.client.indices.refresh(index=tenants.world.alias)
    config = tmp_path / "lakehouse.toml"
    config.write_text(
        f'[lake]\nroot = "{tmp_path}/lake"\n\n'
        f'[[sources]]\nname = "health"\nkind = "mysql"\nhost = "{mysql_db.host}"\nport = {mysql_db.port}\n'
        f'user = "{mysql_db.cdc_user}"\npassword = "x"\ndatabase = "{mysql_db.name}"\ntables = ["patients"]\n\n'
        f'[search]\npeople_alias = "{tenants.world.alias}"\nmysql_source = "health"\n\n'
        f'[search.opensearch]\nurl = "{stack.opensearch_endpoint}"\n\n'
        '[tenancy.tables."health.patients"]\ncolumn = "tenant_id"\n'
    )

    def search(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "--config", str(config), "search", *args],
            cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip

    out = search("--tenant", A, "strudel")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split()[2:] == [tenants.pa, "Ada", "Kringle"]
    assert "<em>Kringle</em>" in out.stdout and tenants.pb not in out.stdout.split()
    shared = search("strudel")
    assert shared.returncode == 0 and tenants.pb in shared.stdout.split()
    assert search("--tenant", A, "zanzibar").stdout.strip() == "no results"
    assert search("--tenant", B, "zanzibar").stdout.splitlines()[0].split()[2] == tenants.pb

    refused = search("--tenant", "nobody", "ada")
    assert refused.returncode == 2 and refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert line.startswith("lakehouse: error: no documents of tenant 'nobody'")
    assert not any(t in line for t in (A, B, M, "wis.c5"))
    both = search("--tenant", A, "--index", "catalog", "ada")
    assert both.returncode == 2 and "leave out --index" in both.stderr
