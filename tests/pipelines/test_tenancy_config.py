"""Declared tenancy in lakehouse.toml: what is accepted, and errors that name the bad key."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.config import ConfigError, load_config, parse_config

SOURCES = [
    {"name": "clinic", "kind": "postgres", "port": 5432, "user": "cdc", "database": "d",
     "tables": ["patients", "claims"]},
]  # fmt: skip


def config(tables: dict[str, Any], **tenancy: Any) -> Any:
    return parse_config({"sources": SOURCES, "tenancy": {"tables": tables, **tenancy}}, "test.toml")


def test_the_shipped_config_declares_the_sample_worlds_tenants() -> None:
    tenancy = load_config("lakehouse.toml").tenancy
    assert tenancy.tenant_column("aurora_mysql", "patients") == "tenant_id"
    claims = tenancy.table("aurora_mysql", "insurance_claims")
    assert claims is not None and claims.via is not None and claims.via.table == "patients"
    assert tenancy.tenant_column("aurora_mysql", "insurance_claims") == "tenant_id"  # through patients
    assert tenancy.table("aurora_mysql", "SynonymsTable") is None  # shared by every tenant


def test_a_via_table_resolves_through_its_parent() -> None:
    tenancy = config(
        {
            "clinic.patients": {"column": "org"},
            "clinic.claims": {"via": {"table": "patients", "column": "pid", "key": "id"}},
        }
    ).tenancy
    assert tenancy.tenant_column("clinic", "claims") == "org"
    assert set(tenancy.owned("clinic")) == {"patients", "claims"}


@pytest.mark.parametrize(
    ("tables", "extra", "message"),
    [
        ({"clinic.patients": {}}, {}, "exactly one of `column`"),
        (
            {"clinic.patients": {"column": "a", "via": {"table": "x", "column": "c", "key": "k"}}},
            {},
            "exactly one",
        ),
        (
            {"clinic.claims": {"via": {"table": "patients", "column": "pid", "key": "id"}}},
            {},
            "clinic.patients must be declared",
        ),
        ({"patients": {"column": "org"}}, {}, '"<source>.<table>"'),
        ({"nowhere.patients": {"column": "org"}}, {}, "no source named 'nowhere'"),
        ({"clinic.visits": {"column": "org"}}, {}, "'visits' is not among clinic's tables"),
        ({}, {"tag_key": "bad key!"}, "tenancy.tag_key"),
    ],
)
def test_bad_declarations_name_the_key(tables: dict[str, Any], extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("`", "`")):
        config(tables, **extra)
