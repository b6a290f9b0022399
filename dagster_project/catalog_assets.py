"""The lake in the Glue Data Catalog as a Dagster asset: the applied plan in its metadata, and a
check that nothing is left to change (everything published matches the lake)."""

import dagster as dg

from pipelines.config import LakehouseConfig
from pipelines.publish import publish_changelogs

GLUE_KEY = dg.AssetKey(["catalog", "glue_changelogs"])


def build_catalog_definitions(
    config: LakehouseConfig,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    changelogs = [
        dg.AssetKey([s.name, str(t), "changelog"]) for s in config.sources for t in (s.tables or ())
    ]

    @dg.asset(
        key=GLUE_KEY,
        group_name="catalog",
        kinds={"glue"},
        deps=changelogs,
        description="Every source's change logs registered in Glue (Athena / Redshift Spectrum read them).",
    )
    def glue_changelogs() -> dg.MaterializeResult:
        plan = publish_changelogs(config)
        return dg.MaterializeResult(
            metadata={
                "applied": dg.MetadataValue.md(
                    "\n".join(f"- {a}" for a in plan.actions) or "nothing to change"
                ),
                "changes": len([a for a in plan.actions if a.kind != "orphan_table"]),
                "orphan_tables": [f"{a.database}.{a.table}" for a in plan.orphans],
            }
        )

    @dg.asset_check(asset=GLUE_KEY, name="glue_matches_lake")
    def glue_matches_lake() -> dg.AssetCheckResult:
        pending = [a for a in publish_changelogs(config, dry_run=True).actions if a.kind != "orphan_table"]
        return dg.AssetCheckResult(
            passed=not pending,
            metadata={"pending": dg.MetadataValue.md("\n".join(f"- {a}" for a in pending) or "none")},
        )

    return [glue_changelogs], [glue_matches_lake]
