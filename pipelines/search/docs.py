"""The customer/patient 360° document, built from the lake's current-state tables.

One document per patient: profile, preferences, plans, the latest assessment, a claims summary
and device aggregates (steps, sleep and resting pulse over the patient's last 7 days of device
events, flags from the daily summaries). Built for a set of patient ids at a time, reading only
those rows (filters pushed down to the Iceberg scans), so incremental indexing stays cheap.

The document's external version is the sum of the source clocks of every table it is made of
(`pipelines/search/versions.py`): each merge moves one of them forward, so a document built from
newer lake state always has a higher version — in this lake or in a rebuilt, restored or new one —
and one rebuilt from the same state has the same version. OpenSearch refuses a late or replayed
write of an older document (see connectors/opensearch/bulk.py).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, LessThanOrEqual

from connectors.lake.lake import Lake
from connectors.opensearch.bulk import Document
from connectors.opensearch.text import NORMAL_FORM
from pipelines.search import tables
from pipelines.search.versions import SourceClocks, version_of

RECENT_DAYS = 7
# Only what the document uses is read (claims' scanned attachments are not).
PATIENT_COLUMNS = (
    "patient_id", "tenant_id", "given_name", "family_name", "email", "phone", "city", "country", "sex",
    "birth_date", "marketing_opt_in", "updated_at",
)  # fmt: skip
PREFERENCE_COLUMNS = ("patient_id", "preferences", "diet", "language", "contact_channel")
ENROLLMENT_COLUMNS = ("patient_id", "plan_id", "status")
PLAN_COLUMNS = ("plan_id", "code", "name", "description")
CLAIM_COLUMNS = ("patient_id", "amount", "service_date", "status", "diagnosis_code")
ASSESSMENT_COLUMNS = ("patient_id", "assessed_at", "risk_band", "notes")
EVENT_COLUMNS = ("patient_id", "event_time", "type", "steps", "sleep_minutes", "bpm", "resting")
SUMMARY_COLUMNS = ("patient_id", "day", "flags")
OPEN_CLAIM_STATUSES = frozenset({"submitted", "approved"})
NO_DEVICE_DATA: Mapping[str, Any] = MappingProxyType(
    {"steps_7d_avg": None, "sleep_minutes_7d_avg": None, "resting_pulse": None, "device_flags": []}
)
NO_CLAIMS: Mapping[str, Any] = MappingProxyType(
    {"claims_count": 0, "claims_open": 0, "claims_total": 0.0, "last_claim_date": None, "diagnosis_codes": []}
)


@dataclass(frozen=True, slots=True)
class PeopleSources:
    """Where the 360° document's inputs live in the lake."""

    mysql: str = "aurora_mysql"
    mysql_schema: str = "health"
    devices: str | None = "devices"

    def tables(self) -> list[tuple[str, str]]:
        """(source, lake table) of every input."""
        s = self.mysql_schema.lower()
        out = [
            (self.mysql, f"{s}__{t}")
            for t in (
                "patients",
                "health_preferences",
                "plan_enrollments",
                "fitness_plans",
                "insurance_claims",
                "assessments",
            )
        ]
        if self.devices:
            out += [(self.devices, "dynamodb__device_events"), (self.devices, "dynamodb__daily_summary")]
        return out


class PeopleDocuments:
    """Builds 360° documents from one lake."""

    def __init__(self, lake: Lake, sources: PeopleSources) -> None:
        self.lake = lake
        self.sources = sources
        self.clocks = SourceClocks(lake)

    def state_seqs(self) -> dict[str, int]:
        """The applied commit seq of every input table, by ``"<source>.<lake table>"``."""
        seqs = {}
        for source, table in self.sources.tables():
            current = self.lake.current(source)
            seqs[f"{source}.{table}"] = current.applied_seq(current.load(table))
        return seqs

    def state_version(self) -> int:
        """The documents' version now, without an indexer's checkpoint (see `search_versions`)."""
        return version_of(self.clocks.clocks(self.state_seqs()))

    def all_patient_ids(self) -> list[int]:
        rows = self._read_plain(self.sources.mysql, "patients", ["patient_id"], None)
        return sorted(_ints(rows.to_pylist(), "patient_id"))

    def plan_members(self, plan_ids: Iterable[int]) -> list[int]:
        """The patients enrolled in any of `plan_ids` (their documents show the plans)."""
        rows = self._read_plain(
            self.sources.mysql, "plan_enrollments", ["patient_id", "plan_id"], sorted(plan_ids), key="plan_id"
        )
        return _ints(rows.to_pylist(), "patient_id")

    def build(self, patient_ids: Iterable[int], version: int | None = None) -> list[Document]:
        """Documents of `patient_ids` (a delete for each id without a patient row)."""
        ids = sorted(set(patient_ids))
        if not ids:
            return []
        inputs = self._load(ids)
        version = version if version is not None else self.state_version()
        docs = {d.doc_id: d for d in _documents(inputs, 0, inputs.table.num_rows, version)}
        return [docs.get(str(pid)) or Document(str(pid), version, None) for pid in ids]

    def build_all(self, version: int, chunk: int = 5_000) -> Iterator[list[Document]]:
        """Every patient's document, in chunks: each input table is read once, not once per chunk."""
        inputs = self._load(None)
        for start in range(0, inputs.table.num_rows, chunk):
            yield _documents(inputs, start, chunk, version)

    def _load(self, ids: Sequence[int] | None) -> _Inputs:
        """Every input, read in parallel (Parquet decoding releases the GIL), as one row per patient."""
        m, d = self.sources.mysql, self.sources.devices
        reads: list[tuple[str, str, tuple[str, ...], str | None]] = [
            ("patients", m, PATIENT_COLUMNS, None),
            ("health_preferences", m, PREFERENCE_COLUMNS, None),
            ("plan_enrollments", m, ENROLLMENT_COLUMNS, None),
            ("insurance_claims", m, CLAIM_COLUMNS, None),
            ("assessments", m, ASSESSMENT_COLUMNS, None),
        ]
        if d:
            reads += [
                ("device_events", d, EVENT_COLUMNS, "dynamodb"),
                ("daily_summary", d, SUMMARY_COLUMNS, "dynamodb"),
            ]
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="docs-read") as pool:
            futures = {
                name: pool.submit(self._read_plain, source, name, columns, ids, schema=schema)
                for name, source, columns, schema in reads
            }
            enrollments = futures["plan_enrollments"].result()
            plan_ids = sorted(
                {
                    int(v)
                    for v in tables.column(enrollments, "plan_id", pa.int64()).to_pylist()
                    if v is not None
                }
            )
            catalogue = self._read_plain(
                m, "fitness_plans", PLAN_COLUMNS, plan_ids if ids is not None else None, key="plan_id"
            )
            patients = futures["patients"].result()
            if not patients.num_rows:
                return _Inputs(pa.table({tables.PID: pa.array([], pa.int64())}))
            table = tables.align(
                tables.profiles(patients),
                tables.preferences(futures["health_preferences"].result()),
                tables.plans(enrollments, catalogue),
                tables.claims(futures["insurance_claims"].result()),
                tables.latest_assessments(futures["assessments"].result()),
            ).sort_by(tables.PID)
            inputs = _Inputs(table)
            if d:
                inputs.events = _group(futures["device_events"].result().to_pylist())
                inputs.summaries = _group(futures["daily_summary"].result().to_pylist())
        return inputs

    def _read_plain(
        self,
        source: str,
        table: str,
        columns: Sequence[str] | None,
        ids: Sequence[int] | None,
        *,
        key: str = "patient_id",
        schema: str | None = None,
    ) -> pa.Table:
        """Rows of one input (only `columns`; only keys in `ids` when given), as plain columns.

        The scan gets a key range (cheap to bind, prunes files by their statistics) and the exact
        set is applied in Arrow: an `In` of thousands of literals costs pyiceberg more to bind than
        the scan itself.
        """
        lake_table = f"{(schema or self.sources.mysql_schema).lower()}__{table}"
        current = self.lake.current(source)
        if ids is not None and not ids:
            return pa.table({})
        row_filter: BooleanExpression | None = None
        if ids is not None:
            # pyiceberg's predicate classes construct through __new__, which mypy misreads.
            low = GreaterThanOrEqual(key, min(ids))  # type: ignore[call-arg,misc]
            high = LessThanOrEqual(key, max(ids))  # type: ignore[call-arg,misc]
            row_filter = And(low, high)
        available = current.load(lake_table)
        if available is None:
            return pa.table({})
        names = set(available.schema().column_names)
        wanted = [c for c in columns if c in names] if columns is not None else None
        rows = current.read(lake_table, columns=wanted, row_filter=row_filter)
        if ids is not None and rows.num_rows:
            keys = pc.cast(rows.column(key), pa.int64())
            rows = rows.filter(pc.is_in(keys, value_set=pa.array(ids, pa.int64())))
        return _plain_columns(rows) if rows.num_columns else pa.table({})


@dataclass
class _Inputs:
    """What one build needs: one row per patient (sorted by id), device rows grouped by patient."""

    table: pa.Table
    events: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    summaries: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


def _documents(inputs: _Inputs, start: int, length: int, version: int) -> list[Document]:
    """Documents of rows [start, start + length) of the inputs' table."""
    docs = []
    for row in inputs.table.slice(start, length).to_pylist():
        pid = row.pop(tables.PID)
        row["plans"] = row.get("plans") or ""
        row["plan_codes"] = row.get("plan_codes") or []
        row["plan_status"] = sorted(s for s in row.get("plan_status") or [] if s)
        row["diagnosis_codes"] = sorted(c for c in row.get("diagnosis_codes") or [] if c)
        for name, default in NO_CLAIMS.items():
            if row.get(name) is None:
                row[name] = default
        row |= _devices(inputs.events.get(pid, []), inputs.summaries.get(pid, []))
        docs.append(Document(str(pid), version, row))
    return docs


def _plain_columns(rows: pa.Table) -> pa.Table:
    """Columns cast in Arrow to what the document holds (ids int, money float, times ISO text,
    text in the indices' Unicode form): vectorised casts instead of a Python object per value."""
    columns = []
    for column in rows.columns:
        t = column.type
        if pa.types.is_decimal(t):
            column = pc.cast(column, pa.int64() if t.scale == 0 else pa.float64())
        elif pa.types.is_timestamp(t):
            # Arrow's %S carries the fraction; zoned columns are rendered in UTC.
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S" + ("Z" if t.tz else ""))
        elif pa.types.is_date(t):
            column = pc.cast(column, pa.string())
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            # One string type for the compute kernels, in the Unicode form queries and synonyms
            # are normalised to (connectors/opensearch/text.py).
            column = pc.utf8_normalize(pc.cast(column, pa.string()), form=NORMAL_FORM)
        columns.append(column)
    return pa.table(columns, names=rows.column_names)


def _ints(rows: list[dict[str, Any]], column: str) -> list[int]:
    return [int(r[column]) for r in rows]


def _group(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[int(row["patient_id"])].append(row)
    return out


def _devices(events: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Averages over the patient's last RECENT_DAYS days of events (relative to their newest)."""
    if not events and not summaries:
        return dict(NO_DEVICE_DATA)
    out: dict[str, Any] = {
        "steps_7d_avg": None,
        "sleep_minutes_7d_avg": None,
        "resting_pulse": None,
        "device_flags": [],
    }
    stamped = [(str(e.get("event_time") or ""), e) for e in events]
    if stamped:
        newest = max(t for t, _ in stamped)
        cutoff = _minus_days(newest, RECENT_DAYS)
        recent = [e for t, e in stamped if t >= cutoff]
        steps = [float(e["steps"]) for e in recent if e.get("type") == "steps" and e.get("steps") is not None]
        sleep = [
            float(e["sleep_minutes"])
            for e in recent
            if e.get("type") == "sleep" and e.get("sleep_minutes") is not None
        ]
        resting = [
            float(e["bpm"])
            for e in recent
            if e.get("type") == "pulse" and e.get("resting") and e.get("bpm") is not None
        ]
        out["steps_7d_avg"] = _mean(steps)
        out["sleep_minutes_7d_avg"] = _mean(sleep)
        out["resting_pulse"] = _mean(resting)
    days = sorted(summaries, key=lambda r: str(r.get("day") or ""))[-RECENT_DAYS:]
    out["device_flags"] = sorted({f for d in days for f in (d.get("flags") or [])})
    return out


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _minus_days(iso: str, days: int) -> str:
    try:
        instant = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return (instant - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)
