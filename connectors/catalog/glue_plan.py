"""What a Glue publisher would change, as a plan of actions, and applying one.

The change-log, current-state and Athena-view publishers all plan first (so a dry run prints the
plan) and then apply it action by action; this module is that shared part. Report-only actions
(`orphan_table`, `skip_view`) change nothing and are logged as warnings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

ActionKind = Literal[
    "create_database",
    "create_table",
    "update_table",
    "add_partitions",
    "orphan_table",
    "create_view",
    "update_view",
    "skip_view",
]
REPORT_ONLY: frozenset[str] = frozenset({"orphan_table", "skip_view"})
SOURCE_PARAMETER = "lakehouse.source"  # set on every table the publishers create


class CatalogError(Exception):
    """A Glue call failed, or a declaration cannot be published; the message names the object."""


@dataclass(frozen=True, slots=True)
class Action:
    """One change the publisher would make (or, for a report-only kind, only report)."""

    kind: ActionKind
    database: str
    table: str = ""
    detail: str = ""
    payload: Any = None
    # For updates: the Glue table version read when planning; the update then fails if the
    # table changed since (another writer), instead of overwriting it.
    version: str | None = None

    def __str__(self) -> str:
        where = f"{self.database}.{self.table}" if self.table else self.database
        return f"{self.kind} {where}" + (f": {self.detail}" if self.detail else "")


@dataclass
class Plan:
    """The actions of one publish, in order."""

    actions: list[Action] = field(default_factory=list)

    @property
    def reports(self) -> list[Action]:
        """The report-only actions (orphaned tables, skipped views)."""
        return [a for a in self.actions if a.kind in REPORT_ONLY]

    @property
    def orphans(self) -> list[Action]:
        return [a for a in self.actions if a.kind == "orphan_table"]

    @property
    def skipped(self) -> list[Action]:
        return [a for a in self.actions if a.kind == "skip_view"]

    def __str__(self) -> str:
        return "\n".join(str(a) for a in self.actions) or "nothing to change"


def apply_action(glue: Any, action: Action) -> None:
    """The Glue call of one action: databases, tables and views (a view is a table in Glue)."""
    if action.kind == "create_database":
        glue.create_database(DatabaseInput={"Name": action.database, "Description": action.detail})
    elif action.kind in ("create_table", "create_view"):
        glue.create_table(DatabaseName=action.database, TableInput=action.payload)
    elif action.kind in ("update_table", "update_view"):
        extra = {"VersionId": action.version} if action.version else {}
        glue.update_table(DatabaseName=action.database, TableInput=action.payload, **extra)
    else:
        raise CatalogError(f"{action}: no Glue call for {action.kind!r}")


def apply_plan(glue: Any, plan: Plan, apply_one: Callable[[Action], None] | None = None) -> None:
    """Apply each action (with `apply_one`, default `apply_action`); a race with another publisher
    that created the same object first is fine, any other failure stops the run naming it."""
    apply_one = apply_one or (lambda action: apply_action(glue, action))
    for action in plan.actions:
        if action.kind in REPORT_ONLY:
            log.warning("%s", action)
            continue
        try:
            apply_one(action)
        except glue.exceptions.AlreadyExistsException:
            log.info("%s: already there (another publisher)", action)
            continue
        except Exception as exc:
            raise CatalogError(f"{action}: {exc}") from None
        log.debug("%s", action)  # the caller prints the plan; -v shows each action as it lands


def list_tables(glue: Any, database: str) -> dict[str, dict[str, Any]] | None:
    """The database's tables by name (None when the database does not exist)."""
    try:
        glue.get_database(Name=database)
    except glue.exceptions.EntityNotFoundException:
        return None
    except Exception as exc:
        raise CatalogError(f"{database}: {exc}") from None
    tables: dict[str, dict[str, Any]] = {}
    try:
        for page in glue.get_paginator("get_tables").paginate(DatabaseName=database):
            for table in page["TableList"]:
                tables[table["Name"]] = table
    except Exception as exc:
        raise CatalogError(f"{database}: listing tables: {exc}") from None
    return tables


def unconfigured_sources(glue: Any, configured: Collection[str], lake_uri: str) -> Plan:
    """Reports (never drops) our tables whose source is no longer configured: tables marked with
    a source, located in this lake (`lake_uri`), in any Glue database."""
    plan = Plan()
    tables = glue.get_paginator("get_tables")
    for page in glue.get_paginator("get_databases").paginate():
        for database in page["DatabaseList"]:
            for table_page in tables.paginate(DatabaseName=database["Name"]):
                for table in sorted(table_page["TableList"], key=lambda t: t["Name"]):
                    source = table.get("Parameters", {}).get(SOURCE_PARAMETER)
                    location = table.get("StorageDescriptor", {}).get("Location", "")
                    if source is not None and source not in configured and location.startswith(lake_uri):
                        detail = f"source {source!r} is no longer in the configuration; left in place"
                        plan.actions.append(Action("orphan_table", database["Name"], table["Name"], detail))
    return plan
