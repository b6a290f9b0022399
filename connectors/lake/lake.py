"""The lake as one object: storage, the Iceberg catalog, and per-source writers and state."""

from __future__ import annotations

import logging
from functools import cached_property

import pyarrow as pa
from pyiceberg.catalog import Catalog

from connectors.events import TableId
from connectors.lake.catalog import open_catalog
from connectors.lake.commits import CommitLog
from connectors.lake.config import LakeConfig
from connectors.lake.current import CurrentState, LargeTableMerger
from connectors.lake.lease import Lease
from connectors.lake.storage import Storage
from connectors.lake.writer import LakeWriter, changelog_prefix

log = logging.getLogger(__name__)


class Lake:
    """Entry point for everything that reads or writes the lake."""

    def __init__(self, config: LakeConfig) -> None:
        self.config = config
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
        return LakeWriter(self.storage, source, lease)

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
                schemas[commit.table.table_id(source)] = self.storage.read_parquet_schema(
                    commit.files[-1].path
                )
        return schemas

    def changelog_files(self, source: str, lake_table: str) -> list[str]:
        """A table's committed change-log files, sorted by path (commit day, then seq; relative to the lake root)."""
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
