"""A workload that keeps changing the device tables: new events, overwrites, deletes, summary updates.

Operations are drawn from a seeded ``random.Random`` and paced to a rate with a monotonic clock
and sleeps. Each operation is one single-item write, so each confirmed operation is exactly one
stream record (INSERT, MODIFY or REMOVE); the workload counts only what DynamoDB confirmed, using
``ReturnValues=ALL_OLD`` to tell a new item from a replaced one and a deleted item from a miss.

Two things keep those counts equal to what a stream shows, on moto and on real DynamoDB:
- Every write changes a value. DynamoDB writes no stream record for a write that changes nothing
  (moto writes a MODIFY anyway), so each write stamps ``received_at``/``updated_at`` from an
  operation clock that strictly increases, in milliseconds.
- A summary that does not exist yet is created with a conditional PutItem, and an existing one is
  changed with a conditional UpdateItem. moto 5.2.5 writes *two* INSERT records when an UpdateItem
  creates an item (a key-only one, then the full one); DynamoDB writes one.

The workload keeps the keys that exist (read once with a consistent scan), so overwrites and
deletes hit real items. A ``stop`` event is checked between operations. An error propagates as
``DeviceWorkloadError`` after the operations DynamoDB confirmed have been counted; the keys are
then read again before the next run, because a failed write may or may not have happened.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.world.devices import DeviceItems, format_event_time, parse_event_time, serialize_item
from pipelines.world.devices_schema import (
    DEVICE_TABLE_KEYS,
    EVENTS_TABLE,
    SUMMARY_TABLE,
    DeviceTables,
    DeviceWorldError,
)
from pipelines.world.pacing import Pacer
from pipelines.world.stats import Change, ChangeKind, Tally, WorkloadStats

__all__ = [
    "STREAM_EVENT_NAMES",
    "DeviceOperationMix",
    "DeviceWorkload",
    "DeviceWorkloadConfig",
    "DeviceWorkloadError",
    "DeviceWorkloadStats",
]

log = logging.getLogger(__name__)

# Stats of a device workload: the world's usual stats, keyed by logical table name. Each DynamoDB
# write is its own transaction, so ``transactions`` counts operations that changed an item.
DeviceWorkloadStats = WorkloadStats

# ChangeKind -> the DynamoDB Streams eventName that change produces.
STREAM_EVENT_NAMES: Mapping[ChangeKind, str] = MappingProxyType(
    {ChangeKind.INSERT: "INSERT", ChangeKind.UPDATE: "MODIFY", ChangeKind.DELETE: "REMOVE"}
)

Key = tuple[int, str]
_MS = dt.timedelta(milliseconds=1)


class DeviceWorkloadError(DeviceWorldError):
    """An operation failed; ``stats`` holds what the run had confirmed before it."""

    def __init__(self, message: str, stats: WorkloadStats) -> None:
        super().__init__(message)
        self.stats = stats


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeviceOperationMix(_Frozen):
    """Relative weights of the four operations (they need not sum to 1)."""

    new_event: float = Field(default=0.45, ge=0, description="Put an event with a new key.")
    overwrite_event: float = Field(default=0.2, ge=0, description="Put new values under an existing key.")
    delete_event: float = Field(default=0.1, ge=0, description="Delete an existing event.")
    update_summary: float = Field(default=0.25, ge=0, description="Change (or start) a daily summary.")

    @model_validator(mode="after")
    def _some_weight(self) -> DeviceOperationMix:
        if self.new_event + self.overwrite_event + self.delete_event + self.update_summary <= 0:
            raise ValueError("at least one operation must have a positive weight")
        return self


class DeviceWorkloadConfig(_Frozen):
    """What the device workload does; the same config on the same tables does the same thing."""

    rate: float | None = Field(
        default=None, gt=0, description="Operations per second; None runs as fast as DynamoDB answers."
    )
    seed: int = Field(default=0, description="Seed of every random choice the workload makes.")
    mix: DeviceOperationMix = Field(
        default_factory=lambda: DeviceOperationMix(), description="Operation weights."
    )
    patient_ids: tuple[int, int] = Field(
        default=(1, 200),
        description="Inclusive range of patient ids the workload touches (the MySQL world's patients).",
    )
    summary_days: int = Field(
        default=3, ge=1, description="A summary update hits one of this many most recent UTC days."
    )
    max_sync_lag: dt.timedelta = Field(
        default=dt.timedelta(seconds=90),
        ge=dt.timedelta(0),
        description="A new event happened up to this long before the device synced it.",
    )
    clock_start: dt.datetime | None = Field(
        default=None,
        description="Simulated clock: operation i is stamped clock_start + i * clock_step. None uses the wall clock.",
    )
    clock_step: dt.timedelta = Field(
        default=dt.timedelta(seconds=1, milliseconds=3),
        ge=_MS,
        description="Tick of the simulated clock (at least a millisecond: stamps have millisecond precision).",
    )
    keep_journal: bool = Field(
        default=False, description="Keep every confirmed change in the stats (tests; memory grows)."
    )
    log_every_seconds: float = Field(default=10.0, gt=0, description="Interval of progress log lines.")

    @field_validator("patient_ids")
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1]:
            raise ValueError(f"patient_ids must be (first, last) with 1 <= first <= last, got {v}")
        return v

    @field_validator("clock_start")
    @classmethod
    def _aware(cls, v: dt.datetime | None) -> dt.datetime | None:
        if v is not None and v.utcoffset() is None:
            raise ValueError("clock_start must be timezone-aware")
        return v


class _KeyPool:
    """The keys of one table: membership, insertion, removal and a seeded choice, all O(1)."""

    def __init__(self, keys: Iterable[Key]) -> None:
        self._keys = sorted(set(keys))  # sorted: the scan order must not steer the random choices
        self._index = {k: i for i, k in enumerate(self._keys)}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def add(self, key: Key) -> None:
        if key not in self._index:
            self._index[key] = len(self._keys)
            self._keys.append(key)

    def discard(self, key: Key) -> None:
        i = self._index.pop(key, None)
        if i is None:
            return
        last = self._keys.pop()
        if last != key:  # move the last key into the hole
            self._keys[i] = last
            self._index[last] = i

    def choice(self, rng: random.Random) -> Key:
        return self._keys[rng.randrange(len(self._keys))]


class DeviceWorkload:
    """Runs seeded single-item writes against the device tables and counts what DynamoDB confirmed.

    ``client`` is a boto3 ``dynamodb`` client and ``tables`` the result of
    ``create_device_tables``. Single-threaded; nothing else should write the same patients' items
    while it runs (if something does, ``reload`` re-reads the keys).
    """

    def __init__(self, client: Any, tables: DeviceTables, config: DeviceWorkloadConfig | None = None) -> None:
        self.client = client
        self.tables = tables
        self.config = config or DeviceWorkloadConfig()
        self._rng = random.Random(f"device_workload/{self.config.seed}")
        self._items = DeviceItems(self._rng)
        self._events: _KeyPool | None = None
        self._summaries: _KeyPool | None = None
        self._ticks = 0
        self._last_stamp: dt.datetime | None = None
        self._tally = Tally(keep_journal=self.config.keep_journal)
        self._elapsed = 0.0
        mix = self.config.mix
        self._ops: list[Callable[[dt.datetime], list[Change]]] = [
            self._new_event,
            self._overwrite_event,
            self._delete_event,
            self._update_summary,
        ]
        self._op_weights = [mix.new_event, mix.overwrite_event, mix.delete_event, mix.update_summary]

    # ------------------------------------------------------------------ public API

    @property
    def totals(self) -> DeviceWorkloadStats:
        """Confirmed changes of every run of this workload so far."""
        return self._tally.freeze(self._elapsed)

    def reload(self) -> None:
        """Re-read which keys exist (after someone else changed the tables)."""
        self._events = self._summaries = None
        self._load_keys()

    def run(
        self,
        duration_seconds: float | None = None,
        operations: int | None = None,
        stop: threading.Event | None = None,
    ) -> DeviceWorkloadStats:
        """Run until ``operations`` are done, ``duration_seconds`` pass or ``stop`` is set.

        Paced to ``config.rate``; pauses wait on the stop event, so a stop request ends one at
        once. With no bound and no event it runs until interrupted. Returns this run's confirmed
        changes; on an error raises ``DeviceWorkloadError`` carrying them.
        """
        if operations is not None and operations < 0:
            raise ValueError(f"operations must be >= 0, got {operations}")
        run_tally = Tally(keep_journal=self.config.keep_journal)
        pacer = Pacer(
            self.config.rate,
            duration=duration_seconds,
            operations=operations,
            stop=stop,
            log_every=self.config.log_every_seconds,
        )
        done = 0
        try:
            self._load_keys()
            while pacer.next(done):
                self._operation(run_tally, pacer.started)
                done += 1
                pacer.progress("device workload", done, lambda: sum(run_tally.rows.values()), "items")
        finally:
            elapsed = pacer.elapsed
            self._elapsed += elapsed
        stats = run_tally.freeze(elapsed)
        log.debug("device workload finished: %s", stats)  # the caller reports the run
        return stats

    # ------------------------------------------------------------------ internals

    def _operation(self, run_tally: Tally, started: float) -> None:
        """Run one operation and count what it confirmed."""
        op = self._rng.choices(self._ops, self._op_weights)[0]
        try:
            changes = op(self._stamp())
        except BaseException as exc:
            # The write may or may not have happened (timeout, interrupt): read the keys again.
            self._events = self._summaries = None
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt, SystemExit
            name = op.__name__.lstrip("_")
            stats = run_tally.freeze(time.monotonic() - started)
            raise DeviceWorkloadError(f"{name} failed (not counted): {exc}", stats) from exc
        for tally in (self._tally, run_tally):
            if changes:
                tally.commit(changes, 1)
            else:
                tally.operations += 1  # the service confirmed no change (the item was gone)

    def _load_keys(self) -> None:
        if self._events is not None and self._summaries is not None:
            return
        try:
            self._events = _KeyPool(self._scan_keys(EVENTS_TABLE))
            self._summaries = _KeyPool(self._scan_keys(SUMMARY_TABLE))
        except Exception as exc:
            self._events = self._summaries = None
            raise DeviceWorkloadError(
                f"could not read the device tables' keys (has create_device_tables run?): {exc}",
                WorkloadStats(),
            ) from exc
        first, last = self.config.patient_ids
        if not len(self._events):
            log.warning(
                "device workload: %s holds no events of patients %d-%d, so overwrites and deletes "
                "write new events instead; seed it first (`lakehouse world`) to change existing ones",
                self.tables.device_events, first, last,
            )  # fmt: skip
        else:
            log.debug("device workload: %d events and %d summaries of patients %d-%d",
                      len(self._events), len(self._summaries), first, last)  # fmt: skip

    def _scan_keys(self, table: str) -> list[Key]:
        (hash_name, _), (range_name, _) = DEVICE_TABLE_KEYS[table]
        first, last = self.config.patient_ids
        keys = []
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.tables.name(table),
            ProjectionExpression="#h, #r",
            FilterExpression="#h BETWEEN :first AND :last",
            ExpressionAttributeNames={"#h": hash_name, "#r": range_name},
            ExpressionAttributeValues={":first": {"N": str(first)}, ":last": {"N": str(last)}},
            ConsistentRead=True,  # see the workload's own earlier writes
        )
        for page in pages:
            for item in page.get("Items", []):
                keys.append((int(item[hash_name]["N"]), str(item[range_name]["S"])))
        return keys

    def _stamp(self) -> dt.datetime:
        """The operation clock in whole milliseconds, strictly increasing (so every write changes a value)."""
        start = self.config.clock_start
        now = dt.datetime.now(dt.UTC) if start is None else start + self._ticks * self.config.clock_step
        self._ticks += 1
        now = now.astimezone(dt.UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + _MS
        self._last_stamp = now
        return now

    def _pools(self) -> tuple[_KeyPool, _KeyPool]:
        assert self._events is not None and self._summaries is not None  # loaded by run()
        return self._events, self._summaries

    def _new_event(self, now: dt.datetime) -> list[Change]:
        events, _ = self._pools()
        patient_id = self._rng.randint(*self.config.patient_ids)
        lag_ms = int(self.config.max_sync_lag / _MS)
        at = now - self._rng.randrange(lag_ms + 1) * _MS
        while (patient_id, format_event_time(at)) in events:
            at += _MS
        return [self._put_event(self._items.event(patient_id, at, now))]

    def _overwrite_event(self, now: dt.datetime) -> list[Change]:
        events, _ = self._pools()
        if not len(events):
            return self._new_event(now)
        patient_id, event_time = events.choice(self._rng)
        # New values (the type may change too) under the same key; received_at always moves on.
        return [self._put_event(self._items.event(patient_id, parse_event_time(event_time), now))]

    def _put_event(self, item: dict[str, Any]) -> Change:
        key = (item["patient_id"], item["event_time"])
        response = self.client.put_item(
            TableName=self.tables.device_events, Item=serialize_item(item), ReturnValues="ALL_OLD"
        )
        self._pools()[0].add(key)
        kind = ChangeKind.UPDATE if response.get("Attributes") else ChangeKind.INSERT
        return Change(EVENTS_TABLE, kind, key)

    def _delete_event(self, now: dt.datetime) -> list[Change]:
        events, _ = self._pools()
        if not len(events):
            return self._new_event(now)
        key = events.choice(self._rng)
        response = self.client.delete_item(
            TableName=self.tables.device_events,
            Key=serialize_item({"patient_id": key[0], "event_time": key[1]}),
            ReturnValues="ALL_OLD",
        )
        events.discard(key)
        if not response.get("Attributes"):
            log.debug("device workload: event %s was already gone", key)
            return []
        return [Change(EVENTS_TABLE, ChangeKind.DELETE, key)]

    def _update_summary(self, now: dt.datetime) -> list[Change]:
        _, summaries = self._pools()
        patient_id = self._rng.randint(*self.config.patient_ids)
        day = (now - dt.timedelta(days=self._rng.randrange(self.config.summary_days))).date().isoformat()
        key = (patient_id, day)
        steps, sleep, pulse, flags = self._items.summary_change(patient_id)
        exists = key in summaries
        # Conditional writes keep the INSERT/MODIFY count exact if our picture of the keys is wrong:
        # a failed condition means the other branch is right, so it is tried once.
        for _ in range(2):
            try:
                if exists:
                    self._update_summary_item(key, steps, sleep, pulse, flags, now)
                else:
                    item = {
                        "patient_id": patient_id,
                        "day": day,
                        "steps": steps,
                        "sleep_minutes": sleep,
                        "resting_pulse": pulse,
                        "updated_at": format_event_time(now),
                        **({"flags": flags} if flags else {}),
                    }
                    self.client.put_item(
                        TableName=self.tables.daily_summary,
                        Item=serialize_item(item),
                        ConditionExpression="attribute_not_exists(patient_id)",
                    )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                exists = not exists
                continue
            summaries.add(key)
            return [Change(SUMMARY_TABLE, ChangeKind.UPDATE if exists else ChangeKind.INSERT, key)]
        raise DeviceWorldError(f"summary {key} kept changing between existing and not existing")

    def _update_summary_item(
        self, key: Key, steps: int, sleep: int, pulse: int, flags: set[str], now: dt.datetime
    ) -> None:
        # ``day`` and other words are DynamoDB reserved words: every name goes through a placeholder.
        expression = "ADD #steps :steps SET #sleep = :sleep, #pulse = :pulse, #updated = :updated"
        values: dict[str, Any] = {
            ":steps": steps,
            ":sleep": sleep,
            ":pulse": pulse,
            ":updated": format_event_time(now),
        }
        if flags:
            expression += ", #flags = :flags"
            values[":flags"] = flags
        else:
            expression += " REMOVE #flags"  # a string set cannot be empty
        self.client.update_item(
            TableName=self.tables.daily_summary,
            Key=serialize_item({"patient_id": key[0], "day": key[1]}),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(patient_id)",
            ExpressionAttributeNames={
                "#steps": "steps",
                "#sleep": "sleep_minutes",
                "#pulse": "resting_pulse",
                "#updated": "updated_at",
                "#flags": "flags",
            },
            ExpressionAttributeValues=serialize_item(values),
        )
