"""Configuration of the PostgreSQL logical-replication source."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from connectors.config import DatabaseSourceConfig


class PostgresSourceConfig(DatabaseSourceConfig):
    """An Aurora PostgreSQL / PostgreSQL source read through a logical replication slot (pgoutput)."""

    kind: Literal["postgres"] = "postgres"
    port: int = Field(5432, ge=1, le=65535, description="TCP port.")
    schema_name: str = Field("public", alias="schema", description="Schema whose tables are captured.")
    slot: str = Field("", description="Replication slot name; default lakehouse_<source name>.")
    publication: str = Field("", description="Publication name; default lakehouse_<source name>.")

    @property
    def slot_name(self) -> str:
        return self.slot or f"lakehouse_{self.name}"

    @property
    def publication_name(self) -> str:
        return self.publication or f"lakehouse_{self.name}"
