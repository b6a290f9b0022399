"""Publishing as Dagster assets: the lake in Glue, the Athena views, the Redshift schemas and views,
and the local DuckDB warehouse. Each asset is one call into `pipelines.publish.catalogs`; its metadata shows
the plan it applied, and a check per asset re-plans (a dry run) and passes only when nothing is left
to change, i.e. every published object matches its declaration.

Groups: `catalog` holds what registers the lake for other engines (Glue tables, Athena views);
`analytics` holds the warehouses that query it (Redshift, the local DuckDB warehouse)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg

from dagster_project.assets import changelog_key, current_key
from pipelines.config import LakehouseConfig
from pipelines.publish.catalogs import (
    glue_enabled,
    open_warehouse,
    publish_athena_views,
    publish_changelogs,
    publish_current_state,
    publish_redshift,
)

GLUE_KEY = dg.AssetKey(["catalog", "glue_changelogs"])
GLUE_CURRENT_KEY = dg.AssetKey(["catalog", "glue_current_state"])
ATHENA_KEY = dg.AssetKey(["catalog", "athena_views"])
# The Redshift and local warehouses query the lake: group `analytics`, under the same prefix.
REDSHIFT_KEY = dg.AssetKey(["analytics", "redshift_schemas_and_views"])
WAREHOUSE_KEY = dg.AssetKey(["analytics", "local_warehouse"])


_FIX = (
    "When it fails, the published objects were changed by hand or the declaration changed: "
    "materialize the asset to apply the plan listed in `pending`."
)


def _lines(items: Any) -> dg.MetadataValue:
    text = "\n".join(f"- {line}" for line in str(items).splitlines() if line.strip())
    return dg.MetadataValue.md(text or "nothing to change")


def _pending(actions: list[Any]) -> list[Any]:
    """Actions that would change something (reports such as orphans change nothing)."""
    return [
        a
        for a in actions
        if a.kind not in {"orphan_table", "skip_view", "unmanaged_schema", "unmanaged_view"}
    ]


def _plan_asset(
    key: dg.AssetKey,
    check_name: str,
    publish: Callable[..., Any],
    *,
    deps: list[dg.AssetKey],
    kinds: set[str],
    description: str,
    group: str = "catalog",
    check_description: str,
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    """An asset that applies `publish`'s plan, and a check that a dry run plans nothing more."""

    @dg.asset(key=key, group_name=group, kinds=kinds, deps=deps, description=description)
    def _asset() -> dg.MaterializeResult:
        # One plan, made before anything is changed (what a dry run prints), then applied.
        applied = publish()
        return dg.MaterializeResult(
            metadata={
                "applied_plan": _lines(applied),
                "changes_applied": len(_pending(applied.actions)),
                "reported_not_changed": [
                    str(a) for a in applied.actions if a not in _pending(applied.actions)
                ],
            }
        )

    @dg.asset_check(asset=key, name=check_name, description=check_description)
    def _check() -> dg.AssetCheckResult:
        pending = _pending(publish(dry_run=True).actions)
        return dg.AssetCheckResult(
            passed=not pending,
            metadata={"pending": dg.MetadataValue.md("\n".join(f"- {a}" for a in pending) or "none")},
        )

    return _asset, _check


def build_catalog_definitions(
    config: LakehouseConfig,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    changelogs = [changelog_key(s.name, str(t)) for s in config.sources for t in (s.tables or ())]
    currents = [current_key(s.name, str(t)) for s in config.sources for t in (s.tables or ())]
    assets: list[dg.AssetsDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    redshift = config.redshift

    def add(pair: tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]) -> None:
        assets.append(pair[0])
        checks.append(pair[1])

    if glue_enabled(config):
        add(
            _plan_asset(
                GLUE_KEY,
                "glue_matches_lake",
                lambda dry_run=False: publish_changelogs(config, dry_run=dry_run),
                deps=changelogs,
                kinds={"glue"},
                description="Every source's change logs registered in Glue (Athena / Redshift Spectrum read them).",
                check_description="A dry run of the Glue publish plans nothing: every change log is registered "
                "in Glue with the lake's columns and location. " + _FIX,
            )
        )
        add(
            _plan_asset(
                GLUE_CURRENT_KEY,
                "glue_current_matches_lake",
                lambda dry_run=False: publish_current_state(config, dry_run=dry_run),
                deps=currents,
                kinds={"glue", "iceberg"},
                description="Every current-state Iceberg table registered in Glue at its newest metadata.",
                check_description="A dry run plans nothing: every current-state table's Glue entry points at "
                "its newest Iceberg metadata. Fails after each merge until this asset runs again. " + _FIX,
            )
        )
        if redshift.views:
            add(
                _plan_asset(
                    ATHENA_KEY,
                    "athena_views_match_declaration",
                    lambda dry_run=False: publish_athena_views(config, dry_run=dry_run),
                    deps=[GLUE_KEY, GLUE_CURRENT_KEY],
                    kinds={"athena", "glue"},
                    description="The declared views that read only the lake, as Glue views for Athena.",
                    check_description="A dry run plans nothing: each declared lake-only view exists in Glue "
                    "with its declared SQL. " + _FIX,
                )
            )
    if redshift.target is not None:
        add(
            _plan_asset(
                REDSHIFT_KEY,
                "redshift_matches_declaration",
                lambda dry_run=False: publish_redshift(config, dry_run=dry_run),
                deps=[GLUE_KEY, GLUE_CURRENT_KEY] if glue_enabled(config) else [],
                kinds={"redshift"},
                description="Federated (MYSQL/POSTGRES) and Spectrum schemas and cross-source views on Redshift.",
                group="analytics",
                check_description="A dry run plans nothing: Redshift's external schemas and views match the "
                "declaration (read from SVV_EXTERNAL_SCHEMAS and pg_views). " + _FIX,
            )
        )
    if redshift.declares_anything:
        asset, check = _warehouse_asset(config, deps=currents + changelogs)
        assets.append(asset)
        checks.append(check)
    return assets, checks


def _warehouse_asset(
    config: LakehouseConfig, *, deps: list[dg.AssetKey]
) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    redshift = config.redshift
    views = [f"{v.schema_}.{v.name}" for v in redshift.views]

    @dg.asset(
        key=WAREHOUSE_KEY,
        group_name="analytics",
        kinds={"duckdb"},
        deps=deps,
        description="The local DuckDB warehouse: the lake, the live databases as federated schemas, the views.",
    )
    def local_warehouse() -> dg.MaterializeResult:
        con = open_warehouse(config)
        try:
            rows = {v: con.sql(f"SELECT count(*) FROM {_qualified(v)}").fetchone()[0] for v in views}
        finally:
            con.close()
        return dg.MaterializeResult(
            metadata={
                "federated_schemas": [f"{f.name} ({f.engine} {f.database})" for f in redshift.federated],
                "spectrum_schemas": [f"{s.name} (Glue {s.glue_database})" for s in redshift.spectrum],
                "view_rows": dg.MetadataValue.json(rows),
            }
        )

    @dg.asset_check(
        asset=WAREHOUSE_KEY,
        name="views_answer",
        description="Every declared view runs in the local warehouse and has the declared columns. When it "
        "fails, `problems` names the view and DuckDB's error: fix the view's declaration in lakehouse.toml "
        "or the lake table it reads, then materialize the warehouse again.",
    )
    def views_answer() -> dg.AssetCheckResult:
        """Every declared view runs in the warehouse and has the declared columns."""
        con = open_warehouse(config)
        problems = []
        try:
            for view in redshift.views:
                name = f"{view.schema_}.{view.name}"
                try:
                    got = [d[0] for d in con.sql(f"SELECT * FROM {_qualified(name)} LIMIT 0").description]
                except Exception as exc:  # DuckDB's own error classes
                    problems.append(f"{name}: {exc}")
                    continue
                want = [*view.columns, view.source_column]
                if got != want:
                    problems.append(f"{name}: columns {got}, declared {want}")
        finally:
            con.close()
        return dg.AssetCheckResult(
            passed=not problems, metadata={"problems": dg.MetadataValue.md("\n".join(problems) or "none")}
        )

    return local_warehouse, views_answer


def _qualified(name: str) -> str:
    from sqlglot import exp

    schema, _, view = name.partition(".")
    return exp.table_(view, db=schema, quoted=True).sql("duckdb")
