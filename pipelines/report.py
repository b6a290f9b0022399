"""Plain-text reports for people: what a run did, and what the lake holds."""

from __future__ import annotations

import datetime as dt
import decimal
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow.compute as pc

from connectors.dynamodb.offset import StreamPositions, StreamTip
from connectors.lake.lake import Lake
from connectors.lake.usage_log import read_runs
from connectors.lake.usage_log import total as total_usage
from connectors.mysql.offset import MariaGtidPosition, MySQLGtidSet
from connectors.offsets import parse_offset
from connectors.postgres.offset import Lsn
from connectors.source import SourceError
from connectors.usage import Prices, estimate
from pipelines.capture.runner import SyncReport

if TYPE_CHECKING:
    from pipelines.config import LakehouseConfig

HEX_BYTES = 8  # bytes of a binary value shown before its length
TEXT_CHARS = 40  # a longer string is cut to this many characters in a sample
REPLAY_KIND = "ddb-replay"  # connectors.dynamodb.replay_source.KIND


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows as an aligned plain-text table under a header line; values as `format_value` shows them."""
    return _table(headers, [["" if c is None else format_value(c, max_chars=None) for c in r] for r in rows])


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells already formatted, aligned under a header line."""
    cells = [[str(h) for h in headers], *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_value(value: object, *, max_chars: int | None = TEXT_CHARS) -> str:
    """A value as an analyst reads it, never a Python repr.

    Times in ISO 8601 with their offset, numbers plain (a decimal never in exponent form), binary
    as a short hex prefix with its length, NULL as ``NULL``; text (and lists and maps, shown
    JSON-like) longer than `max_chars` is cut with an ellipsis (``None``: never cut).
    """
    if value is None:
        return "NULL"
    if isinstance(value, str):
        text = value.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    elif isinstance(value, bool):
        return "true" if value else "false"
    elif isinstance(value, decimal.Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    elif isinstance(value, int | float):
        return repr(value)
    elif isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    elif isinstance(value, dt.date | dt.time):
        return value.isoformat()
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        more = "…" if len(data) > HEX_BYTES else ""
        return f"0x{data[:HEX_BYTES].hex()}{more} ({len(data)} byte{'' if len(data) == 1 else 's'})"
    elif isinstance(value, Mapping):
        inner = ", ".join(f"{format_value(k, max_chars=None)}: {_nested(v)}" for k, v in value.items())
        text = "{" + inner + "}"
    elif isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        text = "[" + ", ".join(_nested(v) for v in items) + "]"
    else:
        text = str(value)
    if max_chars is not None and len(text) > max_chars:
        return text[: max(1, max_chars - 1)] + "…"
    return text


def _nested(value: object) -> str:
    """A value inside a list or map: strings quoted, so `["a, b"]` and `["a", "b"]` differ."""
    if isinstance(value, str):
        return '"' + format_value(value, max_chars=None) + '"'
    return format_value(value, max_chars=None)


def format_rows(records: Sequence[Mapping[str, object]], *, width: int | None = None) -> str:
    """Sample rows as a table, or one `column = value` block per row when a table would be wider
    than `width` characters (``None``: always a table).

    Columns whose names start with ``_`` (the lake's own bookkeeping) are left out.
    """
    if not records:
        return "(no rows)"
    columns = [c for c in records[0] if not c.startswith("_")]
    rows = [[format_value(r.get(c)) for c in columns] for r in records]
    table = _table(columns, rows)
    if width is None or max(len(line) for line in table.splitlines()) <= width:
        return table
    label = max(len(c) for c in columns)
    blocks = []
    for i, row in enumerate(rows, 1):
        lines = [f"-[ row {i} ]-"] + [f"{c.ljust(label)} = {v}" for c, v in zip(columns, row, strict=True)]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def short_position(text: str | None, table: str | None = None) -> str:
    """A source position as a person reads it: ``LSN 0/16B3748``, ``GTID 0-1-42``,
    ``GTID 3e11fa47:1-5678``, ``12 shards: 10 open, 2 finished`` (of one stream `table` only, if
    given); unknown forms shortened."""
    if not text:
        return "-"
    kind, _, value = text.partition(":")
    if kind == REPLAY_KIND:  # its parser lives with the replay source, a heavy import
        return "file " + format_value(value.rsplit("/", 1)[-1] or "(none yet)")
    try:
        offset = parse_offset(text)
    except ValueError:
        return format_value(text)
    if isinstance(offset, Lsn):
        return f"LSN {offset}"
    if isinstance(offset, MariaGtidPosition):
        gtids = [str(g) for g in offset.gtids]
        more = f" +{len(gtids) - 2} domains" if len(gtids) > 2 else ""
        return "GTID " + (",".join(gtids[:2]) + more if gtids else "(none yet)")
    if isinstance(offset, MySQLGtidSet):
        return _describe_gtid_set(offset)
    if isinstance(offset, StreamPositions):
        shards = [
            p for name, by_shard in offset.tables.items() if table in (None, name) for p in by_shard.values()
        ]
        done = sum(p.finished for p in shards)
        return f"{len(shards)} shard{'' if len(shards) == 1 else 's'}: {len(shards) - done} open, {done} finished"
    if isinstance(offset, StreamTip):
        return f"stream tip at {format_value(offset.at)}"
    return format_value(str(offset))


def _describe_gtid_set(gtids: MySQLGtidSet) -> str:
    """The server with the most transactions (the writer, usually) as ``GTID <uuid prefix>:first-last``."""
    if gtids.is_empty:
        return "GTID (none yet)"
    source, ranges = max(gtids.intervals, key=lambda item: sum(b - a + 1 for a, b in item[1]))
    uuid, _, tag = source.partition(":")
    first, last = ranges[0][0], ranges[-1][1]
    text = f"GTID {uuid[:8]}{':' + tag if tag else ''}:{first}{'' if first == last else f'-{last}'}"
    if len(ranges) > 1:
        text += f" ({len(ranges) - 1} gap{'' if len(ranges) == 2 else 's'})"
    others = len(gtids.intervals) - 1
    if others:
        text += f" +{others} server{'' if others == 1 else 's'}"
    return text


def print_reports(reports: Sequence[SyncReport]) -> None:
    rows = [
        (
            r.source,
            r.commits,
            r.rows,
            r.quarantined_rows,
            _short_list(sorted(set(r.snapshot_tables))),
            short_position(r.offset_after),
            f"{r.lag_seconds:.1f}" if r.lag_seconds is not None else "-",
            f"{r.seconds:.1f}",
            r.usage.only(service="s3").total() if r.usage is not None else "-",
            _kb(r.usage.only(service="s3").total("bytes_sent")) if r.usage is not None else "-",
            _kb(r.usage.source_bytes()) if r.usage is not None else "-",
        )
        for r in reports
    ]
    headers = ["source", "commits", "rows", "quarantined", "snapshot", "position", "lag s", "took s"]
    print(format_table([*headers, "S3 requests", "S3 kB sent", "source kB read"], rows))


def _kb(n: int) -> str:
    return f"{n / 1e3:.1f}"


def print_usage(lake: Lake, sources: Sequence[str], prices: Prices, days: float) -> None:
    """Per table, what the runs of the last `days` days used, and an estimated cost."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    rows: list[list[object]] = []
    runs_seen = 0
    for source in sources:
        runs = read_runs(lake.storage, source, since)
        runs_seen += len(runs)
        if not runs:
            continue
        used = total_usage(runs)
        for table in sorted({k[2] for k in used.requests} | {k[2] for k in used.bytes_sent}):
            part = used.of_table(table)
            s3, glue = part.only(service="s3"), part.only(service="glue")
            cost = sum(estimate(part, prices).values())
            rows.append(
                [table, len(runs), s3.total(), _kb(s3.total("bytes_sent")), _kb(s3.total("bytes_received")),
                 glue.total(), f"{cost:.6f}"]
            )  # fmt: skip
    if not rows:
        print(f"\nusage: {runs_seen} run(s) in the last {days:g} days, no AWS request (a local lake)")
        return
    print(f"\nusage of the last {days:g} days (est. USD from [costs]; pyarrow's ranged GETs not counted):")
    print(
        format_table(
            ["table", "runs", "S3 requests", "S3 kB sent", "S3 kB received", "Glue requests", "est. $"], rows
        )
    )


def _short_list(names: Sequence[str]) -> str:
    if not names:
        return "-"
    return ",".join(names) if len(names) <= 2 else f"{names[0]} +{len(names) - 1} more"


@dataclass(frozen=True)
class SourceRows:
    """Each captured table's row count in one source now, or why the source could not be counted."""

    counts: Mapping[str, int]
    error: str | None = None


def count_source_rows(config: LakehouseConfig, names: Sequence[str] | None = None) -> dict[str, SourceRows]:
    """Row counts of the sources' captured tables (`names`: only these sources), to set beside the lake's.

    A source that cannot be counted (unreachable, or a replay source with no live table) is
    reported with its error instead of failing the whole report.
    """
    from pipelines.capture.sources import open_source

    out: dict[str, SourceRows] = {}
    for source_config in config.sources:
        if names is not None and source_config.name not in names:
            continue
        counts: dict[str, int] = {}
        try:
            source = open_source(source_config)
            try:
                for table in source.tables():
                    counts[table.lake_name] = source.count_rows(table)
            finally:
                source.close()
        except SourceError as e:
            out[source_config.name] = SourceRows(counts, str(e).splitlines()[0])
            continue
        out[source_config.name] = SourceRows(counts)
    return out


def print_lake(
    lake: Lake,
    sources: Sequence[str],
    sample: int = 0,
    source_rows: Mapping[str, SourceRows] | None = None,
) -> None:
    """Per table: change-log rows by operation, current-state rows, and the last commit.

    With `source_rows` (see `count_source_rows`) a column shows the source's own count too.
    """
    print(f"lake: {lake.storage.root_uri}")
    for source in sources:
        latest = lake.commit_log(source).latest()
        if latest is None:
            print(f"\n{source}: nothing committed yet")
            continue
        age = (dt.datetime.now(dt.UTC) - latest.committed_at).total_seconds()
        print(f"\n{source}: commit {latest.seq} at {short_position(latest.end)} ({age:.0f} s ago)")
        current = lake.current(source)
        counted = source_rows.get(source) if source_rows is not None else None
        rows = []
        samples = []
        for name in sorted(latest.heads):
            log_ops = lake.read_changelog(source, name, columns=["Op"])
            ops: dict[str, int] = {}
            if log_ops.num_rows:
                counts = pc.value_counts(log_ops["Op"])
                ops = dict(
                    zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
                )
            table = current.load(name)
            row: list[object] = [name, log_ops.num_rows, ops.get("I", 0), ops.get("U", 0), ops.get("D", 0)]
            row += [current.live_rows(table), current.applied_seq(table)]
            if source_rows is not None:
                row.append(counted.counts.get(name, "?") if counted is not None else "?")
            rows.append(row)
            if sample and table is not None:
                head = current.read(name).slice(0, sample).to_pylist()
                if head:
                    samples.append((name, head))
        headers = ["table", "changes", "I", "U", "D", "current rows", "merged to"]
        print(format_table([*headers, "source rows"] if source_rows is not None else headers, rows))
        if counted is not None and counted.error:
            print(f"  source rows not counted: {counted.error}")
        for name, progress in sorted(latest.snapshots.items()):
            of = f" of about {progress.estimate}" if progress.estimate is not None else ""
            what = "snapshot" if progress.request is None else f"backfill (request {progress.request})"
            print(
                f"  {what} of {name} under way: {progress.rows}{of} rows in {progress.chunks} chunk(s) "
                "committed; its current state is merged once the last chunk is (the next run resumes it)"
            )
        for name, recs in samples:
            print(f"\n  {name} (first {len(recs)} current rows):")
            shown = format_rows(recs, width=shutil.get_terminal_size((120, 24)).columns - 4)
            print("\n".join("    " + line for line in shown.splitlines()))
