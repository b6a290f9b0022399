"""Operations on patients and the records that hang off them: assessments, surveys, preferences."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from pipelines.world import catalog
from pipelines.world.actions.base import DELETE, INSERT, UPDATE, ActionBase, Assignment, assign
from pipelines.world.rows import risk_band
from pipelines.world.stats import ChangeKind

# Tenant id used when the directory is empty (patients.tenant_id has no foreign key).
_SELF_PAY_TENANT = "self-pay"


class PatientActions(ActionBase):
    """Sign-ups, profile edits, erasure, check-ups, surveys and preferences."""

    def patients(self, cur: Any, kind: ChangeKind) -> None:
        """Sign-ups (sometimes with preferences), profile edits, and erasure of a whole patient."""
        if kind is DELETE and self.state.patients:
            self._erase_patient(cur, self._pick_patient())
        elif kind is UPDATE and self.state.patients:
            self._edit_patient(cur, self._pick_patient())
        else:
            self._sign_up(cur)

    def _sign_up(self, cur: Any) -> None:
        state, rng = self.state, self.rng
        tenant_id = state.tenants.choice(rng) if state.tenants else _SELF_PAY_TENANT
        row, locale = self.rows.patient(None, tenant_id, created_at=self.now, updated_at=self.now)
        row["email"] = self._free_email(row["email"], row["given_name"])
        patient_id = self._insert(cur, "patients", row)
        self._record("patients", INSERT, patient_id)
        state.add_patient(patient_id, tenant_id, locale, row["email"])
        if rng.random() < 0.5:
            self._insert(cur, "health_preferences", self.rows.preferences(patient_id, locale, now=self.now))
            self._record("health_preferences", INSERT, patient_id)
            state.set_preferences(patient_id, True)

    def _edit_patient(self, cur: Any, patient_id: int) -> None:
        rng, info = self.rng, self.state.patient_info[patient_id]
        locale = info.locale
        edit = rng.randrange(5)
        sets: list[Assignment]
        email: str | None = info.email
        if edit == 0:  # new contact details; either may be withdrawn
            name = rng.choice(locale.female_names + locale.male_names)
            email = self._free_email(self.rows.email(name), name) if rng.random() < 0.8 else None
            sets = [
                assign("email", email),
                assign("phone", self.rows.phone(locale) if rng.random() < 0.7 else None),
            ]
        elif edit == 1:  # marriage, divorce, correction
            sets = [assign("family_name", rng.choice(locale.family_names) if rng.random() < 0.9 else None)]
        elif edit == 2:  # moved to another country: zone changes too
            moved = rng.choice(catalog.LOCALES)
            sets = [
                assign("city", rng.choice(moved.cities)),
                assign("country", moved.country),
                assign("time_zone", moved.zone),
            ]
            info.locale = moved
        elif edit == 3:
            sets = [("marketing_opt_in", "1 - `marketing_opt_in`", ())]
        else:
            sets = [
                assign("birth_date", self.rows.birth_date()),
                assign("height_cm", rng.randrange(140, 205) if rng.random() < 0.7 else None),
                assign("wearable_serial", self.rows.wearable_serial()),
            ]
        if self._update(cur, "patients", [*sets, assign("updated_at", self._wall)], patient_id):
            self.state.set_email(patient_id, email)

    def _free_email(self, email: str | None, name: str) -> str | None:
        """``email``, or a new address for ``name`` if another patient has it (the column is UNIQUE).

        The same seed draws the same addresses, so a second run on the same world would repeat the
        first run's sign-ups' addresses without this check.
        """
        while self.state.email_taken(email):
            email = self.rows.email(name)
        return email

    def _erase_patient(self, cur: Any, patient_id: int) -> None:
        """Right to erasure: children first, in one transaction (FKs do not cascade; see mysql.sql)."""
        state = self.state
        info = state.patient_info[patient_id]
        claims, assessments, surveys = sorted(info.claims), sorted(info.assessments), sorted(info.surveys)
        plans = sorted(info.plans)
        self._delete_children(cur, "insurance_claims", patient_id, [(c,) for c in claims])
        self._delete_children(cur, "assessments", patient_id, [(a,) for a in assessments])
        self._delete_children(cur, "surveys", patient_id, [(s,) for s in surveys])
        self._delete_children(cur, "plan_enrollments", patient_id, [(patient_id, p) for p in plans])
        if info.has_preferences:
            self._delete(cur, "health_preferences", patient_id)
        self._delete(cur, "patients", patient_id)
        for claim_id in claims:
            state.remove_claim(claim_id)
        for assessment_id in assessments:
            state.remove_assessment(assessment_id)
        for survey_id in surveys:
            state.remove_survey(survey_id)
        for plan_id in plans:
            state.remove_enrollment(patient_id, plan_id)
        state.remove_patient(patient_id)

    # ------------------------------------------------------------------ assessments, surveys

    def assessments(self, cur: Any, kind: ChangeKind) -> None:
        """New check-ups (sometimes while travelling), amended notes and scores, removals."""
        state, rng = self.state, self.rng
        if kind is DELETE and state.assessments:
            assessment_id = state.assessments.choice(rng)
            self._delete(cur, "assessments", assessment_id)
            state.remove_assessment(assessment_id)
        elif kind is UPDATE and state.assessments:
            assessment_id = state.assessments.choice(rng)
            risk = Decimal(rng.randrange(0, 10_001)).scaleb(-4)
            band = risk_band(risk)
            note = rng.choice((*catalog.NOTE_SNIPPETS, None))
            self._update(
                cur,
                "assessments",
                [assign("notes", note), assign("risk_score", risk), assign("risk_band", band)],
                assessment_id,
            )
        elif state.patients:
            patient_id = self._pick_patient()
            zone_name = state.patient_info[patient_id].locale.zone
            if rng.random() < 0.1:
                zone_name = rng.choice(catalog.ZONES)
            row = self.rows.assessment(None, patient_id, zone_name, assessed_at=self.now)
            assessment_id = self._insert(cur, "assessments", row)
            self._record("assessments", INSERT, assessment_id)
            state.add_assessment(assessment_id, patient_id)
        else:
            self._sign_up(cur)

    def surveys(self, cur: Any, kind: ChangeKind) -> None:
        """Surveys sent, answered or edited (JSON_SET in SQL), and withdrawn."""
        state, rng = self.state, self.rng
        if kind is DELETE and state.surveys:
            survey_id = state.surveys.choice(rng)
            self._delete(cur, "surveys", survey_id)
            state.remove_survey(survey_id)
        elif kind is UPDATE and state.surveys:
            survey_id = state.surveys.choice(rng)
            if rng.random() < 0.75:
                nps, answers = self.rows.survey_answers()
                sets = [
                    ("submitted_at", "COALESCE(`submitted_at`, %s)", (self._wall,)),
                    assign("nps", nps),
                    assign("answers", answers),
                    assign("duration_seconds", rng.randrange(20, 1800)),
                ]
            else:
                # Edit inside the document, as an application using MySQL's JSON functions would;
                # the edit counter makes every such update change the row.
                sets = [
                    (
                        "answers",
                        "JSON_SET(`answers`, '$.comment', %s, '$.edited', JSON_EXTRACT('true', '$'),"
                        " '$.edits', COALESCE(JSON_EXTRACT(`answers`, '$.edits'), 0) + 1)",
                        (rng.choice(catalog.SURVEY_COMMENTS),),
                    )
                ]
            self._update(cur, "surveys", sets, survey_id)
        elif state.patients:
            patient_id = self._pick_patient()
            row = self.rows.survey(
                None, patient_id, sent_at=self.now, submitted_at=self.now if rng.random() < 0.4 else None
            )
            survey_id = self._insert(cur, "surveys", row)
            self._record("surveys", INSERT, survey_id)
            state.add_survey(survey_id, patient_id)
        else:
            self._sign_up(cur)

    def health_preferences(self, cur: Any, kind: ChangeKind) -> None:
        """Preferences created, edited in place (JSON functions) and reset."""
        state, rng = self.state, self.rng
        if kind is DELETE and state.with_preferences:
            patient_id = state.with_preferences.choice(rng)
            self._delete(cur, "health_preferences", patient_id)
            state.set_preferences(patient_id, False)
        elif kind is INSERT and state.without_preferences:
            patient_id = state.without_preferences.choice(rng)
            locale = state.patient_info[patient_id].locale
            self._insert(cur, "health_preferences", self.rows.preferences(patient_id, locale, now=self.now))
            self._record("health_preferences", INSERT, patient_id)
            state.set_preferences(patient_id, True)
        elif state.with_preferences:
            patient_id = state.with_preferences.choice(rng)
            self._update(
                cur,
                "health_preferences",
                [*self._preference_edit(), assign("updated_at", self._wall)],
                patient_id,
            )
        elif state.without_preferences:
            self.health_preferences(cur, INSERT)
        else:
            self._sign_up(cur)

    def _preference_edit(self) -> list[Assignment]:
        rng = self.rng
        edit = rng.randrange(6)
        if edit == 0:
            flag = "true" if rng.random() < 0.5 else "false"
            return [
                (
                    "preferences",
                    "JSON_SET(`preferences`, '$.notifications.push', JSON_EXTRACT(%s, '$'))",
                    (flag,),
                )
            ]
        if edit == 1:
            return [
                (
                    "preferences",
                    "JSON_ARRAY_APPEND(`preferences`, '$.goals', %s)",
                    (rng.choice(catalog.GOALS),),
                )
            ]
        if edit == 2:
            return [("preferences", "JSON_REMOVE(`preferences`, '$.wearables')", ())]
        if edit == 3:
            note = rng.choice(("Bravo! 🎉", "Dobranoc 🌙", "少吃糖", "Sov godt", None))
            return [("preferences", "JSON_SET(`preferences`, '$.coach_note', %s)", (note,))]
        if edit == 4:
            return [
                assign("diet", rng.choice(catalog.DIETS)),
                assign("contact_channel", rng.choice(catalog.CONTACT_CHANNELS)),
            ]
        quiet = rng.random() < 0.5
        return [
            assign("quiet_hours_start", dt.time(22, 30) if quiet else None),
            assign("quiet_hours_end", dt.time(6, 45) if quiet else None),
            assign("reminder_days", rng.getrandbits(7)),
            assign("daily_water_ml", rng.randrange(1000, 4000, 250) if rng.random() < 0.7 else None),
        ]
