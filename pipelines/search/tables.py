"""The 360° document's parts as Arrow tables, one row per patient, aligned by patient id.

Building a document per patient in Python cost more than indexing it; here each part is computed
per column (names joined, plans listed, claims aggregated, the latest assessment picked) and the
parts are aligned on the patients' ids with `index_in` + `take` — a left join that, unlike Acero's
hash join, carries list columns. Only the preferences' words and the device aggregates stay in
Python (see `pipelines/search/docs.py`).
"""

from __future__ import annotations

import contextlib
import json
import re

import pyarrow as pa
import pyarrow.compute as pc

from connectors.opensearch.text import normalize_text

PID = "pid"
OPEN_CLAIM_STATUSES = ("approved", "submitted")


def column(table: pa.Table, name: str, type_: pa.DataType | None = None) -> pa.ChunkedArray:
    """A column, or nulls when the table does not have it (yet)."""
    if name in table.column_names:
        return table.column(name)
    return pa.chunked_array([pa.nulls(table.num_rows, type_ or pa.string())])


def profiles(patients: pa.Table) -> pa.Table:
    """Profile fields (ids int64 in `pid`, times already ISO text)."""
    name = pc.binary_join_element_wise(
        column(patients, "given_name"), column(patients, "family_name"), " ", null_handling="skip"
    )
    return pa.table(
        {
            PID: column(patients, "patient_id"),
            "patient_id": pc.cast(column(patients, "patient_id"), pa.string()),
            "tenant_id": column(patients, "tenant_id"),
            "name": name,
            "email": column(patients, "email"),
            "phone": column(patients, "phone"),
            "city": column(patients, "city"),
            "country": column(patients, "country"),
            "sex": column(patients, "sex"),
            "birth_date": column(patients, "birth_date"),
            "marketing_opt_in": pc.fill_null(
                pc.cast(column(patients, "marketing_opt_in", pa.int8()), pa.bool_()), False
            ),
            "updated_at": column(patients, "updated_at"),
        }
    )


def preferences(prefs: pa.Table) -> pa.Table:
    words = [json_words(t) if t else None for t in column(prefs, "preferences").to_pylist()]
    return pa.table(
        {
            PID: column(prefs, "patient_id"),
            "preferences": pa.array(words, pa.string()),
            "diet": column(prefs, "diet"),
            "language": column(prefs, "language"),
            "contact_channel": column(prefs, "contact_channel"),
        }
    )


def plans(enrollments: pa.Table, catalogue: pa.Table) -> pa.Table:
    """Per patient: plan names and descriptions (by plan id), codes, and enrollment statuses."""
    if not enrollments.num_rows or not catalogue.num_rows:
        return pa.table({PID: pa.array([], pa.int64())})
    at = pc.index_in(column(enrollments, "plan_id"), value_set=column(catalogue, "plan_id"))
    known = pc.is_valid(at)
    enrolled = enrollments.filter(known)
    plan = catalogue.take(pc.drop_null(at))
    label = pc.binary_join_element_wise(
        column(plan, "name"), column(plan, "description"), " ", null_handling="skip"
    )
    rows = pa.table(
        {
            PID: column(enrolled, "patient_id"),
            "plan_id": column(enrolled, "plan_id"),
            "label": label,
            "code": column(plan, "code"),
            "status": column(enrolled, "status"),
        }
    ).sort_by([(PID, "ascending"), ("plan_id", "ascending")])
    grouped = rows.group_by(PID, use_threads=False).aggregate(
        [("label", "list"), ("code", "list"), ("status", "distinct")]
    )
    return pa.table(
        {
            PID: grouped[PID],
            "plans": pc.binary_join(grouped["label_list"], " | "),
            "plan_codes": grouped["code_list"],
            "plan_status": grouped["status_distinct"],
        }
    )


def claims(rows: pa.Table) -> pa.Table:
    """Per patient: claim count, open claims, total, last service date, diagnosis codes."""
    if not rows.num_rows:
        return pa.table({PID: pa.array([], pa.int64())})
    opened = pc.cast(pc.is_in(column(rows, "status"), value_set=pa.array(OPEN_CLAIM_STATUSES)), pa.int64())
    table = pa.table(
        {
            PID: column(rows, "patient_id"),
            "open": opened,
            "amount": column(rows, "amount", pa.float64()),
            "service_date": column(rows, "service_date"),
            "diagnosis_code": column(rows, "diagnosis_code"),
        }
    )
    grouped = table.group_by(PID).aggregate(
        [
            (PID, "count"),
            ("open", "sum"),
            ("amount", "sum"),
            ("service_date", "max"),
            ("diagnosis_code", "distinct"),
        ]
    )
    return pa.table(
        {
            PID: grouped[PID],
            "claims_count": grouped[f"{PID}_count"],
            "claims_open": grouped["open_sum"],
            "claims_total": pc.round(pc.fill_null(grouped["amount_sum"], 0.0), 2),
            "last_claim_date": grouped["service_date_max"],
            "diagnosis_codes": grouped["diagnosis_code_distinct"],
        }
    )


def latest_assessments(rows: pa.Table) -> pa.Table:
    """Per patient: risk band and notes of the newest assessment (notes may be null)."""
    if not rows.num_rows:
        return pa.table({PID: pa.array([], pa.int64())})
    ordered = pa.table(
        {
            PID: column(rows, "patient_id"),
            "assessed_at": column(rows, "assessed_at"),
            "risk_band": column(rows, "risk_band"),
            "notes": column(rows, "notes"),
        }
    ).sort_by([(PID, "ascending"), ("assessed_at", "ascending")])
    keep_nulls = pc.ScalarAggregateOptions(skip_nulls=False)
    grouped = ordered.group_by(PID, use_threads=False).aggregate(
        [("risk_band", "last", keep_nulls), ("notes", "last", keep_nulls)]
    )
    return pa.table(
        {PID: grouped[PID], "risk_band": grouped["risk_band_last"], "notes": grouped["notes_last"]}
    )


def align(base: pa.Table, *parts: pa.Table) -> pa.Table:
    """`base` with every part's columns appended, matched on `pid` (a left join; one row per pid)."""
    out = base
    for part in parts:
        if part.num_columns <= 1:
            continue
        at = pc.index_in(base[PID], value_set=part[PID])
        taken = part.take(at)
        for name in part.column_names:
            if name != PID:
                out = out.append_column(name, taken[name])
    return out


# Every JSON string token, in order, and whether a ':' follows it (then it is a key). Matching all
# strings keeps the scan aligned on string boundaries: outside strings JSON has no quotes.
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:)?')


def json_words(text: str) -> str:
    """The string values of a JSON document, space-separated (for full-text search).

    A regular expression over the text instead of parsing and walking the document: a third of
    the cost of building a document went into that walk (measured on 10k documents).
    """
    words = [raw for raw, key in _JSON_STRING.findall(text) if not key and raw]
    for i, raw in enumerate(words):
        if "\\" in raw:
            with contextlib.suppress(ValueError):  # a broken escape stays as it is written
                # An escape can spell a decomposed accent ("e\\u0301"): normalise what it decodes to.
                words[i] = normalize_text(json.loads(f'"{raw}"'))
    return " ".join(words)
