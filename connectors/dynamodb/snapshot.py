"""Initial snapshots of DynamoDB tables, handed over to the stream with no gap and no duplicate.

A Scan is not a point-in-time read: items are read over minutes while writes go on. So the
snapshot is made exact against the stream ("overlay"):
1. note the time t0, then read the base items — a parallel Scan (segments), or an
   ExportTableToPointInTime export, which is consistent at its export time t0 — staged to local
   Parquet files so memory stays bounded;
2. read every shard of the table's stream from its start to its tip (after a short settle pause),
   remembering for each item key only its latest record — and only records younger than
   t0 minus a clock margin, since older changes are already in the base items;
3. emit the base items without the keys the stream touched, then the latest image of each touched
   key that still exists. The result is the table exactly as of the stream position p1 the overlay
   read reached, and the stream resumes after p1.
Every change before p1 is in the snapshot once, every change after p1 comes from the stream once.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.dynamodb.client import AwsClients
from connectors.dynamodb.config import DynamoDBSourceConfig
from connectors.dynamodb.decode import decode_items, epoch_seconds
from connectors.dynamodb.layout import TableLayout
from connectors.dynamodb.offset import StreamPositions, StreamTip
from connectors.dynamodb.reader import StreamReader
from connectors.events import Batch, QuarantinedRow, TableChanges, TableId, TableSchema
from connectors.source import SourceError

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 10.0
ItemKey = tuple[Any, ...]


def item_key(key_names: Sequence[str], keys: Mapping[str, Mapping[str, Any]]) -> ItemKey:
    """A hashable key of an item from its wire-form key attributes (numbers compared by value)."""
    out: list[Any] = []
    for name in key_names:
        value = keys[name]
        if "S" in value:
            out.append(value["S"])
        elif "N" in value:
            out.append(Decimal(value["N"]))
        else:
            raw = value["B"]
            out.append(base64.b64decode(raw) if isinstance(raw, str) else bytes(raw))
    return tuple(out)


class SnapshotTaker:
    """Takes the snapshot of some tables of one source (see the module docstring)."""

    def __init__(
        self,
        config: DynamoDBSourceConfig,
        clients: AwsClients,
        table_ids: Mapping[str, TableId],
        layouts: Mapping[str, TableLayout],
        stream_arns: Mapping[str, str],
    ) -> None:
        self.config = config
        self.clients = clients
        self.table_ids = table_ids
        self.layouts = layouts
        self.stream_arns = stream_arns

    def batches(self, tables: Sequence[str], stream_offset: StreamPositions | None) -> Iterator[Batch]:
        """The snapshot as batches. Initial (`stream_offset` None): the final batch ends at p1.
        Backfill: every batch starts and ends at `stream_offset` and the floors carry p1."""
        started = dt.datetime.now(dt.UTC)
        with tempfile.TemporaryDirectory(prefix="lakehouse-ddb-snapshot-") as tmp:
            staged: dict[str, list[tuple[TableSchema, Path]]] = {}
            quarantined: list[QuarantinedRow] = []
            since: dict[str, dt.datetime] = {}
            for name in tables:
                base_time, items = self._base_items(name, started)
                since[name] = base_time - dt.timedelta(seconds=self.config.clock_margin_seconds)
                staged[name] = self._stage(name, items, Path(tmp), base_time, quarantined)
            time.sleep(self.config.settle_seconds)
            overlay, p1 = self._overlay(tables, since)
            keep_at = stream_offset  # a backfill does not move the stream
            position = StreamTip(started).serialize()
            for name in tables:
                table = self.table_ids[name]
                touched = overlay.get(name, {})
                emitted = False
                for schema, path in staged[name]:
                    data = pq.read_table(path)
                    if touched:
                        data = data.filter(pa.array(self._untouched_mask(data, schema.key, touched)))
                    yield Batch(keep_at, None, (TableChanges(schema, data),), complete=False)
                    emitted = True
                images = [r["dynamodb"]["NewImage"] for r in touched.values() if r["eventName"] != "REMOVE"]
                if images or not emitted:
                    decoded = decode_items(self.layouts[name], images, position, started)
                    quarantined.extend(decoded.quarantined)
                    changes = decoded.changes or TableChanges(
                        self.layouts[name].schema(),
                        self.layouts[name].schema().arrow_schema().empty_table(),
                    )
                    yield Batch(keep_at, None, (changes,), complete=False)
                log.info(
                    "%s: snapshot of %s: %d keys corrected from the stream during the scan",
                    self.config.name, table, len(touched),
                )  # fmt: skip
            snapshot_tables = frozenset(self.table_ids[n] for n in tables)
            floors = {self.table_ids[n]: StreamPositions({n: p1.shards(n)}) for n in tables}
            end = keep_at if keep_at is not None else p1
            yield Batch(
                keep_at, end, (), complete=True, snapshot=snapshot_tables, floors=floors,
                quarantined=tuple(quarantined), source_lag_seconds=0.0,
            )  # fmt: skip

    # --- base items -------------------------------------------------------------------------------
    def _base_items(self, name: str, started: dt.datetime) -> tuple[dt.datetime, Iterable[dict[str, Any]]]:
        export = self.config.exports.get(name)
        if export is None:
            return started, self._scan(name)
        export_time, files = self._export_files(name, export)
        oldest = dt.datetime.now(dt.UTC) - dt.timedelta(hours=self.config.retention_hours)
        if export_time - dt.timedelta(seconds=self.config.clock_margin_seconds) < oldest:
            raise SourceError(
                f"source {self.config.name}: the export of {name} at {export} was taken at {export_time.isoformat()}, "
                f"older than the stream's {self.config.retention_hours:g} h retention, so the changes since cannot be "
                "read; take a new export (or remove it from `exports` to Scan instead)"
            )
        return export_time, self._export_items(export, files)

    def _scan(self, name: str) -> Iterator[dict[str, Any]]:
        """Every item of the table by a parallel Scan (strongly consistent pages)."""
        segments = self.config.scan_segments
        out: queue.Queue[list[dict[str, Any]] | BaseException | None] = queue.Queue(maxsize=segments * 4)
        stop = threading.Event()

        def segment(number: int) -> None:
            try:
                kwargs: dict[str, Any] = {"TableName": name, "ConsistentRead": True}
                if segments > 1:
                    kwargs |= {"Segment": number, "TotalSegments": segments}
                while not stop.is_set():
                    items, last = self.clients.scan_page(**kwargs)
                    out.put(items)
                    if last is None:
                        break
                    kwargs["ExclusiveStartKey"] = last
            except BaseException as exc:  # handed to the consumer, which re-raises it
                out.put(exc)
            finally:
                out.put(None)

        with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="ddb-scan") as pool:
            for n in range(segments):
                pool.submit(segment, n)
            running, seen, next_report = segments, 0, time.monotonic() + PROGRESS_SECONDS
            try:
                while running:
                    got = out.get()
                    if got is None:
                        running -= 1
                    elif isinstance(got, BaseException):
                        raise SourceError(
                            f"source {self.config.name}: scanning {name} failed: {got}"
                        ) from got
                    else:
                        seen += len(got)
                        yield from got
                        if time.monotonic() >= next_report:
                            log.info("%s: scanning %s: %d items so far", self.config.name, name, seen)
                            next_report = time.monotonic() + PROGRESS_SECONDS
            finally:
                stop.set()
                while running:  # unblock segments waiting on a full queue
                    if out.get() is None:
                        running -= 1
        log.info("%s: scanned %s: %d items", self.config.name, name, seen)

    def _export_files(self, name: str, uri: str) -> tuple[dt.datetime, list[str]]:
        """The export's time and data files, from its manifest-summary.json and manifest-files.json."""
        try:
            summary = json.loads(self._read(uri, "manifest-summary.json"))
            export_time = dt.datetime.fromisoformat(summary["exportTime"].replace("Z", "+00:00"))
            if summary.get("exportFormat", "DYNAMODB_JSON") != "DYNAMODB_JSON":
                raise ValueError(f"exportFormat {summary['exportFormat']!r} (only DYNAMODB_JSON is read)")
            lines = self._read(uri, "manifest-files.json").decode().splitlines()
            files = [json.loads(line)["dataFileS3Key"] for line in lines if line.strip()]
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise SourceError(
                f"source {self.config.name}: {uri} is not a readable DynamoDB export of {name}: {exc}"
            ) from None
        return export_time, files

    def _read(self, uri: str, relative: str) -> bytes:
        """A file of an export: `relative` to the export folder, or a bucket-relative data key."""
        if uri.startswith("s3://"):
            bucket, _, prefix = uri[5:].partition("/")
            key = relative if "/" in relative else f"{prefix.rstrip('/')}/{relative}"
            body: bytes = self.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body
        folder = Path(uri.removeprefix("file://"))
        if "/" in relative:
            # A data key is relative to the bucket root ("<prefix>/AWSDynamoDB/<id>/data/..."); a local
            # copy may sit anywhere, so resolve the part from AWSDynamoDB/ on next to that folder.
            root = next((p.parent for p in [folder, *folder.parents] if p.name == "AWSDynamoDB"), folder)
            _, marker, rest = relative.partition("AWSDynamoDB/")
            return (root / (marker + rest if marker else relative)).read_bytes()
        return (folder / relative).read_bytes()

    def _export_items(self, uri: str, files: list[str]) -> Iterator[dict[str, Any]]:
        """The items of an export's data files (gzip JSON lines of ``{"Item": {...}}``)."""
        for key in files:
            raw = self._read(uri, key)
            data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
            for line in data.splitlines():
                if line.strip():
                    yield json.loads(line)["Item"]

    # --- staging ----------------------------------------------------------------------------------
    def _stage(
        self,
        name: str,
        items: Iterable[dict[str, Any]],
        tmp: Path,
        base_time: dt.datetime,
        quarantined: list[QuarantinedRow],
    ) -> list[tuple[TableSchema, Path]]:
        staged: list[tuple[TableSchema, Path]] = []
        position = StreamTip(base_time).serialize()
        chunk: list[dict[str, Any]] = []

        def flush() -> None:
            decoded = decode_items(self.layouts[name], chunk, position, base_time)
            quarantined.extend(decoded.quarantined)
            if decoded.changes is not None and decoded.changes.num_rows:
                path = tmp / f"{name}-{len(staged):05d}.parquet"
                pq.write_table(decoded.changes.data, path)
                staged.append((decoded.changes.schema, path))
            chunk.clear()

        for item in items:
            chunk.append(item)
            if len(chunk) >= self.config.chunk_rows:
                flush()
        if chunk:
            flush()
        return staged

    # --- overlay ----------------------------------------------------------------------------------
    def _overlay(
        self, tables: Sequence[str], since: Mapping[str, dt.datetime]
    ) -> tuple[dict[str, dict[ItemKey, dict[str, Any]]], StreamPositions]:
        """Per table and key, the latest stream record younger than `since`; and the position p1."""
        reader = StreamReader(
            self.clients, self.config, {n: self.stream_arns[n] for n in tables}, StreamPositions.empty(tables)
        )
        overlay: dict[str, dict[ItemKey, dict[str, Any]]] = {n: {} for n in tables}
        keys = {n: self.layouts[n].key_names for n in tables}
        horizon = {n: since[n].timestamp() for n in tables}
        read = 0
        for page in reader.pages(until=dt.datetime.now(dt.UTC)):
            touched, cut, names = overlay[page.table], horizon[page.table], keys[page.table]
            for record in page.records:
                body = record["dynamodb"]
                if epoch_seconds(body["ApproximateCreationDateTime"]) >= cut:
                    touched[item_key(names, body["Keys"])] = record
            read += len(page.records)
        log.info("%s: read %d stream records to hand the snapshot over", self.config.name, read)
        return overlay, reader.offset()

    @staticmethod
    def _untouched_mask(data: pa.Table, key: Sequence[str], touched: Mapping[ItemKey, Any]) -> list[bool]:
        columns = [data.column(k).to_pylist() for k in key]
        return [tuple(values) not in touched for values in zip(*columns, strict=True)]
