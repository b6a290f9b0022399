"""The local analytics warehouse: DuckDB over the lake, offline, the embedded default.

Each source becomes two DuckDB schemas: `<source>` with its current-state tables (Iceberg,
through `iceberg_scan` of the table's current metadata) and `<source>_changelog` with its change
logs (Parquet, Hive-partitioned by `commit_date`). DuckDB and its extensions are pinned and loaded
from their PyPI wheels, never downloaded at run time (../shared/PITFALLS.md). Statements are built
with sqlglot so names and paths are quoted correctly whatever they contain.
"""

from __future__ import annotations

import importlib
import logging
import pathlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
from sqlglot import exp

from connectors.lake.lake import Lake

log = logging.getLogger(__name__)

EXTENSIONS = ("httpfs", "avro", "iceberg")  # avro before iceberg: iceberg needs it
# Loaded only when federated schemas are attached (see warehouse_federation).
FEDERATION_EXTENSIONS = ("mysql_scanner", "postgres_scanner")


class WarehouseError(Exception):
    """DuckDB or one of its extensions could not be loaded, or a query failed."""


def _ident(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _string(value: str) -> str:
    return exp.Literal.string(value).sql("duckdb")


def connect(path: str = ":memory:", *, federation: bool = False) -> Any:
    """A DuckDB connection with the lake's extensions (and the MySQL/PostgreSQL scanners when
    `federation`) loaded from their wheels."""
    try:
        import duckdb
    except ImportError:
        raise WarehouseError(
            "DuckDB is not installed (pip install 'duckdb==1.5.5' and its extensions)"
        ) from None
    con = duckdb.connect(
        path, config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    for name in EXTENSIONS + (FEDERATION_EXTENSIONS if federation else ()):
        try:
            module = importlib.import_module(f"duckdb_extension_{name}")
        except ImportError:
            raise WarehouseError(
                f"the DuckDB extension wheel duckdb-extension-{name.replace('_', '-')} is not installed"
            ) from None
        file = (
            pathlib.Path(module.__file__ or "").parent
            / "extensions"
            / f"v{duckdb.__version__}"
            / f"{name}.duckdb_extension"
        )
        if not file.exists():
            raise WarehouseError(
                f"{file} is missing: duckdb-extension-{name} does not match DuckDB {duckdb.__version__}"
            )
        con.sql(f"LOAD {_string(str(file))}")
    return con


def register_lake(con: Any, lake: Lake, sources: Sequence[str]) -> list[str]:
    """Views over every table of `sources`; returns their qualified names."""
    if lake.storage.is_s3:
        s3 = lake.config.s3
        # The lake's own resolved region and current keys (a profile, an assumed role or a task
        # role included), so DuckDB reads as the pipeline does.
        access = lake.storage.reader_credentials()
        parts = [
            "TYPE s3",
            f"REGION {_string(access.region)}",
            f"KEY_ID {_string(access.access_key_id)}",
            f"SECRET {_string(access.secret_access_key.get_secret_value())}",
        ]
        if access.session_token is not None:
            parts.append(f"SESSION_TOKEN {_string(access.session_token.get_secret_value())}")
        if s3.endpoint_url:
            endpoint = urlparse(s3.endpoint_url)
            # DuckDB wants host:port without a scheme, and path-style URLs for S3-compatible servers.
            parts += [
                f"ENDPOINT {_string(endpoint.netloc)}",
                "URL_STYLE 'path'",
                f"USE_SSL {str(endpoint.scheme == 'https').lower()}",
            ]
        con.sql(f"CREATE OR REPLACE SECRET lake_s3 ({', '.join(parts)})")
    names = []
    for source in sources:
        current = lake.current(source)
        con.sql(f"CREATE SCHEMA IF NOT EXISTS {_ident(source)}")
        con.sql(f"CREATE SCHEMA IF NOT EXISTS {_ident(source + '_changelog')}")
        for lake_table in lake.changelog_tables(source):
            files = lake.storage.uri(f"changelog/{source}/{lake_table}") + "/*/*.parquet"
            view = f"{_ident(source + '_changelog')}.{_ident(lake_table)}"
            con.sql(
                f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet({_string(files)}, "
                "hive_partitioning = true, union_by_name = true)"
            )
            names.append(f"{source}_changelog.{lake_table}")
            table = current.load(lake_table)
            if table is not None:
                con.sql(
                    f"CREATE OR REPLACE VIEW {_ident(source)}.{_ident(lake_table)} AS "
                    f"SELECT * FROM iceberg_scan({_string(table.metadata_location)})"
                )
                names.append(f"{source}.{lake_table}")
    return names


def query(con: Any, sql: str) -> pa.Table:
    try:
        return con.sql(sql).to_arrow_table()
    except Exception as exc:  # DuckDB's own error classes; the message says what is wrong
        raise WarehouseError(f"query failed: {exc}") from None
