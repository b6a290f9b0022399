"""Plain-text reports for people: what a run did, and what the lake holds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow.compute as pc

from connectors.lake.lake import Lake
from connectors.offsets import parse_offset
from pipelines.runner import SyncReport


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows as an aligned plain-text table under a header line."""
    return _table(headers, rows)


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def short_position(text: str | None) -> str:
    """A position for a table cell: short ones as they are, long ones (DynamoDB shard maps) summarised."""
    if not text:
        return "-"
    if len(text) <= 40:
        return text
    try:
        offset = parse_offset(text)
    except ValueError:
        return text[:37] + "..."
    return f"{offset.kind}: {offset}"


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
        )
        for r in reports
    ]
    print(
        _table(["source", "commits", "rows", "quarantined", "snapshot", "position", "lag s", "took s"], rows)
    )


def _short_list(names: Sequence[str]) -> str:
    if not names:
        return "-"
    return ",".join(names) if len(names) <= 2 else f"{names[0]} +{len(names) - 1} more"


def print_lake(
    lake: Lake, sources: Sequence[str], sample: int = 0, source_rows: dict[str, dict[str, int]] | None = None
) -> None:
    """Per table: change-log rows by operation, current-state rows, and the last commit.

    With `source_rows` ({source: {lake table: rows}}) a column shows the source's own count too.
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
                row.append(source_rows.get(source, {}).get(name, "?"))
            rows.append(row)
            if sample and table is not None:
                head = current.read(name).slice(0, sample).to_pylist()
                if head:
                    samples.append((name, head))
        headers = ["table", "changes", "I", "U", "D", "current rows", "merged to"]
        print(_table([*headers, "source rows"] if source_rows is not None else headers, rows))
        for name, progress in sorted(latest.snapshots.items()):
            of = f" of about {progress.estimate}" if progress.estimate is not None else ""
            print(
                f"  snapshot of {name} under way: {progress.rows}{of} rows in {progress.chunks} chunk(s) "
                "committed; its current state is merged once the last chunk is (the next run resumes it)"
            )
        for name, recs in samples:
            print(f"\n  {name} (first {len(recs)} current rows):")
            for rec in recs:
                print("   ", {k: v for k, v in rec.items() if not k.startswith("_")})
