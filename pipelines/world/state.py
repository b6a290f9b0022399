"""The workload's picture of which rows exist, so it can pick rows to change without querying.

The picture is loaded from the databases (ordered by key, so the same data gives the same picture)
and kept up to date by the workload's own operations. Another writer changing the world makes it
stale; a stale pick then changes zero rows and the workload reloads.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pipelines.world import catalog
from pipelines.world.catalog import Locale

K = TypeVar("K", bound=Hashable)

_LOCALE_BY_ZONE = {loc.zone: loc for loc in catalog.LOCALES}
# Synonym rows the workload owns (may update and delete), by base term; the seeded rows stay as
# they are. Case-folded: the table's collation compares case-insensitively.
WORKLOAD_SYNONYMS = {base.casefold(): (base, s1, s2) for base, s1, s2 in catalog.EXTRA_SYNONYMS}


class IdPool(Generic[K]):
    """A set with O(1) add, remove and uniform random choice, in a reproducible order."""

    def __init__(self, items: list[K] | None = None) -> None:
        self._items: list[K] = []
        self._index: dict[K, int] = {}
        for item in items or ():
            self.add(item)

    def add(self, item: K) -> None:
        """Add ``item`` (no-op if present)."""
        if item not in self._index:
            self._index[item] = len(self._items)
            self._items.append(item)

    def remove(self, item: K) -> None:
        """Remove ``item`` by moving the last item into its slot."""
        pos = self._index.pop(item)
        last = self._items.pop()
        if pos < len(self._items):
            self._items[pos] = last
            self._index[last] = pos

    def discard(self, item: K) -> None:
        """Remove ``item`` if present."""
        if item in self._index:
            self.remove(item)

    def choice(self, rng: random.Random) -> K:
        """A uniformly random item (the pool must not be empty)."""
        return self._items[rng.randrange(len(self._items))]

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))


@dataclass
class PatientInfo:
    """What the workload needs to know about a patient and the rows that hang off it."""

    tenant_id: str
    locale: Locale
    email: str | None = None
    has_preferences: bool = False
    assessments: set[int] = field(default_factory=set)
    surveys: set[int] = field(default_factory=set)
    claims: set[int] = field(default_factory=set)
    plans: set[int] = field(default_factory=set)


@dataclass
class ClaimInfo:
    """A claim's owner, provider and status."""

    patient_id: int
    provider_id: int
    status: str


@dataclass
class WorldState:
    """Every key of every world table, plus the references that decide what may be deleted."""

    patients: IdPool[int] = field(default_factory=IdPool)
    patient_info: dict[int, PatientInfo] = field(default_factory=dict)
    without_preferences: IdPool[int] = field(default_factory=IdPool)
    with_preferences: IdPool[int] = field(default_factory=IdPool)
    enrollments: IdPool[tuple[int, int]] = field(default_factory=IdPool)
    assessments: IdPool[int] = field(default_factory=IdPool)
    assessment_patient: dict[int, int] = field(default_factory=dict)
    surveys: IdPool[int] = field(default_factory=IdPool)
    survey_patient: dict[int, int] = field(default_factory=dict)
    claims: IdPool[int] = field(default_factory=IdPool)
    claim_info: dict[int, ClaimInfo] = field(default_factory=dict)
    next_claim_id: int = catalog.CLAIM_ID_BASE + 1
    plans: IdPool[int] = field(default_factory=IdPool)
    plan_refs: Counter[int] = field(default_factory=Counter)
    plan_codes: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    # The workload's own synonym rows (SynID -> base term); seeded rows are not in it.
    synonyms: IdPool[int] = field(default_factory=IdPool)
    synonym_base: dict[int, str] = field(default_factory=dict)
    tenants: IdPool[str] = field(default_factory=IdPool)
    tenant_refs: Counter[str] = field(default_factory=Counter)
    providers: IdPool[int] = field(default_factory=IdPool)
    provider_tenant: dict[int, str] = field(default_factory=dict)
    provider_refs: Counter[int] = field(default_factory=Counter)
    npis: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ bookkeeping

    def add_patient(self, patient_id: int, tenant_id: str, locale: Locale, email: str | None = None) -> None:
        """Record a new patient (without preferences yet)."""
        self.patients.add(patient_id)
        self.patient_info[patient_id] = PatientInfo(tenant_id, locale)
        self.set_email(patient_id, email)
        self.without_preferences.add(patient_id)
        self.tenant_refs[tenant_id] += 1

    def remove_patient(self, patient_id: int) -> None:
        """Forget a patient whose children are already forgotten."""
        self.set_email(patient_id, None)
        info = self.patient_info.pop(patient_id)
        self.patients.remove(patient_id)
        self.without_preferences.discard(patient_id)
        self.with_preferences.discard(patient_id)
        self.tenant_refs[info.tenant_id] -= 1

    def set_email(self, patient_id: int, email: str | None) -> None:
        """Record a patient's e-mail address (unique in the table; None: withdrawn)."""
        info = self.patient_info[patient_id]
        if info.email is not None:
            self.emails.discard(info.email.casefold())
        info.email = email
        if email is not None:
            self.emails.add(email.casefold())

    def email_taken(self, email: str | None) -> bool:
        """Whether another patient already has ``email`` (compared as the table's collation does)."""
        return email is not None and email.casefold() in self.emails

    def add_synonym(self, syn_id: int, base: str | None) -> None:
        """Record a synonym row if it is one of the workload's own (see WORKLOAD_SYNONYMS)."""
        if base is not None and base.casefold() in WORKLOAD_SYNONYMS:
            self.synonyms.add(syn_id)
            self.synonym_base[syn_id] = base

    def remove_synonym(self, syn_id: int) -> None:
        """Forget one of the workload's synonym rows."""
        self.synonyms.remove(syn_id)
        del self.synonym_base[syn_id]

    def set_preferences(self, patient_id: int, present: bool) -> None:
        """Record that a patient's preferences row was inserted (True) or deleted (False)."""
        self.patient_info[patient_id].has_preferences = present
        (self.with_preferences if present else self.without_preferences).add(patient_id)
        (self.without_preferences if present else self.with_preferences).discard(patient_id)

    def add_enrollment(self, patient_id: int, plan_id: int) -> None:
        """Record an enrollment."""
        self.enrollments.add((patient_id, plan_id))
        self.patient_info[patient_id].plans.add(plan_id)
        self.plan_refs[plan_id] += 1

    def remove_enrollment(self, patient_id: int, plan_id: int) -> None:
        """Forget an enrollment."""
        self.enrollments.remove((patient_id, plan_id))
        self.patient_info[patient_id].plans.discard(plan_id)
        self.plan_refs[plan_id] -= 1

    def add_assessment(self, assessment_id: int, patient_id: int) -> None:
        """Record an assessment."""
        self.assessments.add(assessment_id)
        self.assessment_patient[assessment_id] = patient_id
        self.patient_info[patient_id].assessments.add(assessment_id)

    def remove_assessment(self, assessment_id: int) -> None:
        """Forget an assessment."""
        self.assessments.remove(assessment_id)
        self.patient_info[self.assessment_patient.pop(assessment_id)].assessments.discard(assessment_id)

    def add_survey(self, survey_id: int, patient_id: int) -> None:
        """Record a survey."""
        self.surveys.add(survey_id)
        self.survey_patient[survey_id] = patient_id
        self.patient_info[patient_id].surveys.add(survey_id)

    def remove_survey(self, survey_id: int) -> None:
        """Forget a survey."""
        self.surveys.remove(survey_id)
        self.patient_info[self.survey_patient.pop(survey_id)].surveys.discard(survey_id)

    def add_claim(self, claim_id: int, patient_id: int, provider_id: int, status: str) -> None:
        """Record a claim and the provider reference it holds."""
        self.claims.add(claim_id)
        self.claim_info[claim_id] = ClaimInfo(patient_id, provider_id, status)
        self.patient_info[patient_id].claims.add(claim_id)
        self.provider_refs[provider_id] += 1
        self.next_claim_id = max(self.next_claim_id, claim_id + 1)

    def remove_claim(self, claim_id: int) -> None:
        """Forget a claim."""
        self.claims.remove(claim_id)
        info = self.claim_info.pop(claim_id)
        self.patient_info[info.patient_id].claims.discard(claim_id)
        self.provider_refs[info.provider_id] -= 1

    def add_provider(self, provider_id: int, tenant_id: str, npi: str | None) -> None:
        """Record a provider."""
        self.providers.add(provider_id)
        self.provider_tenant[provider_id] = tenant_id
        self.tenant_refs[tenant_id] += 1
        if npi:
            self.npis.add(npi)

    def remove_provider(self, provider_id: int) -> None:
        """Forget a provider (its NPI stays reserved: harmless, and keeps picks simple)."""
        self.providers.remove(provider_id)
        self.tenant_refs[self.provider_tenant.pop(provider_id)] -= 1

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, mysql_conn: Any, pg_conn: Any) -> WorldState:
        """Read every key from both databases (ends the read transactions it opens)."""
        state = cls()
        with pg_conn.cursor() as cur:
            # COLLATE "C": an order that does not depend on the database's locale.
            cur.execute('SELECT tenant_id FROM tenant_metadata ORDER BY tenant_id COLLATE "C"')
            for (tenant_id,) in cur.fetchall():
                state.tenants.add(tenant_id)
            cur.execute("SELECT provider_id, tenant_id, npi FROM care_providers ORDER BY provider_id")
            for provider_id, tenant_id, npi in cur.fetchall():
                state.add_provider(provider_id, tenant_id, npi)
        pg_conn.rollback()
        with mysql_conn.cursor() as cur:
            cur.execute("SELECT plan_id, code FROM fitness_plans ORDER BY plan_id")
            for plan_id, code in cur.fetchall():
                state.plans.add(plan_id)
                state.plan_codes.add(code.casefold())
            cur.execute("SELECT SynID, Base_Term FROM SynonymsTable ORDER BY SynID")
            for syn_id, base in cur.fetchall():
                state.add_synonym(syn_id, base)
            cur.execute("SELECT patient_id, tenant_id, time_zone, email FROM patients ORDER BY patient_id")
            for patient_id, tenant_id, zone_name, email in cur.fetchall():
                locale = _LOCALE_BY_ZONE.get(zone_name, catalog.LOCALES[0])
                state.add_patient(patient_id, tenant_id, locale, email)
            cur.execute("SELECT patient_id FROM health_preferences ORDER BY patient_id")
            for (patient_id,) in cur.fetchall():
                state.set_preferences(patient_id, True)
            cur.execute("SELECT patient_id, plan_id FROM plan_enrollments ORDER BY patient_id, plan_id")
            for patient_id, plan_id in cur.fetchall():
                state.add_enrollment(patient_id, plan_id)
            cur.execute("SELECT assessment_id, patient_id FROM assessments ORDER BY assessment_id")
            for assessment_id, patient_id in cur.fetchall():
                state.add_assessment(assessment_id, patient_id)
            cur.execute("SELECT survey_id, patient_id FROM surveys ORDER BY survey_id")
            for survey_id, patient_id in cur.fetchall():
                state.add_survey(survey_id, patient_id)
            cur.execute(
                "SELECT claim_id, patient_id, provider_id, status FROM insurance_claims ORDER BY claim_id"
            )
            for claim_id, patient_id, provider_id, status in cur.fetchall():
                state.add_claim(claim_id, patient_id, provider_id, status)
        mysql_conn.rollback()
        return state
