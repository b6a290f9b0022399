"""The Redshift declarations executed for real in the local DuckDB warehouse.

What Redshift does with each declaration, DuckDB does here, so the same SQL runs locally:

* a federated schema (`FROM MYSQL` / `FROM POSTGRES`) becomes an attached live database, read-only,
  through DuckDB's MySQL / PostgreSQL scanners. Like Redshift, the credentials come from Secrets
  Manager by the declared ARN (moto locally): the secret's `username` and `password` go into a
  temporary DuckDB secret that lives only in this connection, never in the warehouse file;
* a Spectrum schema (`FROM DATA CATALOG`) becomes a schema of views over the lake tables of its
  Glue database (`<source>` current state, `<source>_changelog` change logs; see `warehouse`);
* a cross-source view is created from the same sqlglot expression, rendered for DuckDB.

Attachments last as long as the connection: a warehouse file opened elsewhere has the lake tables
and the views, and the federated schemas once `attach_federated` runs again (`lakehouse query` does).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlglot import exp

from connectors.catalog.redshift_config import FederatedSchema, RedshiftConfig, SpectrumSchema, UnionView
from connectors.catalog.redshift_ddl import render_view_for
from connectors.catalog.warehouse import WarehouseError

log = logging.getLogger(__name__)

_SCANNER_TYPE = {"MYSQL": "mysql", "POSTGRES": "postgres"}


def _ident(name: str) -> str:
    return exp.to_identifier(name, quoted=True).sql("duckdb")


def _string(value: str) -> str:
    return exp.Literal.string(value).sql("duckdb")


def read_credentials(secrets: Any, schema: FederatedSchema) -> tuple[str, str]:
    """The `username` and `password` of the schema's secret (the format Redshift federated query reads)."""
    where = f"federated schema {schema.name!r}: secret {schema.secret_arn}"
    try:
        text = secrets.get_secret_value(SecretId=schema.secret_arn)["SecretString"]
    except ClientError as exc:
        raise WarehouseError(
            f"{where}: {exc.response['Error'].get('Code', 'error')} from Secrets Manager"
        ) from None
    except BotoCoreError as exc:
        raise WarehouseError(f"{where}: Secrets Manager unreachable ({type(exc).__name__})") from None
    try:
        value = json.loads(text)
        username, password = value["username"], value["password"]
    except (ValueError, KeyError, TypeError):
        # Never echo the secret's text: say only what shape was expected.
        raise WarehouseError(f'{where}: expected JSON {{"username": ..., "password": ...}}') from None
    return str(username), str(password)


def attach_federated(con: Any, schema: FederatedSchema, secrets: Any) -> None:
    """Attach the live database of `schema` read-only under the schema's name."""
    username, password = read_credentials(secrets, schema)
    secret_name = _ident(f"lakehouse_federated_{schema.name}")
    parts = [
        f"TYPE {_SCANNER_TYPE[schema.engine]}",
        f"HOST {_string(schema.uri)}",
        f"PORT {schema.resolved_port}",
        f"USER {_string(username)}",
        f"PASSWORD {_string(password)}",
        f"DATABASE {_string(schema.database)}",
    ]
    options = [f"TYPE {_SCANNER_TYPE[schema.engine]}", f"SECRET {secret_name}", "READ_ONLY"]
    if schema.schema_name is not None:
        options.append(f"SCHEMA {_string(schema.schema_name)}")
    try:
        con.sql(f"CREATE OR REPLACE TEMPORARY SECRET {secret_name} ({', '.join(parts)})")
        con.sql(f"DETACH DATABASE IF EXISTS {_ident(schema.name)}")
        con.sql(f"ATTACH '' AS {_ident(schema.name)} ({', '.join(options)})")
    except Exception as exc:  # DuckDB's error classes; the text names host and cause
        message = str(exc).replace(password, "***") if password else str(exc)
        raise WarehouseError(
            f"federated schema {schema.name!r} ({schema.engine} {schema.uri}:{schema.resolved_port}/"
            f"{schema.database}): {message}"
        ) from None
    log.info(
        "attached %s %s:%s/%s as %s",
        schema.engine,
        schema.uri,
        schema.resolved_port,
        schema.database,
        schema.name,
    )


def create_spectrum_schema(con: Any, schema: SpectrumSchema) -> list[str]:
    """Views `<schema>.<table>` over every lake table of the Glue database; their names."""
    database = schema.glue_database
    tables = [
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1", [database]
        ).fetchall()
    ]
    if not tables:
        known = sorted(
            row[0]
            for row in con.execute(
                "SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_catalog = current_database()"
            ).fetchall()
        )
        raise WarehouseError(
            f"spectrum schema {schema.name!r}: the lake has no tables for Glue database {database!r} "
            f"(lake schemas: {known}); sync the source first"
        )
    if schema.name == database:
        return [f"{database}.{t}" for t in tables]
    con.sql(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema.name)}")
    for table in tables:
        con.sql(
            f"CREATE OR REPLACE VIEW {_ident(schema.name)}.{_ident(table)} AS "
            f"SELECT * FROM {_ident(database)}.{_ident(table)}"
        )
    return [f"{schema.name}.{t}" for t in tables]


def create_view(con: Any, view: UnionView) -> None:
    """The declared view, from the same expression as its Redshift DDL."""
    con.sql(f"CREATE SCHEMA IF NOT EXISTS {_ident(view.schema_)}")
    try:
        con.sql(render_view_for(view, "duckdb"))
    except Exception as exc:
        raise WarehouseError(f"view {view.schema_}.{view.name}: {exc}") from None


def apply_declarations(
    con: Any, config: RedshiftConfig, secrets: Any, *, views: bool = True
) -> dict[str, Sequence[str]]:
    """Attach, map and create everything `config` declares; what was done, by kind."""
    done: dict[str, list[str]] = {"federated": [], "spectrum": [], "views": []}
    for federated in config.federated:
        attach_federated(con, federated, secrets)
        done["federated"].append(federated.name)
    for spectrum in config.spectrum:
        create_spectrum_schema(con, spectrum)
        done["spectrum"].append(spectrum.name)
    if views:
        for view in config.views:
            create_view(con, view)
            done["views"].append(f"{view.schema_}.{view.name}")
    return dict(done)
