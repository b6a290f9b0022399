"""Incremental indexing of the 360° people documents from the lake into OpenSearch.

Each run finds the patients whose inputs changed since the last run — from the change-log
commits between the checkpoint and what is merged into current state now — rebuilds their
documents from current state and writes them with external versions. Deleted patients become
deletes. Documents OpenSearch refuses for good go to a dead-letter table in the lake with the
reason. The checkpoint (applied commit seq and source clock per input table) is written only after
every write of the run succeeded, so a crash re-indexes at most one run's patients, which the external versions
make harmless.

With a tenant key, each tenant of the documents gets a filtered alias of its own
(connectors/opensearch/tenant_aliases.py), kept in step after every run that wrote documents and
moved with the main alias in the same atomic call.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from connectors.lake.lake import Lake
from connectors.opensearch.bulk import BulkIndexer, BulkResult, Document, Failure
from connectors.opensearch.indices import IndexManager, load_template
from connectors.opensearch.tenant_aliases import TenantAliasChange, TenantAliases
from pipelines.search.docs import PeopleDocuments, PeopleSources
from pipelines.search.versions import SECOND, VERSION_SCHEME, TableClock, version_of

log = logging.getLogger(__name__)

BUILD_CHUNK = 2_500  # patients per document build and bulk call
SENDERS = 2  # bulk requests in flight (documents of one patient are in one chunk: order is kept)
# A run fails when more documents than this were refused as stale (`IndexReport.stale_problem`).
STALE_MIN = 10
STALE_SHARE = 0.1
DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("index", pa.string()),
        pa.field("doc_id", pa.string()),
        pa.field("version", pa.int64()),
        pa.field("status", pa.int32()),
        pa.field("reason", pa.string()),
        pa.field("document", pa.string()),
        pa.field("failed_at", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last run's position: applied seq per input table (which changes are new) and, written
    by this version scheme, each table's clock (versions never step back; `search_versions.advance`)."""

    seqs: dict[str, int]
    clocks: dict[str, TableClock]


@dataclass
class IndexReport:
    """What one indexing run did (CLI output and Dagster metadata); `stale_problem` says when the
    run must count as failed."""

    alias: str
    index: str = ""
    full: bool = False
    patients: int = 0
    version: int = 0
    tables: int = 0  # input tables the version sums the clocks of
    rewrote_scheme: bool = False  # every document written again: the index had older-scheme versions
    result: BulkResult = field(default_factory=BulkResult)
    dead_letter_file: str | None = None
    tenant_aliases: TenantAliasChange | None = None  # None: no tenant key, or nothing written
    seconds: float = 0.0

    def stale_problem(self) -> str | None:
        """Why this run failed if too many documents were refused as stale, else None.

        A document is stale when the index holds a newer version of it. Versions come from source
        time (`pipelines/search/versions.py`), so a rebuilt or new lake writes over the index as it
        should; racing runs refuse a few. Most or all of them refused means the index holds newer
        source state than this lake: a lake restored from an older copy that has not caught up yet
        (it does, as capture goes on), or another lake writing to the same alias. Either way
        nothing of this run reached the index, and the run must not pass as done.
        """
        stale = self.result.stale
        if stale <= max(STALE_MIN, STALE_SHARE * self.patients):
            return None
        return (
            f"{stale} of {self.patients} documents were refused as stale: the index behind {self.alias!r} "
            f"holds newer source state than this lake (version {self.version}, {_clock_text(self.version, self.tables)}). "
            "Was the lake restored from an older copy (its documents are indexed again once capture has caught "
            "up with the source), or does another lake write to this alias? To show this lake's older state "
            "anyway, run `lakehouse index --recreate`"
        )


class PeopleIndexer:
    """Keeps the people alias in step with the lake."""

    def __init__(
        self,
        lake: Lake,
        client: object,
        *,
        alias: str = "people",
        sources: PeopleSources | None = None,
        synonyms_path: str,
        bulk_max_bytes: int = 5 * 1024 * 1024,
        tenant_key: str | None = None,
    ) -> None:
        self.lake = lake
        self.client = client
        self.alias = alias
        self.documents = PeopleDocuments(lake, sources or PeopleSources())
        self.synonyms_path = synonyms_path
        self.bulk_max_bytes = bulk_max_bytes
        self._checkpoint_path = f"search/{alias}/_checkpoint.json"
        # `tenant_key`: the tenancy tag key that names the tenant aliases (None: none are kept).
        self.tenants = TenantAliases(client, alias, tenant_key) if tenant_key else None  # type: ignore[arg-type]
        self._tenants_synced = False

    def run(self, *, full: bool = False, recreate: bool = False) -> IndexReport:
        """Index the documents changed since the last run (all with `full`); `recreate` first
        deletes the indices behind the alias, to show this lake's state even where it is older."""
        started = time.monotonic()
        manager = IndexManager(self.client, self.alias, load_template("people"), self.synonyms_path)  # type: ignore[arg-type]
        if recreate:
            manager.drop_current()
            full = True
        report = IndexReport(self.alias, index=manager.ensure(self._follow_tenants))
        # An index whose documents were not all written with this version scheme (one made before
        # it, or just created) gets every document again: source-clock versions are far above the
        # old commit-seq sums, so each write replaces the old-scheme document.
        report.rewrote_scheme = manager.meta().get("version_scheme") != VERSION_SCHEME
        seqs = self.documents.state_seqs()
        previous = self.checkpoint()
        clocks = self.documents.clocks.clocks(seqs, previous.clocks if previous else None)
        version = version_of(clocks)
        report.full = full or report.rewrote_scheme or previous is None
        report.version, report.tables = version, sum(1 for c in clocks.values() if c.clock)
        if report.rewrote_scheme:
            log.info(
                "%s: index %s has no %s versions yet; writing every document",
                self.alias,
                report.index,
                VERSION_SCHEME,
            )
        bulk = BulkIndexer(self.client, self.alias, max_bytes=self.bulk_max_bytes)  # type: ignore[arg-type]
        if report.full or previous is None:  # every document: each input table is read once
            chunks: Iterable[list[Document]] = self.documents.build_all(version, BUILD_CHUNK)
        else:
            ids = self.changed_patients(previous.seqs, seqs)
            chunks = (self.documents.build(c, version) for c in _chunks(sorted(ids), BUILD_CHUNK))
        # Chunks are sent while the next ones are built, SENDERS requests at a time: OpenSearch
        # indexes on its own threads while we assemble documents. At most SENDERS + 1 chunks are held.
        with ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="bulk") as sender:
            pending: collections.deque[Future[BulkResult]] = collections.deque()
            for docs in chunks:
                report.patients += len(docs)
                if len(pending) >= SENDERS:
                    report.result.add(pending.popleft().result())
                pending.append(sender.submit(bulk.write, docs))
            while pending:
                report.result.add(pending.popleft().result())
        if report.result.failures:
            report.dead_letter_file = self._dead_letter(report.result.failures)
        # Before the checkpoint: a run that fails here is repeated, aliases included. After the
        # first run of this indexer, only a run that wrote documents can change the tenants.
        if self.tenants is not None and (report.patients or not self._tenants_synced):
            report.tenant_aliases = self.tenants.sync(report.index)
            self._tenants_synced = True
        self._write_checkpoint(clocks)
        if report.rewrote_scheme and report.stale_problem() is None:
            manager.update_meta(version_scheme=VERSION_SCHEME)
        report.seconds = time.monotonic() - started
        r = report.result
        # DEBUG: the CLI prints the report (only when something changed, with --follow) and Dagster
        # records it as metadata; an INFO line here would repeat it, every second when following.
        log.debug(
            "%s: %d patients -> %d indexed, %d deleted, %d stale, %d dead-lettered (version %d, %.1f s)",
            self.alias, report.patients, r.indexed, r.deleted, r.stale, len(r.failures), version, report.seconds,
        )  # fmt: skip
        return report

    def _follow_tenants(self, index: str) -> list[dict[str, Any]]:
        """The tenant aliases' part of the main alias's switch to `index` (`IndexManager.ensure`)."""
        return [] if self.tenants is None else self.tenants.actions(index)[0]

    def checkpoint(self) -> Checkpoint | None:
        """What the last run indexed: each input table's applied seq and source clock."""
        try:
            raw = json.loads(self.lake.storage.read_bytes(self._checkpoint_path))
        except (FileNotFoundError, OSError):
            return None
        if raw.get("scheme") != VERSION_SCHEME:  # before source clocks: {"<table>": seq}
            return Checkpoint({k: int(v) for k, v in raw.items()}, {})
        tables = raw["tables"]
        return Checkpoint(
            {k: int(v["seq"]) for k, v in tables.items()},
            {k: TableClock(int(v["seq"]), int(v["clock"])) for k, v in tables.items()},
        )

    def _write_checkpoint(self, clocks: dict[str, TableClock]) -> None:
        tables = {k: {"seq": c.seq, "clock": c.clock} for k, c in clocks.items()}
        body = {"scheme": VERSION_SCHEME, "tables": tables}
        self.lake.storage.write_bytes(self._checkpoint_path, json.dumps(body, sort_keys=True).encode())

    def changed_patients(self, checkpoint: dict[str, int], seqs: dict[str, int]) -> set[int]:
        """Patients touched by the change-log commits merged since `checkpoint`."""
        ids: set[int] = set()
        plan_ids: set[int] = set()
        for name, applied in seqs.items():
            after = checkpoint.get(name, 0)
            if applied <= after:
                continue
            source, lake_table = name.split(".", 1)
            key = "plan_id" if lake_table.endswith("__fitness_plans") else "patient_id"
            for values in self._changed_keys(source, lake_table, key, after, applied):
                (plan_ids if key == "plan_id" else ids).update(values)
        if plan_ids:  # a plan's new name or description changes the documents of its members
            ids.update(self.documents.plan_members(plan_ids))
        return ids

    def _changed_keys(
        self, source: str, lake_table: str, key: str, after: int, head: int
    ) -> Iterator[list[int]]:
        log_ = self.lake.commit_log(source)
        for record in log_.walk_table(lake_table, head, after):
            for ref in record.tables[lake_table].files:
                rows = self.lake.storage.read_parquet(ref.path, [key])
                yield [int(v) for v in rows.column(key).to_pylist() if v is not None]

    def _dead_letter(self, failures: list[Failure]) -> str:
        now = dt.datetime.now(dt.UTC)
        table = pa.Table.from_pylist(
            [
                {
                    "index": self.alias,
                    "doc_id": f.doc_id,
                    "version": f.version,
                    "status": f.status,
                    "reason": f.reason,
                    "document": json.dumps(f.source, default=str, ensure_ascii=False)
                    if f.source is not None
                    else None,
                    "failed_at": now,
                }
                for f in failures
            ],
            schema=DEAD_LETTER_SCHEMA,
        )
        path = (
            f"deadletter/search/{self.alias}/failed_date={now.date().isoformat()}/{uuid.uuid4().hex}.parquet"
        )
        self.lake.storage.write_parquet(path, table)
        for f in failures[:5]:
            log.error("%s: document %s refused (%d): %s", self.alias, f.doc_id, f.status, f.reason)
        return path


def _clock_text(version: int, tables: int) -> str:
    """A version as the source time it stands for (the mean of its tables' clocks), for messages."""
    if not tables or version <= 0:
        return "no source time"
    mean = dt.datetime.fromtimestamp(version / tables / SECOND, dt.UTC)
    return f"source time about {mean:%Y-%m-%d %H:%M:%S} UTC"


def _chunks(values: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
