"""`DynamoDBSource`: the `Source` protocol over DynamoDB tables and their streams."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from connectors.dynamodb.client import AwsClients, error_code
from connectors.dynamodb.config import DynamoDBSourceConfig
from connectors.dynamodb.decode import Decoded, decode_records, epoch_seconds
from connectors.dynamodb.layout import KeyAttribute, TableLayout
from connectors.dynamodb.offset import StreamPositions, StreamTip
from connectors.dynamodb.reader import ReaderStats, StreamReader
from connectors.dynamodb.snapshot import SnapshotTaker
from connectors.events import Batch, QuarantinedRow, TableChanges, TableId
from connectors.offsets import Offset
from connectors.source import PreflightError, SourceError

log = logging.getLogger(__name__)

SCHEMA = "dynamodb"  # the TableId schema of every DynamoDB table (lake names dynamodb__<table>)


def _positions(offset: Offset) -> StreamPositions:
    if not isinstance(offset, StreamPositions):
        raise TypeError(f"a DynamoDB source needs a StreamPositions offset, got {offset!r}")
    return offset


class DynamoDBSource:
    """Change data capture from DynamoDB tables through DynamoDB Streams (NEW_AND_OLD_IMAGES).

    * `snapshot()` reads the tables (Scan or export) and hands over to the streams exactly
      (`connectors.dynamodb.snapshot`); `backfill()` does the same for some tables while the
      stream position of the source stays put.
    * `stream()` reads every shard in lineage order (`connectors.dynamodb.reader`) and decodes
      the records into typed columns (`connectors.dynamodb.decode`).
    * The lake's commit is the only record of the position: DynamoDB Streams has no consumer
      acknowledgement, so `acknowledge` has nothing to tell the service.

    Item schemas are inferred; `adopt_lake_schemas` gives the decoder the lake's column types so
    a restarted pipeline types every attribute as before.
    """

    def __init__(self, config: DynamoDBSourceConfig) -> None:
        self.config = config
        self.name = config.name
        self.clients = AwsClients(config)
        self._table_ids = {t: TableId(self.name, SCHEMA, t) for t in config.tables}
        self._keys: dict[str, tuple[KeyAttribute, ...]] = {}
        self._stream_arns: dict[str, str] = {}
        self._layouts: dict[str, TableLayout] = {}
        self._known: dict[str, pa.Schema] = {}
        self.reader_stats = ReaderStats()
        self.skipped_by_floor: dict[str, int] = {}  # records already in the lake through a snapshot
        self.drift: list[Any] = []

    def __enter__(self) -> DynamoDBSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DynamoDBSource({self.name!r}, {list(self.config.tables)}, region={self.config.aws.region})"

    # --- Source protocol -----------------------------------------------------------------------
    def preflight(self) -> None:
        """Each table exists and has a stream with NEW_AND_OLD_IMAGES; learn keys and stream ARNs."""
        problems = []
        for table in self.config.tables:
            try:
                description = self.clients.dynamodb.describe_table(TableName=table)["Table"]
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    problems.append(f"table {table} does not exist in {self.config.aws.region}")
                    continue
                raise SourceError(f"source {self.name}: cannot describe table {table}: {exc}") from None
            spec = description.get("StreamSpecification") or {}
            view = spec.get("StreamViewType")
            if not spec.get("StreamEnabled") or not description.get("LatestStreamArn"):
                problems.append(
                    f"table {table} has no stream; enable one: aws dynamodb update-table --table-name {table} "
                    "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
                )
                continue
            if view != "NEW_AND_OLD_IMAGES":
                problems.append(
                    f"the stream of table {table} has StreamViewType {view}; the lake needs NEW_AND_OLD_IMAGES "
                    "(deletes carry the old image, updates the new one). A stream's view type cannot be changed: "
                    "disable the stream, enable it with NEW_AND_OLD_IMAGES, then `lakehouse resnapshot`"
                )
                continue
            types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
            ordered = sorted(description["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
            self._keys[table] = tuple(
                KeyAttribute(k["AttributeName"], types[k["AttributeName"]]) for k in ordered
            )
            self._stream_arns[table] = description["LatestStreamArn"]
        if problems:
            raise PreflightError(f"source {self.name}:\n  " + "\n  ".join(problems))

    def attach(self, stream_arns: Mapping[str, str], keys: Mapping[str, Sequence[KeyAttribute]]) -> None:
        """Read these streams with these key schemas without asking DynamoDB (no preflight).

        For streams served by something other than the tables' own service: the fake stream
        service of the tests and benchmarks, which has no DynamoDB control plane.
        """
        unknown = sorted(set(stream_arns) - set(self._table_ids))
        if unknown:
            raise SourceError(f"source {self.name}: tables {unknown} are not captured")
        self._stream_arns = dict(stream_arns)
        self._keys = {t: tuple(k) for t, k in keys.items()}

    def clone(self) -> DynamoDBSource:
        """A second instance reading the same streams (for a backfill staged beside the stream)."""
        twin = DynamoDBSource(self.config)
        if self._stream_arns:
            twin.attach(self._stream_arns, self._keys)
        return twin

    @property
    def stream_arns(self) -> Mapping[str, str]:
        """Table name -> the ARN of its stream (known after `preflight`)."""
        return dict(self._stream_arns)

    def tables(self) -> Sequence[TableId]:
        return list(self._table_ids.values())

    def adopt_lake_schemas(self, schemas: Mapping[TableId, pa.Schema]) -> None:
        """Type attributes as the lake already does (call before snapshot/stream)."""
        self._known = {t.name: s for t, s in schemas.items() if t.name in self._table_ids}
        self._layouts.clear()

    def current_position(self) -> StreamTip:
        """Now: a bounded run reads every shard to its tip as seen after this moment."""
        return StreamTip(dt.datetime.now(dt.UTC))

    def snapshot(self, tables: Sequence[TableId] | None = None) -> Iterator[Batch]:
        """Initial snapshot of `tables` (all by default), ending at the streams' position p1."""
        self._ready()
        names = [t.name for t in tables] if tables is not None else list(self.config.tables)
        if set(names) != set(self.config.tables):
            # The initial snapshot's end offset is the whole source's position: every table's.
            raise SourceError(
                f"source {self.name}: an initial snapshot covers every table; use backfill for some"
            )
        yield from self._taker().batches(names, None)

    def backfill(self, tables: Sequence[TableId], stream_offset: Offset) -> Iterator[Batch]:
        """Re-snapshot `tables` while the stream goes on; floors carry each table's hand-over point."""
        self._ready()
        yield from self._taker().batches([t.name for t in tables], _positions(stream_offset))

    def stream(
        self,
        since: Offset,
        floors: Mapping[TableId, Offset],
        until: Offset | None = None,
        *,
        choose: Callable[[str, Sequence[str]], Collection[str]] | None = None,
        committed: Callable[[], StreamPositions] | None = None,
    ) -> Iterator[Batch]:
        """Records after `since`, skipping those at or below a table's floor; see the module docs.

        A shard worker (`pipelines.capture.shard_worker`) reads the shards `choose` picks, and
        takes each up from the lake's newest position `committed()`: a batch then starts, for
        such a shard, where the lake had it (`StreamReader.take_adopted`). Default: all shards."""
        self._ready()
        start = _positions(since)
        until_at = until.at if isinstance(until, StreamTip) else None
        floor = {t.name: _positions(f) for t, f in floors.items() if t.name in self._table_ids}
        reader = StreamReader(self.clients, self.config, self._stream_arns, start, choose, committed)
        self.reader_stats = reader.stats
        pending: dict[str, list[TableChanges]] = {}
        quarantined: list[QuarantinedRow] = []
        rows = 0
        batch_start: StreamPositions = start
        cut_at = time.monotonic() + self.config.batch_max_seconds
        newest = 0.0

        def cut() -> Batch:
            nonlocal pending, quarantined, rows, batch_start, cut_at
            end = reader.offset()
            lag = max(0.0, time.time() - newest) if rows and newest else 0.0
            changes = tuple(c for parts in pending.values() for c in _concat_same_schema(parts))
            adopted = reader.take_adopted()
            if adopted:
                batch_start = batch_start.with_shards(adopted)
            batch = Batch(batch_start, end, changes, quarantined=tuple(quarantined), source_lag_seconds=lag)
            pending, quarantined, rows, batch_start = {}, [], 0, end
            cut_at = time.monotonic() + self.config.batch_max_seconds
            return batch

        for page in reader.pages(until=until_at):
            if page.records:
                table_floor = floor.get(page.table)
                records = page.records
                if table_floor is not None:
                    records = [
                        r for r in records
                        if not table_floor.covers(page.table, page.shard, int(r["dynamodb"]["SequenceNumber"]))
                    ]  # fmt: skip
                    skipped = len(page.records) - len(records)
                    if skipped:
                        self.skipped_by_floor[page.table] = self.skipped_by_floor.get(page.table, 0) + skipped
                if records:
                    # Decoded page by page: columns take a fraction of the memory of the parsed JSON.
                    decoded = self._decode(page.table, records)
                    if decoded.changes is not None:
                        pending.setdefault(page.table, []).append(decoded.changes)
                    quarantined.extend(decoded.quarantined)
                    rows += len(records)
                    newest = epoch_seconds(records[-1]["dynamodb"]["ApproximateCreationDateTime"])
            # Cut at page boundaries: every page ends on a whole record, and a batch may end
            # anywhere (DynamoDB Streams shows no transactions). An idle cut (nothing read, the
            # position unchanged) is a no-op for the lake but lets the caller stop between batches.
            if rows >= self.config.batch_max_rows or time.monotonic() >= cut_at:
                yield cut()
        yield cut()

    def acknowledge(self, offset: Offset) -> None:
        """Nothing to tell the service: the lake's commit is the stream position (see class docs)."""
        _positions(offset)

    def count_rows(self, table: TableId) -> int:
        """Items in the table now, by a Scan with Select=COUNT (exact, unlike DescribeTable's count)."""
        return self.clients.count_items(table.name)

    def close(self) -> None:
        self.clients.close()

    # --- helpers -------------------------------------------------------------------------------
    def _ready(self) -> None:
        if not self._stream_arns:
            self.preflight()
        for table in self.config.tables:
            if table not in self._layouts:
                self._layouts[table] = TableLayout(
                    self._table_ids[table], self._keys[table], self._known.get(table)
                )

    def _taker(self) -> SnapshotTaker:
        return SnapshotTaker(self.config, self.clients, self._table_ids, self._layouts, self._stream_arns)

    def _decode(self, table: str, records: list[dict[str, Any]]) -> Decoded:
        layout = self._layouts[table]
        decoded = decode_records(layout, records)
        for drift in layout.take_drift():
            log.warning("%s: table %s: %s", self.name, table, drift)
            self.drift.append(drift)
        return decoded


def _concat_same_schema(parts: list[TableChanges]) -> list[TableChanges]:
    """Runs of one table's changes under one schema as one TableChanges each (one file, not many)."""
    out: list[TableChanges] = []
    run: list[TableChanges] = []
    for part in parts:
        if run and part.schema != run[0].schema:
            out.append(_concat(run))
            run = []
        run.append(part)
    if run:
        out.append(_concat(run))
    return out


def _concat(run: list[TableChanges]) -> TableChanges:
    if len(run) == 1:
        return run[0]
    return TableChanges(run[0].schema, pa.concat_tables([p.data for p in run]))
