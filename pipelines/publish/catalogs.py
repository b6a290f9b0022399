"""`lakehouse publish`: the lake and the analytics declarations, published from the same
configuration that drives the pipeline.

In order, each part only when configured:
1. Glue (when `lake.catalog = "glue"` or `lake.glue_endpoint_url` is set): the change logs as Hive
   tables, the current-state Iceberg tables, and the declared views that read only the lake as
   Athena (Presto) views;
2. Redshift (when `[redshift.target]` is set): federated and Spectrum schemas and views, through
   the Data API, changing only what differs. Without a target a dry run renders the full DDL
   offline (every statement a first publish would run; secrets only as their ARNs);
3. the local DuckDB warehouse, always: the lake tables, the live databases attached as the
   federated schemas, the Spectrum schemas and the views, executed for real.
A dry run reads everything and changes nothing; the warehouse step is then only described.
Before any part changes anything, the names the Athena step would create are checked, so a name
Athena cannot query stops the run with nothing published.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from connectors.catalog.glue_changelog import ChangelogCatalog
from connectors.catalog.glue_plan import Plan, unconfigured_sources
from connectors.catalog.redshift_publish import RedshiftPlan, offline_plan
from connectors.lake.catalog import glue_client as lake_glue_client
from connectors.lake.lake import Lake
from connectors.lake.storage import Storage
from connectors.usage import instrument
from pipelines.capture.sources import open_source
from pipelines.config import LakehouseConfig

log = logging.getLogger(__name__)


def glue_client(config: LakehouseConfig) -> Any:
    """A Glue client with the lake's credentials (the AWS chain when none are set), endpoint and
    region (`lake.glue_region`, else the lake bucket's)."""
    lake = config.lake
    return lake_glue_client(lake, Storage(lake.root, lake.s3) if lake.root.startswith("s3://") else None)


def glue_enabled(config: LakehouseConfig) -> bool:
    return config.lake.catalog == "glue" or config.lake.glue_endpoint_url is not None


def secrets_client(config: LakehouseConfig) -> Any:
    aws = config.redshift.aws
    return instrument(boto3.client("secretsmanager", **aws.client_kwargs(aws.secrets_endpoint_url)))


def warehouse_path(config: LakehouseConfig) -> str:
    """The local DuckDB warehouse file: beside a local lake, or in the working directory."""
    root = config.lake.root
    if root.startswith("s3://"):
        return "warehouse.duckdb"
    return str(Path(root.removeprefix("file://")) / "warehouse.duckdb")


def published_schemas(config: LakehouseConfig, dialect: str) -> dict[str, str]:
    """Local warehouse schema -> the name the use cases read it by in `dialect`.

    Locally the lake's schemas are `<source>` and `<source>_changelog`, the same names as their Glue
    databases, so Athena needs no mapping; Redshift reads a Glue database through the Spectrum
    schema declared over it.
    """
    if dialect == "redshift":
        return {s.glue_database: s.name for s in config.redshift.spectrum}
    return {}


def configured_lake_tables(config: LakehouseConfig) -> dict[str, set[str]]:
    """Per source that lists its tables, their lake names (a source capturing every table of its
    database is absent: whatever its lake holds is configured). The connectors name the tables,
    without connecting, since the configuration lists them."""
    out: dict[str, set[str]] = {}
    for source_config in config.sources:
        if source_config.tables:
            source = open_source(source_config)
            try:
                out[source.name] = {t.lake_name for t in source.tables()}
            finally:
                source.close()
    return out


def publish_changelogs(config: LakehouseConfig, *, dry_run: bool = False, glue: Any = None) -> Plan:
    """Every configured source's change logs as Glue tables; the plan (applied unless `dry_run`).

    Tables and sources no longer in the configuration are reported (never dropped)."""
    glue = glue or glue_client(config)
    lake = Lake(config.lake)
    names = [s.name for s in config.sources]
    plan = ChangelogCatalog(glue, lake).publish(
        names, dry_run=dry_run, configured=configured_lake_tables(config)
    )
    plan.actions += unconfigured_sources(glue, names, lake.storage.uri("")).actions
    return plan


def publish_current_state(config: LakehouseConfig, *, dry_run: bool = False, glue: Any = None) -> Plan:
    """Every configured source's current-state Iceberg tables as Glue tables."""
    from connectors.catalog.glue_current import CurrentStateCatalog

    catalog = CurrentStateCatalog(glue or glue_client(config), Lake(config.lake))
    names = [s.name for s in config.sources]
    return catalog.publish(names, dry_run=dry_run, configured=configured_lake_tables(config))


def check_athena_names(config: LakehouseConfig) -> None:
    """Refuse (CatalogError naming each field) a database, view or column name that the Athena step
    would create and Athena cannot query; reads nothing."""
    from connectors.catalog.athena_views import check_athena_names as check

    redshift = config.redshift
    check(redshift.views, redshift.spectrum, [f.name for f in redshift.federated])


def publish_athena_views(config: LakehouseConfig, *, dry_run: bool = False, glue: Any = None) -> Any:
    """The declared views that read only the lake, as Glue views Athena queries."""
    from connectors.catalog.athena_views import AthenaViewCatalog

    redshift = config.redshift
    return AthenaViewCatalog(glue or glue_client(config)).publish(
        redshift.views, redshift.spectrum, [f.name for f in redshift.federated], dry_run=dry_run
    )


def tenant_layout(config: LakehouseConfig, con: Any) -> Any:
    """The tenant-owned tables and tenants (`tenant_warehouse.TenantLayout`) read from a DuckDB
    connection with the lake registered; None when no tenancy is declared."""
    from connectors.catalog.tenant_warehouse import read_layout

    tenancy = config.tenancy
    if not tenancy.tables:
        return None
    owning = {key.split(".")[0] for key in tenancy.tables}
    lake_names: dict[str, dict[str, str]] = {}
    for source_config in config.sources:
        if source_config.name in owning:
            source = open_source(source_config)
            try:
                lake_names[source.name] = {t.name: t.lake_name for t in source.tables()}
            finally:
                source.close()
    return read_layout(con, tenancy, lake_names)


def redshift_tenants(config: LakehouseConfig) -> Any:
    """The tenants' Redshift layout (`tenant_rls.RlsLayout`) from the lake; None without tenancy."""
    from connectors.catalog.tenant_rls import rls_layout
    from connectors.catalog.warehouse import connect, register_lake

    if not config.tenancy.tables:
        return None
    con = connect()
    try:
        register_lake(con, Lake(config.lake), sorted({k.split(".")[0] for k in config.tenancy.tables}))
        layout = tenant_layout(config, con)
    finally:
        con.close()
    return rls_layout(
        config.tenancy.tag_key, config.redshift.spectrum, layout.tables, layout.tenants, layout.refused
    )


def publish_redshift(config: LakehouseConfig, *, dry_run: bool = False, client: Any = None) -> RedshiftPlan:
    """The declared schemas and views on the `[redshift.target]` cluster, through the Data API; each
    statement waits at most the target's `statement_timeout_seconds`."""
    from connectors.catalog.redshift_data import DataApiRunner
    from connectors.catalog.redshift_publish import RedshiftPublisher

    redshift = config.redshift
    if redshift.target is None:
        raise ValueError("redshift.target: not set (a cluster_identifier or workgroup_name to publish to)")
    if client is None:
        client = instrument(
            boto3.client("redshift-data", **redshift.aws.client_kwargs(redshift.aws.endpoint_url))
        )
    runner = DataApiRunner(client, redshift.target)
    return RedshiftPublisher(runner, redshift, tenants=redshift_tenants(config)).publish(dry_run=dry_run)


def open_warehouse(config: LakehouseConfig, path: str | None = None, *, secrets: Any = None) -> Any:
    """A DuckDB connection on the warehouse file with the lake and every declaration in place."""
    from connectors.catalog.warehouse import connect, register_lake
    from connectors.catalog.warehouse_federation import apply_declarations

    redshift = config.redshift
    con = connect(path or warehouse_path(config), federation=bool(redshift.federated))
    try:
        register_lake(con, Lake(config.lake), [s.name for s in config.sources])
        if redshift.declares_anything:
            apply_declarations(con, redshift, secrets or secrets_client(config))
        layout = tenant_layout(config, con)
        if layout is not None:
            from connectors.catalog.tenant_warehouse import create_duckdb_tenant_views

            create_duckdb_tenant_views(con, layout)  # per-tenant schemas (issue 16)
    except BaseException:
        con.close()
        raise
    return con


@dataclass
class PublishReport:
    """What each part of `publish` planned (and, unless a dry run, applied)."""

    dry_run: bool
    sections: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        head = "plan (dry run), nothing changed\n" if self.dry_run else ""
        return head + "\n".join(f"== {title}\n{body}" for title, body in self.sections)


def publish(
    config: LakehouseConfig, *, dry_run: bool = False, parts: Sequence[str] | None = None
) -> PublishReport:
    """Publish every configured part (or only `parts`: glue, athena, redshift, warehouse)."""
    wanted = set(parts or ("glue", "athena", "redshift", "warehouse"))
    report = PublishReport(dry_run)
    redshift = config.redshift
    athena = glue_enabled(config) and "athena" in wanted and bool(redshift.views)
    if athena:
        check_athena_names(config)  # before the Glue step changes anything
    if glue_enabled(config) and "glue" in wanted:
        glue = glue_client(config)
        report.sections.append(
            ("Glue: change logs", str(publish_changelogs(config, dry_run=dry_run, glue=glue)))
        )
        report.sections.append(
            ("Glue: current state", str(publish_current_state(config, dry_run=dry_run, glue=glue)))
        )
    if athena:
        report.sections.append(("Athena views (Glue)", str(publish_athena_views(config, dry_run=dry_run))))
    if redshift.target is not None and "redshift" in wanted:
        report.sections.append(("Redshift", str(publish_redshift(config, dry_run=dry_run))))
    elif "redshift" in wanted and (dry_run or parts) and redshift.declares_anything:
        report.sections.append(_redshift_without_target(config, dry_run=dry_run))
    if "warehouse" in wanted:
        path = warehouse_path(config)
        if dry_run:
            body = _describe_warehouse(config, path)
        else:
            con = open_warehouse(config, path)
            con.close()
            body = _describe_warehouse(config, path, done=True)
        report.sections.append(("Local warehouse (DuckDB)", body))
    return report


def _redshift_without_target(config: LakehouseConfig, *, dry_run: bool) -> tuple[str, str]:
    """With no cluster to compare with, a dry run shows the whole DDL, rendered offline; a real run
    (asked for by `--only redshift`) says why nothing was published rather than staying silent."""
    if not dry_run:
        return (
            "Redshift",
            "no [redshift.target]: nothing published (a dry run prints the DDL without a cluster)",
        )
    title = "Redshift DDL (no [redshift.target]: rendered offline, as a first publish would run it)"
    return (title, offline_plan(config.redshift, redshift_tenants(config)).script())


def _describe_warehouse(config: LakehouseConfig, path: str, *, done: bool = False) -> str:
    verb = "" if done else "would "
    redshift = config.redshift
    lines = [f"{path}: {verb}register the lake ({', '.join(s.name for s in config.sources) or 'no sources'})"]
    lines += [
        f"{verb}attach {f.engine} {f.database} at {f.uri}:{f.resolved_port} as {f.name}"
        for f in redshift.federated
    ]
    lines += [f"{verb}map Glue database {s.glue_database} as {s.name}" for s in redshift.spectrum]
    lines += [f"{verb}create view {v.schema_}.{v.name}" for v in redshift.views]
    if config.tenancy.tables:
        lines.append(
            f"{verb}create a schema {config.tenancy.tag_key}_<tenant> of tenant views per tenant in the lake"
        )
    return "\n".join(lines)
