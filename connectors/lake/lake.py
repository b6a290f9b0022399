"""The lake as one object: storage, the Iceberg catalog, and per-source writers and state."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import In

from connectors.events import TableId
from connectors.lake.catalog import open_catalog
from connectors.lake.commits import CommitLog, FileRef
from connectors.lake.config import LakeConfig
from connectors.lake.current import CurrentState, LargeTableMerger
from connectors.lake.lease import Lease
from connectors.lake.storage import Storage
from connectors.lake.tenant_layout import TenantRouter
from connectors.lake.writer import LakeWriter, changelog_prefix
from connectors.tenancy import TenancyConfig

log = logging.getLogger(__name__)


class Lake:
    """Entry point for everything that reads or writes the lake."""

    def __init__(self, config: LakeConfig, tenancy: TenancyConfig | None = None) -> None:
        """`tenancy`: the tenant-owned tables, whose change logs are laid out by tenant (§25)."""
        self.config = config
        self.tenancy = tenancy
        self.storage = Storage(config.root, config.s3)
        self._spark_merger: LargeTableMerger | None = None

    @cached_property
    def catalog(self) -> Catalog:
        if self.config.catalog == "sqlite" and self.storage.is_s3:
            # docs/decisions.md §15: Glue is the production catalog. With SQLite, Athena and
            # Spectrum read Glue's copy of the pointer, which only `lakehouse publish` moves.
            log.warning(
                "lake.catalog is 'sqlite' on an S3 lake: Glue sees current state only as of the "
                "last `lakehouse publish` (its files stay for lake.retention's age + grace once superseded); "
                "set lake.catalog = 'glue' in production"
            )
        return open_catalog(self.config, self.storage)

    def writer(self, source: str, lease: Lease | None = None) -> LakeWriter:
        """The source's writer. Opening one recovers the source (rolls the last commit forward and
        empties its staging), so only the process that holds the source's lease opens it."""
        return LakeWriter(self.storage, source, lease, self.tenant_router(source))

    def tenant_router(self, source: str) -> TenantRouter | None:
        """How `source`'s writer routes rows to tenants (None: it owns no tenant tables)."""
        if self.tenancy is None or not self.tenancy.owned(source):
            return None
        return TenantRouter(self.tenancy, source, lambda *args: self.lookup_tenants(source, *args))

    def lookup_tenants(
        self, source: str, lake_table: str, key: str, tenant_column: str, values: Sequence[Any]
    ) -> dict[Any, str | None]:
        """The lake's tenant of `lake_table`'s rows with `key` in `values`: the current state, then
        the committed changes it has not merged yet (the newest `_seq` wins; a deleted row keeps
        the tenant it had). Keys the lake does not know are left out."""
        found: dict[Any, str | None] = {}
        current = self.current(source)
        table = current.load(lake_table)
        if table is not None:
            match = In(key, list(values))  # type: ignore[call-arg,misc]  # pyiceberg: in __new__
            rows = current.read(lake_table, [key, tenant_column], match)
            if rows.num_rows:
                found.update(zip(rows[key].to_pylist(), rows[tenant_column].to_pylist(), strict=True))
        log_ = self.commit_log(source)
        latest = log_.latest()
        head = latest.heads.get(lake_table) if latest is not None else None
        if head is None:
            return found
        wanted = pa.array(list(values))
        newest: dict[Any, int] = {}
        for record in log_.walk_table(lake_table, head, current.applied_seq(table)):
            for ref in record.tables[lake_table].files:
                if not ref.rows:
                    continue
                part = self.storage.read_parquet(ref.path, [key, tenant_column, "_seq"])
                part = part.filter(pc.is_in(part[key], value_set=wanted.cast(part.schema.field(key).type)))
                for k, t, seq in zip(
                    *(part[c].to_pylist() for c in (key, tenant_column, "_seq")), strict=True
                ):
                    if t is not None and seq > newest.get(k, -1):  # a key-only delete keeps the tenant
                        found[k], newest[k] = str(t), seq
        return found

    def tenants(self, source: str, lake_table: str) -> list[str]:
        """The tenants with a prefix in `lake_table`'s change log (``<tag_key>=<id>/``)."""
        if self.tenancy is None:
            return []
        prefix = f"{changelog_prefix(source, lake_table)}/{self.tenancy.tag_key}="
        root = changelog_prefix(source, lake_table)
        return sorted(
            {
                e.path[len(prefix) :].split("/", 1)[0]
                for e in self.storage.list_files(root)
                if e.path.startswith(prefix)
            }
        )

    def lease(self, source: str, what: str) -> Lease:
        """The source's lease, for this process (not yet taken: see `Lease.acquire`)."""
        return Lease(self.storage, source, what=what, ttl=self.config.lease_ttl_seconds)

    def commit_log(self, source: str) -> CommitLog:
        """The source's commit records, read-only: what readers and checks use."""
        return CommitLog(self.storage, source)

    def current(self, source: str) -> CurrentState:
        """The source's current-state tables, with the lake's snapshot retention."""
        return CurrentState(
            self.storage,
            self.catalog,
            source,
            retention=self.config.retention,
            large_tables=self._large_tables(),
        )

    def _large_tables(self) -> LargeTableMerger | None:
        """The Spark merger when `spark_merge_min_rows` is set (one per lake: one JVM per process)."""
        if self.config.spark_merge_min_rows is None:
            return None
        if self._spark_merger is None:
            from connectors.lake.spark.merger import SparkMerger

            if not self.config.spark_jars_dir:
                raise ValueError("lake.spark_merge_min_rows is set but lake.spark_jars_dir is not")
            self._spark_merger = SparkMerger(
                self, self.config.spark_merge_min_rows, self.config.spark_jars_dir, self.config.spark_master
            )
        return self._spark_merger

    def changelog_tables(self, source: str) -> list[str]:
        """Lake table names with a change log for `source`."""
        prefix = f"changelog/{source}/"
        names = {e.path[len(prefix) :].split("/", 1)[0] for e in self.storage.list_files(prefix)}
        return sorted(names)

    def changelog_schemas(self, source: str) -> dict[TableId, pa.Schema]:
        """Per table, the schema of its newest committed change-log file (metadata included).

        Sources that infer their schema from the data (DynamoDB) adopt these on start, so a
        restarted pipeline types every attribute exactly as the lake already does.
        """
        log = self.commit_log(source)
        latest = log.latest()
        if latest is None:
            return {}
        schemas: dict[TableId, pa.Schema] = {}
        for lake_table, head in latest.heads.items():
            record = latest if head == latest.seq else log.read(head)
            commit = record.tables[lake_table]
            if commit.files:
                schemas[commit.table.table_id(source)] = self._file_schema(commit.files[-1])
        return schemas

    def _file_schema(self, ref: FileRef) -> pa.Schema:
        """A committed file's schema, also while its commit is not rolled forward yet (a writer
        sharing the log may have died between its commit and the move; the next one moves it)."""
        try:
            return self.storage.read_parquet_schema(ref.path)
        except OSError:  # not found (pyarrow's S3 reports it as a plain OSError)
            try:
                return self.storage.read_parquet_schema(ref.staged)
            except OSError:  # moved meanwhile
                return self.storage.read_parquet_schema(ref.path)

    def changelog_files(self, source: str, lake_table: str) -> list[str]:
        """A table's committed change-log files, sorted by path (tenant for a tenant-owned table,
        then commit day, then seq; relative to the lake root)."""
        return sorted(e.path for e in self.storage.list_files(changelog_prefix(source, lake_table)))

    def read_changelog(self, source: str, lake_table: str, columns: list[str] | None = None) -> pa.Table:
        """Every committed change of a table, in commit order (column sets unified by name).

        With `columns`, only those columns are read (they must exist in every file).
        """
        files = self.changelog_files(source, lake_table)
        if not files:
            return pa.table({})
        tables = [self.storage.read_parquet(f, columns) for f in files]
        table = pa.concat_tables(tables, promote_options="permissive")
        return table.sort_by("_seq") if "_seq" in table.column_names else table
