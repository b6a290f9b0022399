"""External document versions from source time, so they stay monotonic across lakes.

A 360° document is built from the current state of several lake tables. Its version is the sum,
over those tables, of each table's *source clock*: the source commit time (µs since the epoch) of
the change-log commit the table's current state has applied. Source time is the one ordering a
rebuilt, restored or brand-new lake shares with the old one: a (re)snapshot's rows carry the time
the snapshot was read (`_commit_ts`, connectors/mysql/snapshot.py and friends), which is later
than every change it contains, and a lake restored from an older copy replays the same changes
with the same source times. Lake commit numbers restart with every new lake, so they cannot
order documents across lakes (decisions.md §14).

Per table, the clock of commit ``c`` is

    second(c) + min(landed(c) - second(c), 1 s - 1 µs)

where ``second`` is the newest `_commit_ts` of the rows ``c`` wrote for the table, floored to the
second (MySQL and MariaDB binlog events and DynamoDB's ApproximateCreationDateTime carry whole
seconds), and ``landed`` is when the lake committed ``c``: within one source second, commits are
ordered by the lake, which commits them in source order. The lake's own time is capped inside the
source second, so a lake restored from an old copy that replays an old change late cannot give it
a version past the next source second.

Source clocks can tie (two commits of one table landed more than a second after the same source
second) or step back (a binlog event's timestamp is its statement's start, so a long transaction
can carry an earlier second than the one committed before it). The indexer's checkpoint keeps
each table's last clock; a table that moved on since gets at least that clock + 1 µs, so within
one lake versions strictly increase, as the commit-seq versions did.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pyarrow.parquet as pq

from connectors.events import COMMIT_TS_COLUMN
from connectors.lake.lake import Lake

# Recorded in the index mapping's `_meta` once a full run has written every document with it; an
# index without it holds versions of the old scheme (sums of lake commit seqs) and is rebuilt.
VERSION_SCHEME = "source-clock-1"
SECOND = 1_000_000  # µs
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class TableClock:
    """Where one input table's current state is: its applied commit and that commit's clock (µs)."""

    seq: int
    clock: int


def micros(instant: dt.datetime) -> int:
    """µs since the Unix epoch (naive datetimes are UTC, as the lake writes them)."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.UTC)
    return (instant - _EPOCH) // dt.timedelta(microseconds=1)


def commit_clock(source_us: int | None, landed_us: int) -> int:
    """The clock of a commit whose newest source time is `source_us`, committed at `landed_us`.

    A commit without rows (an empty table's snapshot) is as of when it was committed.
    """
    if source_us is None:
        return landed_us
    second = source_us - source_us % SECOND
    return second + min(max(landed_us - second, 0), SECOND - 1)


def advance(raw: int, seq: int, previous: TableClock | None) -> int:
    """The clock of a table at commit `seq` (raw clock `raw`), given the last one indexed.

    The same commit keeps its clock (a re-run writes the same version). A later commit is at
    least 1 µs past the previous clock, so versions never tie or step back within one lake. An
    earlier commit than the checkpoint's (a lake restored behind it, or a racing run that moved the
    checkpoint on) takes its own clock, which is older: its documents are refused, as they should.
    """
    if previous is None or seq < previous.seq:
        return raw
    if seq == previous.seq:
        return previous.clock
    return max(raw, previous.clock + 1)


class SourceClocks:
    """Reads the source clock of input tables' applied commits from the lake (cached per commit)."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._raw: dict[tuple[str, str, int], int] = {}

    def clocks(
        self, seqs: dict[str, int], previous: dict[str, TableClock] | None = None
    ) -> dict[str, TableClock]:
        """Each table's clock at its applied seq (`seqs`: ``"<source>.<lake table>" -> seq``)."""
        previous = previous or {}
        out = {}
        for name, seq in seqs.items():
            source, lake_table = name.split(".", 1)
            raw = self.raw(source, lake_table, seq)
            out[name] = TableClock(seq, advance(raw, seq, previous.get(name)) if seq else 0)
        return out

    def raw(self, source: str, lake_table: str, seq: int) -> int:
        """The clock of commit `seq` of `source` for `lake_table` (0 for a table with no state)."""
        if seq <= 0:
            return 0
        key = (source, lake_table, seq)
        if key not in self._raw:
            record = self.lake.commit_log(source).read(seq)
            table = record.tables.get(lake_table)
            newest = None
            for ref in table.files if table is not None else ():
                newest = _max_or(newest, self._newest_commit_ts(ref.path))
            self._raw[key] = commit_clock(newest, micros(record.committed_at))
        return self._raw[key]

    def _newest_commit_ts(self, path: str) -> int | None:
        """The newest `_commit_ts` of one change-log file: from the footer's statistics (no data
        read, whatever the file's size), or from the column when a writer left them out."""
        storage = self.lake.storage
        meta = pq.read_metadata(storage.full_path(path), filesystem=storage.fs)
        names = meta.schema.names
        if COMMIT_TS_COLUMN not in names:
            return None
        column = names.index(COMMIT_TS_COLUMN)
        newest: int | None = None
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(column).statistics
            if meta.row_group(group).num_rows and (stats is None or not stats.has_min_max):
                break  # no statistics: read the column
            if stats is not None and stats.has_min_max:
                newest = _max_or(newest, _as_micros(stats.max))
        else:
            return newest
        values = storage.read_parquet(path, [COMMIT_TS_COLUMN]).column(0)
        stamps = [micros(v) for v in values.to_pylist() if v is not None]
        return max(stamps) if stamps else None


def version_of(clocks: dict[str, TableClock]) -> int:
    """The documents' external version: the sum of the input tables' clocks.

    Each table's clock only moves forward within a lake, so the sum strictly increases with any
    merge; eight tables of µs clocks stay far below OpenSearch's 2^63 - 1 limit (about 1.5e16).
    """
    return sum(c.clock for c in clocks.values())


def _as_micros(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return micros(value)
    return int(value)  # Parquet statistics of TIMESTAMP(MICROS) without a logical type


def _max_or(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)
