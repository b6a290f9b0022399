"""Time zone helpers: local wall time to UTC, and the ambiguous hours where clocks go back.

The world writes every zone-less column (MySQL DATETIME) as UTC wall time. Events are generated as
local wall times in the zone they happen in and converted here, so DST folds are exercised on
purpose: an ambiguous local time with ``fold=1`` is the *second* occurrence (PEP 495).
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from typing import NamedTuple

from pipelines.world.catalog import WORLD_START

UTC = dt.UTC


def reference_now(at: dt.datetime | None = None) -> dt.datetime:
    """The reference "now" of a seeded world: midnight UTC of ``at`` (default: the current time).

    Seeded timestamps lie before it and are generated relative to it, so the world looks recent
    ("last 7 days" queries find data) while the same seed and reference give the same rows. Whole
    days, so that several seeders started minutes apart (MariaDB, MySQL 8, DynamoDB) agree.
    """
    instant = dt.datetime.now(UTC) if at is None else at
    if instant.tzinfo is None:
        raise ValueError("reference_now expects an aware datetime")
    return instant.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@functools.cache
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone ``name`` (cached; tzdata ships with the project)."""
    return zoneinfo.ZoneInfo(name)


def local_to_utc(local: dt.datetime, zone_name: str, *, fold: int = 0) -> dt.datetime:
    """Convert a naive local wall time in ``zone_name`` to an aware UTC datetime.

    ``fold`` picks the occurrence of an ambiguous time. A wall time inside a spring-forward gap does
    not exist; zoneinfo then applies the offset from before the gap, which lands on a real instant
    after the transition (the way most applications resolve it).
    """
    if local.tzinfo is not None:
        raise ValueError("local_to_utc expects a naive wall time")
    return local.replace(tzinfo=zone(zone_name), fold=fold).astimezone(UTC)


def utc_wall(instant: dt.datetime) -> dt.datetime:
    """The naive UTC wall time of an aware instant: what goes into a DATETIME column."""
    if instant.tzinfo is None:
        raise ValueError("utc_wall expects an aware datetime")
    return instant.astimezone(UTC).replace(tzinfo=None)


def ambiguous_hours(
    zone_name: str, until: dt.datetime | None = None
) -> tuple[tuple[dt.datetime, dt.timedelta], ...]:
    """Local wall times where ``zone_name``'s clocks went back between WORLD_START and ``until``.

    ``until`` defaults to ``reference_now()``. Each entry is (first ambiguous local wall time, length of the repeated interval). Zones without
    DST give an empty tuple. Scans day by day, then in 15-minute steps (Pacific/Chatham changes at
    quarter past the hour).
    """
    return _ambiguous_hours(zone_name, reference_now(until))


class FoldWindow(NamedTuple):
    """One repeated interval of local wall time, with the UTC instants that bound it."""

    first: dt.datetime
    """First ambiguous local wall time (naive)."""
    length: dt.timedelta
    """Length of the repeated interval."""
    utc_start: dt.datetime
    """``first`` as UTC, first occurrence (fold=0)."""
    utc_end: dt.datetime
    """``first + length`` as UTC, taken with fold=1."""


def fold_windows(zone_name: str, until: dt.datetime | None = None) -> tuple[FoldWindow, ...]:
    """The windows of ``ambiguous_hours`` with their UTC bounds, converted once per zone and ``until``.

    Callers that filter windows by instant (every generated event does) compare stored values
    instead of converting two wall times per window per call.
    """
    return _fold_windows(zone_name, reference_now(until))


@functools.cache
def _fold_windows(zone_name: str, until: dt.datetime) -> tuple[FoldWindow, ...]:
    return tuple(
        FoldWindow(
            first,
            length,
            local_to_utc(first, zone_name),
            local_to_utc(first + length, zone_name, fold=1),
        )
        for first, length in _ambiguous_hours(zone_name, until)
    )


@functools.cache
def _ambiguous_hours(zone_name: str, until: dt.datetime) -> tuple[tuple[dt.datetime, dt.timedelta], ...]:
    tz = zone(zone_name)
    windows: list[tuple[dt.datetime, dt.timedelta]] = []
    day = WORLD_START
    before = day.astimezone(tz).utcoffset()
    while day < until:
        nxt = day + dt.timedelta(days=1)
        after = nxt.astimezone(tz).utcoffset()
        if after is not None and before is not None and after < before:
            t = day
            prev = before
            while t < nxt:
                step = t + dt.timedelta(minutes=15)
                off = step.astimezone(tz).utcoffset()
                if off is not None and off < prev:
                    # The transition happens at ``step`` (UTC); wall clocks jump from
                    # step+prev back to step+off, so [step+off, step+prev) repeats.
                    start = (step + off).replace(tzinfo=None)
                    windows.append((start, prev - off))
                    break
                t = step
        before = after
        day = nxt
    return tuple(windows)
