"""Reads DynamoDB streams from stored positions: every shard in lineage order, in parallel.

One fetch per shard is in flight at a time (the service allows two readers per shard; the other
is left for whoever else reads the stream), and the next page of a shard is requested before the
current one is handed on, so network and decoding overlap. A quiet shard is polled with bounded
backoff. An iterator older than the service's 15 minutes is re-created from the last sequence
number taken, before use or when the service reports it expired. Data the stream no longer holds
(TrimmedDataAccessException, a shard that vanished while unfinished) is a `PositionLostError`
naming the re-seed command, never a silent skip.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from connectors.dynamodb.client import AwsClients, RecordsPage, error_code
from connectors.dynamodb.config import DynamoDBSourceConfig
from connectors.dynamodb.offset import ShardPosition, StreamPositions
from connectors.dynamodb.shards import Shard, describe_shards, plan_reads
from connectors.source import PositionLostError, SourceUnavailableError

log = logging.getLogger(__name__)

ITERATOR_REFRESH_SECONDS = 14 * 60.0  # the service expires iterators after 15 minutes
GET_RECORDS_LIMIT = 1000  # the service's maximum per call
MAX_PARALLEL_SHARDS = 16
# A reader sharing a stream's shards with others looks for shards freed or made readable by them
# at least this often (one DescribeStream per table and a read of the lake's newest commit).
SHARED_DISCOVER_SECONDS = 1.0
RENEWALS = 3  # an iterator that expires again right after renewal means something else is wrong
THROTTLE_CODES = frozenset(
    {"LimitExceededException", "ProvisionedThroughputExceededException", "ThrottlingException"}
)


@dataclass(frozen=True, slots=True)
class Page:
    """One GetRecords result of one shard, in the order the reader hands them on."""

    table: str
    shard: str
    records: list[dict[str, Any]]
    finished: bool  # the shard is closed and this page reached its end
    size_bytes: int = 0


@dataclass
class _ShardState:
    """Reader-side state of one shard (touched by one in-flight fetch at a time)."""

    table: str
    shard: Shard
    taken: ShardPosition  # the last sequence number fetched (not yet necessarily committed)
    iterator: str | None = None
    issued: float = 0.0
    not_before: float = 0.0
    quiet_pause: float = 0.0
    throttled: int = 0
    caught_up_at: dt.datetime | None = None  # wall time a fetch started that found the tip
    records_seen: int = 0


@dataclass
class ReaderStats:
    """Counters for checks and metadata: records read per table and shard."""

    records_seen: dict[str, dict[str, int]] = field(default_factory=dict)
    throttled: int = 0
    iterators_renewed: int = 0


class StreamReader:
    """Pages of every captured table's stream, from `start`, until the caller stops."""

    def __init__(
        self,
        clients: AwsClients,
        config: DynamoDBSourceConfig,
        stream_arns: Mapping[str, str],
        start: StreamPositions,
        choose: Callable[[str, Sequence[str]], Collection[str]] | None = None,
        committed: Callable[[], StreamPositions] | None = None,
    ) -> None:
        """`choose(table, readable shard ids)`: the ones this reader may read (a shard worker's
        leased shards, `connectors.lake.shard_leases`); None: every readable shard.
        `committed()`: the lake's newest position, where other readers commit their shards: the
        lineage rule and the start of a shard this reader takes up are judged by it (for the
        shards this reader has not read itself); see `take_adopted`."""
        self.clients = clients
        self.choose = choose
        self.committed = committed
        self._touched: set[tuple[str, str]] = set()
        self._adopted: dict[tuple[str, str], ShardPosition | None] = {}
        self.config = config
        self.stream_arns = dict(stream_arns)
        self.positions: dict[str, dict[str, ShardPosition]] = {
            t: dict(start.shards(t)) for t in self.stream_arns
        }
        self.stats = ReaderStats()
        self._states: dict[tuple[str, str], _ShardState] = {}
        self._readable: list[tuple[str, str]] = []
        self._next_discovery = 0.0
        self._lock = threading.Lock()

    # --- positions ---------------------------------------------------------------------------
    def offset(self) -> StreamPositions:
        """The position after every page handed on so far."""
        return StreamPositions({t: dict(p) for t, p in self.positions.items()})

    def take_adopted(self) -> dict[tuple[str, str], ShardPosition | None]:
        """Shards taken up since the last call, with the committed position each was taken up at
        (None: not in the lake's position): a batch's start must name these, not older ones."""
        adopted, self._adopted = self._adopted, {}
        return adopted

    def caught_up_since(self, moment: dt.datetime) -> bool:
        """Every readable shard found its tip in a fetch started at or after `moment`."""
        return all(
            (s := self._states[key]).caught_up_at is not None and s.caught_up_at >= moment
            for key in self._readable
        )

    # --- discovery ---------------------------------------------------------------------------
    def discover(self) -> None:
        """List every stream's shards; decide which are readable now (lineage rule)."""
        readable: list[tuple[str, str]] = []
        committed = self.committed() if self.committed is not None else None
        for table, arn in self.stream_arns.items():
            listed = describe_shards(self.clients.streams, arn)
            positions = self.positions[table]
            view: dict[str, ShardPosition] = positions
            if committed is not None:  # others' shards as committed, ours as read
                view = dict(committed.shards(table))
                view.update({s: p for s, p in positions.items() if (table, s) in self._touched})
            plan = plan_reads(listed, view)
            if plan.vanished:
                raise self._position_lost(
                    table,
                    f"shard(s) {list(plan.vanished)} of the stream of table {table} are gone (older than the "
                    "stream's 24-hour retention) before the lake had read them to their end",
                )
            for shard_id in plan.forgotten:
                positions.pop(shard_id, None)
            chosen = plan.readable
            if self.choose is not None:
                mine = self.choose(table, plan.readable)
                chosen = tuple(s for s in plan.readable if s in mine)
            for shard_id in chosen:
                key = (table, shard_id)
                if key not in self._states:
                    if committed is not None and key not in self._touched:
                        start = view.get(shard_id)
                        self._adopted[key] = start
                        if start is None:
                            positions.pop(shard_id, None)
                        else:
                            positions[shard_id] = start
                    self._touched.add(key)
                    self._states[key] = _ShardState(
                        table, listed[shard_id], positions.get(shard_id, ShardPosition())
                    )
                else:
                    self._states[key].shard = listed[shard_id]
                readable.append(key)
        self._readable = readable
        every = self.config.discover_seconds
        if committed is not None:  # sharing shards: see others' progress, and free shards, soon
            every = min(every, SHARED_DISCOVER_SECONDS)
        self._next_discovery = time.monotonic() + every

    # --- the loop ----------------------------------------------------------------------------
    def pages(self, until: dt.datetime | None = None) -> Iterator[Page]:
        """Pages as they arrive (several shards in flight). With `until`, stop once every shard
        has been read to its tip by a fetch that started after `until`."""
        self.discover()
        workers = min(MAX_PARALLEL_SHARDS, max(1, len(self._readable)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ddb-shard")
        inflight: dict[Future[tuple[RecordsPage | None, dt.datetime]], tuple[str, str]] = {}
        try:
            while True:
                now = time.monotonic()
                if now >= self._next_discovery:
                    self.discover()
                for key in self._readable:
                    state = self._states[key]
                    if key not in inflight.values() and state.not_before <= now:
                        inflight[pool.submit(self._fetch, state)] = key
                if until is not None and not inflight and self.caught_up_since(until):
                    return
                if not inflight:
                    wake = min([self._states[k].not_before for k in self._readable] + [self._next_discovery])
                    time.sleep(max(0.0, min(wake - time.monotonic(), self.config.poll_max_seconds)))
                    continue
                done, _ = wait(
                    list(inflight), timeout=self.config.poll_max_seconds, return_when=FIRST_COMPLETED
                )
                # Pages of shards in flight together hold disjoint items (a parent and its child
                # are never read at once), so their order among themselves does not matter.
                for future in done:
                    key = inflight.pop(future)
                    page = self._settle(self._states[key], *future.result())
                    if page is not None:
                        yield page
        finally:
            for future in inflight:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _settle(self, state: _ShardState, result: RecordsPage | None, started: dt.datetime) -> Page | None:
        """Book a fetch's outcome (main thread): positions, backoff, lineage; the page to hand on."""
        if result is None:  # throttled: back off, try again later
            state.throttled += 1
            self.stats.throttled += 1
            if state.throttled > self.config.retry.attempts:
                raise SourceUnavailableError(
                    f"source {self.config.name}: GetRecords on shard {state.shard.shard_id} of table {state.table} "
                    f"was throttled {state.throttled} times in a row; is something else reading this stream "
                    "(at most two readers per shard)?"
                )
            pause = min(
                self.config.retry.max_seconds, self.config.retry.initial_seconds * 2 ** (state.throttled - 1)
            )
            state.not_before = time.monotonic() + pause
            return None
        state.throttled = 0
        records = result.records
        finished = result.next_iterator is None
        state.iterator = result.next_iterator
        if records:
            state.taken = ShardPosition(int(records[-1]["dynamodb"]["SequenceNumber"]), finished)
            state.quiet_pause = 0.0
            state.not_before = 0.0
            state.caught_up_at = None
        else:
            state.taken = ShardPosition(state.taken.sequence, finished)
            state.caught_up_at = started
            state.quiet_pause = min(
                self.config.poll_max_seconds, max(self.config.poll_min_seconds, state.quiet_pause * 2)
            )
            state.not_before = time.monotonic() + state.quiet_pause
        state.records_seen += len(records)
        seen = self.stats.records_seen.setdefault(state.table, {})
        seen[state.shard.shard_id] = seen.get(state.shard.shard_id, 0) + len(records)
        self.positions[state.table][state.shard.shard_id] = state.taken
        if finished:
            # the shard's children become readable: look for them now
            self._readable.remove((state.table, state.shard.shard_id))
            del self._states[(state.table, state.shard.shard_id)]
            self._next_discovery = 0.0
        return Page(state.table, state.shard.shard_id, records, finished, result.size_bytes)

    # --- worker side -------------------------------------------------------------------------
    def _fetch(self, state: _ShardState) -> tuple[RecordsPage | None, dt.datetime]:
        """One GetRecords for `state`'s shard (worker thread); None when throttled."""
        started = dt.datetime.now(dt.UTC)
        for attempt in range(RENEWALS + 1):
            if state.iterator is None or time.monotonic() - state.issued > ITERATOR_REFRESH_SECONDS:
                self._new_iterator(state)
            assert state.iterator is not None
            try:
                called = time.monotonic()
                page = self.clients.get_records(state.iterator, GET_RECORDS_LIMIT)
                state.issued = called  # NextShardIterator is as fresh as this call
                return page, started
            except Exception as exc:
                code = error_code(exc)
                if code == "ExpiredIteratorException" and attempt < RENEWALS:
                    log.info(
                        "iterator of shard %s expired; re-creating it from %s",
                        state.shard.shard_id,
                        state.taken,
                    )
                    state.iterator = None
                    with self._lock:
                        self.stats.iterators_renewed += 1
                    continue
                if code in THROTTLE_CODES:
                    return None, started
                raise self._translate(state, exc) from None
        raise AssertionError("unreachable")

    def _new_iterator(self, state: _ShardState) -> None:
        """An iterator just after what was taken; a shard never read starts at its first record.

        AT_SEQUENCE_NUMBER of the shard's StartingSequenceNumber (rather than TRIM_HORIZON) makes
        the service report records trimmed before we read any (TrimmedDataAccessException)
        instead of silently starting later.
        """
        streams = self.clients.streams
        arn = self.stream_arns[state.table]
        kwargs: dict[str, Any] = {"StreamArn": arn, "ShardId": state.shard.shard_id}
        if state.taken.sequence is not None:
            kwargs |= {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "SequenceNumber": str(state.taken.sequence),
            }
        else:
            kwargs |= {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": str(state.shard.start)}
        try:
            state.iterator = streams.get_shard_iterator(**kwargs)["ShardIterator"]
        except Exception as exc:
            if (
                error_code(exc) in ("ValidationException", "InvalidArgumentException")
                and state.taken.sequence is None
            ):
                # a service that rejects the empty shard's start number: its start is the horizon
                kwargs = {
                    "StreamArn": arn,
                    "ShardId": state.shard.shard_id,
                    "ShardIteratorType": "TRIM_HORIZON",
                }
                state.iterator = streams.get_shard_iterator(**kwargs)["ShardIterator"]
            else:
                raise self._translate(state, exc) from None
        state.issued = time.monotonic()

    def _translate(self, state: _ShardState, exc: Exception) -> Exception:
        code = error_code(exc)
        where = f"shard {state.shard.shard_id} of the stream of table {state.table} after {state.taken or 'its start'}"
        if code == "TrimmedDataAccessException":
            return self._position_lost(
                state.table,
                f"the records of {where} were trimmed (older than the stream's 24-hour retention)",
            )
        if code == "ResourceNotFoundException":
            return self._position_lost(state.table, f"{where} no longer exists ({exc})")
        if code:
            return SourceUnavailableError(f"source {self.config.name}: reading {where} failed: {exc}")
        return exc

    def _position_lost(self, table: str, detail: str) -> PositionLostError:
        return PositionLostError(
            f"source {self.config.name}: {detail}. The changes after the lake's position cannot be read any more; "
            f"re-seed the table from a new Scan or export with `lakehouse resnapshot --source {self.config.name}`."
        )
