"""Configuration of the PostgreSQL logical-replication source."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from connectors.config import DatabaseSourceConfig

# PostgreSQL accepts only lower-case letters, digits and underscores in slot names (63 bytes max);
# the same rule for the publication keeps both usable in replication commands without quoting.
_PG_OBJECT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


class PostgresSourceConfig(DatabaseSourceConfig):
    """An Aurora PostgreSQL / PostgreSQL source read through a logical replication slot (pgoutput)."""

    kind: Literal["postgres"] = "postgres"
    port: int = Field(5432, ge=1, le=65535, description="TCP port.")
    reader_host: str | None = Field(
        None,
        description=(
            "A read-only endpoint (an Aurora cluster reader endpoint) for the exact row-count "
            "reconciliation; unset, it runs on `host`. Capture always uses `host`."
        ),
    )
    schema_name: str = Field("public", alias="schema", description="Schema whose tables are captured.")
    slot: str = Field("", description="Replication slot name; default lakehouse_<source name>.")
    publication: str = Field("", description="Publication name; default lakehouse_<source name>.")
    idle_heartbeat_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "While no captured table changes, ask the server for its WAL position twice per period and commit "
            "a new position to the lake as a row-less batch (at most twice per period), so that the slot can "
            "be advanced (the server keeps WAL until then)."
        ),
    )
    binary_values: bool = Field(
        True,
        description=(
            "Ask pgoutput for values in binary form (PostgreSQL 14+; faster on both sides) when every captured "
            "column's type has a binary decoder here; otherwise, or when false, values come as text. The lake "
            "receives the same values either way."
        ),
    )

    @field_validator("slot", "publication")
    @classmethod
    def _valid_pg_name(cls, v: str) -> str:
        if v and not _PG_OBJECT_NAME.match(v):
            raise ValueError(f"{v!r} must be 1-63 lower-case letters, digits or underscores")
        return v

    @model_validator(mode="after")
    def _derived_names_fit(self) -> PostgresSourceConfig:
        for what, value in (("slot", self.slot_name), ("publication", self.publication_name)):
            if len(value) > 63:
                raise ValueError(
                    f"{what} name {value!r} is longer than 63 characters; set `{what}` explicitly"
                )
        return self

    @property
    def slot_name(self) -> str:
        return self.slot or f"lakehouse_{self.name}"

    @property
    def publication_name(self) -> str:
        return self.publication or f"lakehouse_{self.name}"
