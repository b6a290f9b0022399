"""Wearable device events and daily summaries: how the items look, and seeding them into DynamoDB.

Items are hostile on purpose, like the rest of the world: every DynamoDB attribute type appears
(S, N, B, BOOL, NULL, M, L, SS, NS), numbers carry decimals and 38 digits (``trace_id``), notes
carry several scripts and emoji, ``battery`` drifts from N to S now and then, and the three event
types (steps, sleep, pulse) have different shapes in one table. Sort keys are ISO-8601 UTC
instants with milliseconds and a ``Z``.

The same seed, size and reference "now" give the same items: events draw from
``random.Random(f"{seed}/device_events")``, their times lie in the two weeks before the reference
(``timeutil.reference_now``: midnight UTC of today unless given), and the first three items carry
the rare shapes, so even a tiny world shows every type. Events are a sample of what the devices
report; the daily summaries are the devices' own totals of each whole day, one per patient and
day of those two weeks, drawn from the patient's profile (``profiles``): some meet their plan's
targets, some do not, and a few patients' resting pulse rises in the last week.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import time
from collections import defaultdict
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from pipelines.world import catalog
from pipelines.world.devices_schema import EVENTS_TABLE, SUMMARY_TABLE, DeviceTables, DeviceWorldError
from pipelines.world.profiles import RISE_DAYS, patient_profile
from pipelines.world.rows import between
from pipelines.world.timeutil import reference_now

__all__ = [
    "EVENT_TYPES",
    "DeviceItems",
    "format_event_time",
    "parse_event_time",
    "seed_devices",
    "serialize_item",
]

log = logging.getLogger(__name__)

Item = dict[str, Any]

EVENT_TYPES = ("steps", "sleep", "pulse")
SLEEP_STAGES = ("light", "deep", "rem", "awake")
# (model, firmware versions seen in the field)
DEVICE_MODELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Fitbit Charge 6", ("1.188.54", "1.190.2")),
    ("Garmin vívosmart 5", ("4.10", "4.20")),
    ("Oura Ring Gen3", ("2.9.1",)),
    ("Apple Watch Series 9", ("10.5", "11.0.1")),
    ("Withings ScanWatch 2", ("3512",)),
    ("小米手环 8", ("2.1.0.12",)),
)
TAGS = ("synced", "manual", "workout", "outdoor", "indoor", "calibrated", "nap", "夜間", "café", "🏃")
NOTES = (
    *catalog.NOTE_SNIPPETS,
    "Slept badly, Søren says — noisy neighbours",
    "Пульс высокий после подъёма по лестнице",
    "昼寝をした 😴",
    "שינה טובה",
    "नींद अच्छी रही",
    "Ngũgĩ forgot to wear the ring",
    "Zoë: 10 000 pas aujourd'hui ✔",
)
# Forced notes (the showcase) use text outside ASCII, so unicode shows in any world.
_UNICODE_NOTES = tuple(n for n in NOTES if not n.isascii())
SUMMARY_FLAGS = ("goal_met", "short_sleep", "high_pulse", "manual_entry", "device_gap")
BATTERY_WORDS = ("low", "charging", "unknown")

# The first seeded items carry the rare shapes, so every attribute type shows in any world.
# (event type, forced extras); extras: raw, trace_id, battery_text, note_null, note_text, tags.
_SHOWCASE: tuple[tuple[str, frozenset[str]], ...] = (
    ("steps", frozenset({"raw", "trace_id", "battery_text", "note_null"})),
    ("sleep", frozenset({"note_text", "tags"})),
    ("pulse", frozenset({"tags", "note_text"})),
)
_SEED_DAYS = 14
_BATCH_SIZE = 25  # the BatchWriteItem limit
_BATCH_ATTEMPTS = 8
_BATCH_BACKOFF_CAP_SECONDS = 2.0

_serializer = TypeSerializer()


def format_event_time(instant: dt.datetime) -> str:
    """``2026-11-26T16:00:00.123Z``: UTC, milliseconds (truncated), a ``Z``; sorts as it reads."""
    if instant.tzinfo is None:
        raise ValueError("format_event_time expects an aware datetime")
    utc = instant.astimezone(dt.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def parse_event_time(text: str) -> dt.datetime:
    """The aware UTC instant of a ``format_event_time`` string."""
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def serialize_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """Python values -> DynamoDB AttributeValues (int/Decimal N, set SS/NS, bytes B, None NULL)."""
    return {name: _serializer.serialize(value) for name, value in item.items()}


@functools.lru_cache(maxsize=4096)
def patient_devices(patient_id: int) -> tuple[dict[str, str], ...]:
    """The wearables of a patient: fixed by the id, so seeded and workload events agree."""
    rng = random.Random(f"devices/{patient_id}")
    count = 2 if rng.random() < 0.1 else 1  # a few wear a ring and a watch
    devices = []
    for _ in range(count):
        model, firmwares = rng.choice(DEVICE_MODELS)
        devices.append(
            {"id": f"dev-{rng.randrange(16**10):010x}", "model": model, "firmware": rng.choice(firmwares)}
        )
    return tuple(devices)


class DeviceItems:
    """Makes device event and daily summary items (Python values) from one random generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def event(
        self,
        patient_id: int,
        at: dt.datetime,
        received_at: dt.datetime,
        *,
        event_type: str | None = None,
        extras: Collection[str] = (),
    ) -> Item:
        """One device event at ``at``; ``extras`` force rare attributes (see ``_SHOWCASE``)."""
        rng = self.rng
        kind = event_type or rng.choices(EVENT_TYPES, (5, 2, 4))[0]
        item: Item = {
            "patient_id": patient_id,
            "event_time": format_event_time(at),
            "type": kind,
            "device": dict(rng.choice(patient_devices(patient_id))),
            "received_at": format_event_time(received_at),
        }
        if kind == "steps":
            steps = rng.randrange(0, 6_000)
            item["steps"] = steps
            stride = Decimal(rng.randrange(55, 90)) / 100
            item["distance_m"] = (steps * stride + Decimal(rng.randrange(100)) / 100).quantize(
                Decimal("0.01")
            )
        elif kind == "sleep":
            stages = [
                {"stage": rng.choice(SLEEP_STAGES), "minutes": rng.randrange(3, 95)}
                for _ in range(rng.randrange(1, 9))
            ]
            item["stages"] = stages
            item["sleep_minutes"] = sum(s["minutes"] for s in stages if s["stage"] != "awake")
        else:
            bpm = rng.randrange(42, 185)
            item["bpm"] = bpm
            item["resting"] = bpm < 95 and rng.random() < 0.6
            # A number set: duplicates collapse, and it is never empty (bpm is in it).
            item["samples"] = {bpm, *(bpm + rng.randrange(-9, 10) for _ in range(rng.randrange(0, 7)))}
        if "battery_text" in extras or rng.random() < 0.03:
            item["battery"] = rng.choice(BATTERY_WORDS)  # the attribute that drifts type
        elif rng.random() < 0.9:
            item["battery"] = rng.randrange(0, 101)
        if "tags" in extras or rng.random() < 0.35:
            item["tags"] = set(rng.sample(TAGS, rng.randrange(1, 4)))
        note = rng.random()
        if "note_null" in extras or ("note_text" not in extras and note < 0.05):
            item["note"] = None
        elif "note_text" in extras or note < 0.2:
            item["note"] = rng.choice(_UNICODE_NOTES if "note_text" in extras else NOTES)
        if "raw" in extras or rng.random() < 0.03:
            item["raw"] = rng.randbytes(rng.randrange(1, 9))
        if "trace_id" in extras or rng.random() < 0.02:
            item["trace_id"] = rng.randrange(10**37, 10**38)  # 38 digits: DynamoDB's full precision
        return item

    def summary_change(self, patient_id: int) -> tuple[int, int, int, set[str]]:
        """Values for one summary update: (steps to add, sleep minutes, resting pulse, flags).

        Sleep and resting pulse follow the patient's profile (the pulse of a patient whose pulse is
        rising stays up), so the workload's updates keep the seeded picture plausible.
        """
        rng = self.rng
        flags = set(rng.sample(SUMMARY_FLAGS, rng.choice((0, 1, 1, 2))))
        _, sleep, pulse = patient_profile(patient_id).day(rng, recent=True)
        return rng.randrange(1, 4_000), sleep, pulse, flags


def day_summary(patient_id: int, day: dt.date, rng: random.Random, *, recent: bool) -> Item:
    """The daily summary of one patient's whole UTC ``day``; ``recent``: in the last RISE_DAYS days."""
    profile = patient_profile(patient_id)
    steps, sleep, pulse = profile.day(rng, recent=recent)
    flags = set()
    if steps >= 10_000:
        flags.add("goal_met")
    if 0 < sleep < 360:
        flags.add("short_sleep")
    if pulse >= profile.resting_pulse * 1.15:
        flags.add("high_pulse")
    if rng.random() < 0.05:
        flags.add("manual_entry")
    # Devices sync the day's totals just before the day ends (UTC).
    synced = dt.datetime.combine(day, dt.time(23, 50), dt.UTC) + dt.timedelta(seconds=rng.randrange(1, 540))
    item: Item = {
        "patient_id": patient_id,
        "day": day.isoformat(),
        "steps": steps,
        "sleep_minutes": sleep,
        "resting_pulse": pulse,
        "updated_at": format_event_time(synced),
    }
    if flags:
        item["flags"] = flags  # a string set may not be empty: leave it out instead
    return item


def seed_devices(
    client: Any,
    tables: DeviceTables,
    patients: int,
    events_per_patient: int,
    seed: int,
    *,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Write ``events_per_patient`` events for patients 1..``patients`` and their daily summaries.

    Events lie in the two weeks before ``reference_now(now)`` (today's midnight UTC by default), and
    each patient with events gets a summary for every UTC day of those two weeks. Writes go through
    BatchWriteItem (25 items per request; unprocessed items are retried with bounded backoff).
    Seeding again with the same arguments rewrites the same items. Returns the items written per
    logical table.
    """
    if patients < 0 or events_per_patient < 0:
        raise DeviceWorldError(
            f"patients and events_per_patient must be >= 0, got {patients}, {events_per_patient}"
        )
    factory = DeviceItems(random.Random(f"{seed}/device_events"))
    rng = factory.rng
    summary_rng = random.Random(f"{seed}/daily_summary")
    writer = _BatchWriter(client)
    reference = reference_now(now)
    start = reference - dt.timedelta(days=_SEED_DAYS)
    end = reference - dt.timedelta(minutes=10)
    days = [start.date() + dt.timedelta(days=i) for i in range(_SEED_DAYS)]
    written = 0
    for patient_id in range(1, patients + 1):
        times: set[str] = set()
        for _ in range(events_per_patient):
            at = between(rng, start, end)
            while format_event_time(at) in times:  # the sort key must be unique per patient
                at += dt.timedelta(milliseconds=1)
            times.add(format_event_time(at))
            received = at + dt.timedelta(milliseconds=rng.randrange(600_000))
            event_type, extras = _SHOWCASE[written] if written < len(_SHOWCASE) else (None, frozenset())
            item = factory.event(patient_id, at, received, event_type=event_type, extras=extras)
            written += 1
            writer.put(tables.device_events, item)
        for i, day in enumerate(days if events_per_patient else ()):
            recent = i >= len(days) - RISE_DAYS
            writer.put(tables.daily_summary, day_summary(patient_id, day, summary_rng, recent=recent))
    writer.flush()
    counts = {
        EVENTS_TABLE: writer.counts[tables.device_events],
        SUMMARY_TABLE: writer.counts[tables.daily_summary],
    }
    log.debug("seeded device tables (seed=%s): %s", seed, counts)  # the caller reports them
    return counts


class _BatchWriter:
    """Buffers PutRequests and sends them 25 at a time, retrying unprocessed items."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.counts: dict[str, int] = defaultdict(int)
        self._jitter = random.Random()  # backoff jitter only; never affects the items

    def put(self, table: str, item: Item) -> None:
        self.pending.append((table, serialize_item(item)))
        if len(self.pending) >= _BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:_BATCH_SIZE], self.pending[_BATCH_SIZE:]
            request: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for table, item in batch:
                request[table].append({"PutRequest": {"Item": item}})
            self._send(dict(request))
            for table, _ in batch:
                self.counts[table] += 1

    def _send(self, request: dict[str, list[dict[str, Any]]]) -> None:
        # BatchWriteItem may accept only part of a request (throttling, size); the rest comes back
        # as UnprocessedItems and must be resent, with backoff (AWS: exponential, with jitter).
        for attempt in range(_BATCH_ATTEMPTS):
            unprocessed = self.client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if not unprocessed:
                return
            request = unprocessed
            delay = min(_BATCH_BACKOFF_CAP_SECONDS, 0.05 * 2**attempt)
            time.sleep(self._jitter.uniform(0, delay))
        left = sum(len(v) for v in request.values())
        raise DeviceWorldError(
            f"BatchWriteItem left {left} items unprocessed after {_BATCH_ATTEMPTS} attempts"
        )
