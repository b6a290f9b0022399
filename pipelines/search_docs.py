"""The customer/patient 360° document, built from the lake's current-state tables.

One document per patient: profile, preferences, plans, the latest assessment, a claims summary
and device aggregates (steps, sleep and resting pulse over the patient's last 7 days of device
events, flags from the daily summaries). Built for a set of patient ids at a time, reading only
those rows (filters pushed down to the Iceberg scans), so incremental indexing stays cheap.

The document's external version is the sum of the applied commit seqs of every table it is made
of: each merge moves one of them forward, so a document built from newer lake state always has a
higher version, and one rebuilt from the same state has the same version — OpenSearch refuses a
late or replayed write of an older document (see connectors/opensearch/bulk.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
from pyiceberg.expressions import In

from connectors.lake.lake import Lake
from connectors.opensearch.bulk import Document

RECENT_DAYS = 7
OPEN_CLAIM_STATUSES = frozenset({"submitted", "approved"})


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

    def state_version(self) -> tuple[int, dict[str, int]]:
        """The documents' version now, and the applied commit seq per input table."""
        seqs = {}
        for source, table in self.sources.tables():
            current = self.lake.current(source)
            seqs[f"{source}.{table}"] = current.applied_seq(current.load(table))
        return sum(seqs.values()), seqs

    def all_patient_ids(self) -> list[int]:
        rows = self._read(self.sources.mysql, "patients", ["patient_id"], None)
        return sorted(_ints(rows, "patient_id"))

    def build(self, patient_ids: Iterable[int]) -> list[Document]:
        """Documents of `patient_ids` (a delete for each id without a patient row)."""
        ids = sorted(set(patient_ids))
        if not ids:
            return []
        version, _ = self.state_version()
        m = self.sources.mysql
        patients = {int(r["patient_id"]): r for r in self._read(m, "patients", None, ids).to_pylist()}
        prefs = {int(r["patient_id"]): r for r in self._read(m, "health_preferences", None, ids).to_pylist()}
        enrollments = _group(self._read(m, "plan_enrollments", None, ids).to_pylist())
        plan_ids = sorted({int(e["plan_id"]) for rows in enrollments.values() for e in rows})
        plans = {
            int(r["plan_id"]): r
            for r in self._read(m, "fitness_plans", None, plan_ids, key="plan_id").to_pylist()
        } if plan_ids else {}  # fmt: skip
        claims = _group(self._read(m, "insurance_claims", None, ids).to_pylist())
        assessments = _group(self._read(m, "assessments", None, ids).to_pylist())
        events: dict[int, list[dict[str, Any]]] = {}
        summaries: dict[int, list[dict[str, Any]]] = {}
        if self.sources.devices:
            events = _group(
                self._read(self.sources.devices, "device_events", None, ids, schema="dynamodb").to_pylist()
            )
            summaries = _group(
                self._read(self.sources.devices, "daily_summary", None, ids, schema="dynamodb").to_pylist()
            )
        docs = []
        for pid in ids:
            patient = patients.get(pid)
            if patient is None:
                docs.append(Document(str(pid), version, None))
                continue
            source = _profile(patient)
            source |= _preferences(prefs.get(pid))
            source |= _plans(enrollments.get(pid, []), plans)
            source |= _claims(claims.get(pid, []))
            source |= _assessment(assessments.get(pid, []))
            source |= _devices(events.get(pid, []), summaries.get(pid, []))
            docs.append(Document(str(pid), version, source))
        return docs

    def _read(
        self,
        source: str,
        table: str,
        columns: Sequence[str] | None,
        ids: Sequence[int] | None,
        *,
        key: str = "patient_id",
        schema: str | None = None,
    ) -> pa.Table:
        lake_table = f"{(schema or self.sources.mysql_schema).lower()}__{table}"
        row_filter = In(key, tuple(ids)) if ids is not None else None  # type: ignore[call-arg,misc]
        return self.lake.current(source).read(lake_table, columns=columns, row_filter=row_filter)


def _ints(rows: pa.Table, column: str) -> list[int]:
    return [int(v) for v in rows.column(column).to_pylist()] if rows.num_rows else []


def _group(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[int(row["patient_id"])].append(row)
    return out


def _profile(p: Mapping[str, Any]) -> dict[str, Any]:
    name = " ".join(x for x in (p.get("given_name"), p.get("family_name")) if x)
    return {
        "patient_id": str(int(p["patient_id"])),
        "tenant_id": p.get("tenant_id"),
        "name": name,
        "email": p.get("email"),
        "phone": p.get("phone"),
        "city": p.get("city"),
        "country": p.get("country"),
        "sex": p.get("sex"),
        "birth_date": _iso(p.get("birth_date")),
        "marketing_opt_in": bool(p.get("marketing_opt_in")),
        "updated_at": _iso(p.get("updated_at")),
    }


def _preferences(row: Mapping[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {}
    words: list[str] = []
    try:
        _collect_words(json.loads(row.get("preferences") or "{}"), words)
    except ValueError:
        words = [str(row.get("preferences"))]
    return {
        "preferences": " ".join(words),
        "diet": row.get("diet"),
        "language": row.get("language"),
        "contact_channel": row.get("contact_channel"),
    }


def _collect_words(value: Any, out: list[str]) -> None:
    """The words of a JSON preferences document: keys' string values, flattened."""
    if isinstance(value, dict):
        for v in value.values():
            _collect_words(v, out)
    elif isinstance(value, list):
        for v in value:
            _collect_words(v, out)
    elif isinstance(value, str):
        out.append(value)


def _plans(enrollments: list[dict[str, Any]], plans: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    names, codes, statuses = [], [], []
    for e in sorted(enrollments, key=lambda r: int(r["plan_id"])):
        plan = plans.get(int(e["plan_id"]))
        if plan is None:
            continue
        names.append(f"{plan.get('name')} {plan.get('description') or ''}".strip())
        codes.append(plan.get("code"))
        statuses.append(e.get("status"))
    return {"plans": " | ".join(names), "plan_codes": codes, "plan_status": sorted(set(statuses))}


def _claims(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = sum((Decimal(r["amount"]) for r in rows if r.get("amount") is not None), Decimal(0))
    dates = [r["service_date"] for r in rows if r.get("service_date") is not None]
    return {
        "claims_count": len(rows),
        "claims_open": sum(1 for r in rows if r.get("status") in OPEN_CLAIM_STATUSES),
        "claims_total": float(total),
        "last_claim_date": _iso(max(dates)) if dates else None,
        "diagnosis_codes": sorted({r["diagnosis_code"] for r in rows if r.get("diagnosis_code")}),
    }


def _assessment(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {}
    latest = max(rows, key=lambda r: r["assessed_at"])
    return {"risk_band": latest.get("risk_band"), "notes": latest.get("notes")}


def _devices(events: list[dict[str, Any]], summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Averages over the patient's last RECENT_DAYS days of events (relative to their newest)."""
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
