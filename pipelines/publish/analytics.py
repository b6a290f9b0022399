"""Named, versioned analytics queries (`pipelines/publish/usecases/*.sql`): run locally, rendered elsewhere.

Each file starts with `-- name:`, `-- version:` and `-- audience:` lines, then the query written
for DuckDB against the local warehouse's schemas (`<source>` current state, `<source>_changelog`).
`render` turns it into Redshift or Athena SQL with sqlglot, mapping the local schema names to the
published ones (the Spectrum schema, the Glue database).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

_HEADER = re.compile(r"^--\s*(name|version|audience):\s*(.+?)\s*$", re.MULTILINE)


class UseCaseError(Exception):
    """A use-case file is malformed, unknown, or its SQL does not parse."""


@dataclass(frozen=True, slots=True)
class UseCase:
    name: str
    version: int
    audience: str
    sql: str


def load_use_cases() -> dict[str, UseCase]:
    cases = {}
    for file in sorted(resources.files("pipelines.publish.usecases").iterdir(), key=lambda f: f.name):
        if not file.name.endswith(".sql"):
            continue
        text = file.read_text()
        header = dict(_HEADER.findall(text))
        missing = {"name", "version", "audience"} - set(header)
        if missing:
            raise UseCaseError(f"{file.name}: header lines missing: {sorted(missing)}")
        if header["name"] != file.name.removesuffix(".sql"):
            raise UseCaseError(f"{file.name}: name {header['name']!r} does not match the file name")
        try:
            sqlglot.parse_one(text, read="duckdb")
        except sqlglot.errors.ParseError as exc:
            raise UseCaseError(f"{file.name}: {exc}") from None
        cases[header["name"]] = UseCase(header["name"], int(header["version"]), header["audience"], text)
    return cases


def run(
    con: Any,
    name: str,
    schemas: Mapping[str, str] | None = None,
    databases: Mapping[str, str] | None = None,
    tables: Mapping[str, str] | None = None,
) -> pa.Table:
    """Execute a use case in the local DuckDB warehouse (see connectors.catalog.warehouse).

    `schemas` renames sources (`aurora_mysql` -> another source name) and `databases` the source
    database inside lake table names (`health__patients` -> `<database>__patients`); `tables`
    renames whole lake table names.
    """
    return con.sql(_rewrite(_case(name).sql, "duckdb", schemas, databases, tables)).to_arrow_table()


def render(
    name: str,
    dialect: str,
    schemas: Mapping[str, str] | None = None,
    databases: Mapping[str, str] | None = None,
) -> str:
    """The use case's SQL for `dialect` ("redshift", "athena"), local names mapped as in `run`."""
    return _rewrite(_case(name).sql, dialect, schemas, databases, pretty=True)


def _rewrite(
    sql: str,
    dialect: str,
    schemas: Mapping[str, str] | None,
    databases: Mapping[str, str] | None,
    tables: Mapping[str, str] | None = None,
    *,
    pretty: bool = False,
) -> str:
    tree = sqlglot.parse_one(sql, read="duckdb")
    for table in tree.find_all(exp.Table):
        if schemas and table.db in schemas:
            table.set("db", exp.to_identifier(schemas[table.db]))
        database, sep, rest = table.name.partition("__")
        if databases and sep and database in databases:
            table.set("this", exp.to_identifier(f"{databases[database]}__{rest}".lower()))
        if tables and table.name in tables:
            table.set("this", exp.to_identifier(tables[table.name]))
    return tree.sql(dialect=dialect, pretty=pretty)


def _case(name: str) -> UseCase:
    cases = load_use_cases()
    if name not in cases:
        raise UseCaseError(f"no use case {name!r}; known: {sorted(cases)}")
    return cases[name]
