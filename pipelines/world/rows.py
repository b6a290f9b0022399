"""Row generators for every table of the world, shared by the seeder and the workload.

Each method draws from the ``random.Random`` it was given and returns a dict of column values in
the Python types the drivers take: ``Decimal`` for money, naive UTC ``datetime`` for MySQL
DATETIME/TIMESTAMP (the writers use session time_zone '+00:00'), aware ``datetime`` for PostgreSQL
timestamptz, JSON as text for MySQL. Ids are passed in, so the same generator serves explicit ids
(seeding) and AUTO_INCREMENT/identity ids (workload, where ``None`` leaves the column out).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import unicodedata
import uuid
from decimal import Decimal
from typing import Any

from pipelines.world import catalog
from pipelines.world.catalog import Locale, PlanSpec
from pipelines.world.timeutil import fold_windows, local_to_utc, utc_wall, zone

Row = dict[str, Any]

_SEXES = ("female", "male", "intersex", "unknown")
_SEX_WEIGHTS = (48, 48, 1, 3)
_SPECIAL_BIRTH_DATES = (
    dt.date(2000, 2, 29),
    dt.date(1901, 12, 14),
    dt.date(1970, 1, 1),
    dt.date(1999, 12, 31),
)
_MAX_U64 = 2**64 - 1
_MAX_AMOUNT = Decimal("9999999999.99")  # DECIMAL(12,2) upper bound


def json_text(value: Any) -> str:
    """JSON text as the application writes it: UTF-8 characters kept, not \\u-escaped."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def money(rng: random.Random, low_cents: int, high_cents: int) -> Decimal:
    """A random amount with exactly two decimal places."""
    return Decimal(rng.randrange(low_cents, high_cents)).scaleb(-2)


# Letters NFKD does not decompose into a base letter plus a combining mark.
_TRANSLITERATION = str.maketrans(
    {"ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae", "ł": "l", "Ł": "L", "ß": "ss", "đ": "d"}
)


def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters of ``text`` with accents folded away ('' for CJK or Arabic)."""
    folded = (
        unicodedata.normalize("NFKD", text.translate(_TRANSLITERATION)).encode("ascii", "ignore").decode()
    )
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def risk_band(risk: Decimal) -> str:
    """The assessments.risk_band of a 0..1 risk score."""
    if risk < Decimal("0.25"):
        return "low"
    if risk < Decimal("0.6"):
        return "moderate"
    return "high" if risk < Decimal("0.9") else "critical"


def between(rng: random.Random, start: dt.datetime, end: dt.datetime) -> dt.datetime:
    """A random instant in [start, end) with microsecond precision."""
    span = max(int((end - start) / dt.timedelta(microseconds=1)), 1)
    return start + dt.timedelta(microseconds=rng.randrange(span))


class RowFactory:
    """Makes plausible rows for every table, deterministically from one random generator."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # ------------------------------------------------------------------ tenants database

    def tenant(
        self,
        tenant_id: str,
        *,
        status: str,
        created_at: dt.datetime,
        now: dt.datetime,
        large_settings: bool | None = None,
    ) -> Row:
        """A tenant_metadata row; one in five (or as ``large_settings`` says) has a TOASTed settings document."""
        rng = self.rng
        word = tenant_id.rsplit("-", 1)[0]
        name = f"{word.capitalize()} {rng.choice(catalog.TENANT_SUFFIXES)}"
        locale = rng.choice(catalog.LOCALES)
        branding: dict[str, Any] = {"primary_color": f"#{rng.getrandbits(24):06x}"}
        large = rng.random() < 0.2
        if large if large_settings is None else large_settings:
            # Random bytes do not compress, so PostgreSQL moves this value out of line (TOAST).
            branding["logo_png_base64"] = base64.b64encode(rng.randbytes(4500)).decode()
        settings = {
            "branding": branding,
            "features": {"sso": rng.random() < 0.5, "claims": rng.random() < 0.8, "beta": None},
            "locale": locale.language,
            "retention_days": rng.choice((30, 365, 2555)),
            "welcome_text": f"Velkommen — welcome — 欢迎 to {name}",
        }
        return {
            "tenant_id": tenant_id,
            "tenant_uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "email": f"admin+{tenant_id}@{ascii_slug(word) or 'tenant'}.example.com",
            "display_name": name,
            "status": status,
            "tier": rng.choice(catalog.TENANT_TIERS),
            "region": rng.choice(catalog.TENANT_REGIONS),
            "seats": rng.randrange(0, 5000),
            "credit_balance": Decimal(rng.randrange(0, 10**15)).scaleb(-10)
            + Decimal(rng.choice((0, 10**27, 10**26))),
            "trial_ends_on": (created_at + dt.timedelta(days=30)).date() if status == "trial" else None,
            "settings": json_text(settings),
            "api_key_hash": hashlib.sha256(rng.randbytes(16)).digest() if rng.random() < 0.7 else None,
            "created_at": created_at,
            "updated_at": now,
        }

    def provider(self, provider_id: int | None, tenant_id: str, *, npi: str | None, now: dt.datetime) -> Row:
        """A care_providers row (``provider_id=None`` lets the identity column choose)."""
        rng = self.rng
        locale = rng.choice(catalog.LOCALES)
        given = rng.choice(locale.female_names + locale.male_names)
        family = rng.choice(locale.family_names)
        prefix = rng.choice(catalog.PROVIDER_PREFIXES)
        row: Row = {
            "tenant_id": tenant_id,
            "name": f"{prefix} {given} {family}",
            "specialty": rng.choice(catalog.SPECIALTIES),
            "npi": npi if locale.country == "US" or rng.random() < 0.5 else None,
            "city": rng.choice(locale.cities) if rng.random() < 0.9 else None,
            "country": locale.country,
            "accepting_patients": rng.random() < 0.7,
            "rating": money(rng, 100, 501) if rng.random() < 0.8 else None,
            "consultation_fee": money(rng, 0, 60_000) if rng.random() < 0.9 else None,
            "languages": sorted(rng.sample(catalog.PROVIDER_LANGUAGES, rng.randrange(0, 4))),
            "next_available": dt.timedelta(days=rng.randrange(0, 60), hours=rng.randrange(24))
            if rng.random() < 0.7
            else None,
            "updated_at": now,
        }
        if provider_id is not None:
            row = {"provider_id": provider_id, **row}
        return row

    # ------------------------------------------------------------------ health database

    def plan(self, spec: PlanSpec, *, plan_id: int | None, now: dt.datetime) -> Row:
        """A fitness_plans row from a catalogue entry."""
        row: Row = {
            "code": spec.code,
            "name": spec.name,
            "description": spec.description,
            "monthly_fee": spec.monthly_fee,
            "currency": spec.currency,
            "target_daily_steps": spec.target_daily_steps,
            "target_sleep_minutes": spec.target_sleep_minutes,
            "intensity": spec.intensity,
            "is_active": int(spec.is_active),
            "launched_on": spec.launched_on,
            "updated_at": utc_wall(now),
        }
        return row if plan_id is None else {"plan_id": plan_id, **row}

    def new_plan(self, code: str, *, now: dt.datetime) -> Row:
        """A plan the workload launches (``code`` must be unique)."""
        rng = self.rng
        spec = PlanSpec(
            code=code,
            name=f"{rng.choice(('Spring', 'Été', 'Vinter', '夏季', 'Zimowy'))} Challenge {code[-4:]}",
            description=rng.choice((None, "Limited-time challenge.", "Défi de 30 jours 🏃")),
            monthly_fee=money(rng, 0, 20_000),
            currency=rng.choice(("USD", "EUR", "DKK")),
            target_daily_steps=rng.randrange(3_000, 25_000),
            target_sleep_minutes=rng.randrange(360, 600),
            intensity=rng.choice(("gentle", "moderate", "vigorous")),
            is_active=True,
            launched_on=now.date(),
        )
        return self.plan(spec, plan_id=None, now=now)

    def patient(
        self, patient_id: int | None, tenant_id: str, *, created_at: dt.datetime, updated_at: dt.datetime
    ) -> tuple[Row, Locale]:
        """A patients row and the locale it was drawn from (children use its zone)."""
        rng = self.rng
        locale = rng.choice(catalog.LOCALES)
        sex = rng.choices(_SEXES, _SEX_WEIGHTS)[0]
        if sex == "female":
            given = rng.choice(locale.female_names)
        elif sex == "male":
            given = rng.choice(locale.male_names)
        else:
            given = rng.choice(locale.female_names + locale.male_names)
        family = None if rng.random() < locale.mononym_share else rng.choice(locale.family_names)
        row: Row = {
            "tenant_id": tenant_id,
            "given_name": given,
            "family_name": family,
            "email": self.email(given) if rng.random() < 0.9 else None,
            "phone": self.phone(locale) if rng.random() < 0.85 else None,
            "birth_date": self.birth_date(),
            "sex": sex,
            "city": rng.choice(locale.cities) if rng.random() < 0.95 else None,
            "country": locale.country,
            "time_zone": locale.zone,
            "height_cm": rng.randrange(140, 205) if rng.random() < 0.8 else None,
            "wearable_serial": self.wearable_serial(),
            "marketing_opt_in": int(rng.random() < 0.4),
            "created_at": utc_wall(created_at),
            "updated_at": utc_wall(updated_at),
        }
        if patient_id is not None:
            row = {"patient_id": patient_id, **row}
        return row, locale

    def email(self, given: str) -> str:
        """A unique-enough address (64 random bits) with an ASCII local part."""
        return f"{ascii_slug(given) or 'patient'}.{self.rng.getrandbits(64):016x}@example.org"

    def phone(self, locale: Locale) -> str:
        """An E.164 number in the locale's country."""
        return f"{locale.phone_prefix}{self.rng.randrange(10**8, 10**9)}"

    def birth_date(self) -> dt.date | None:
        """A birth date; a few are NULL and a few are calendar edge cases (leap day, 1901)."""
        rng = self.rng
        r = rng.random()
        if r < 0.05:
            return None
        if r < 0.08:
            return rng.choice(_SPECIAL_BIRTH_DATES)
        return dt.date(1935, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 70))

    def wearable_serial(self) -> int | None:
        """A 64-bit device serial, sometimes the UNSIGNED maximum (readers without metadata see -1)."""
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            return None
        if r < 0.43:
            return _MAX_U64
        return rng.getrandbits(64)

    def preferences(self, patient_id: int, locale: Locale, *, now: dt.datetime) -> Row:
        """A health_preferences row with a nested JSON document."""
        rng = self.rng
        prefs: dict[str, Any] = {
            "units": rng.choice(catalog.UNITS),
            "goals": rng.sample(catalog.GOALS, rng.randrange(0, 4)),
            "notifications": {
                "push": rng.random() < 0.7,
                "email": rng.random() < 0.5,
                "digest": rng.choice(("daily", "weekly", None)),
            },
            "wearables": [{"vendor": "Garmin", "model": "Forerunner 255"}] if rng.random() < 0.3 else [],
            "accessibility": {"large_text": rng.random() < 0.1, "screen_reader": None},
            "daily_calorie_target": rng.randrange(1400, 3200, 50),
            "weight_goal_kg": round(rng.uniform(50, 100), 1),
            "coach_note": rng.choice(catalog.COACH_NOTES),
        }
        if rng.random() < 0.1:
            # 2^53 + 1: a JSON reader that uses doubles for numbers silently changes it.
            prefs["external_ids"] = {"legacy": 2**53 + 1, "fhir": f"Patient/{patient_id}"}
        quiet = rng.random() < 0.6
        start = dt.time(rng.randrange(20, 24), rng.choice((0, 15, 30, 45)))
        end = dt.time(rng.randrange(5, 9), rng.choice((0, 30)))
        return {
            "patient_id": patient_id,
            "preferences": json_text(prefs),
            "diet": rng.choice(catalog.DIETS),
            "language": locale.language,
            "contact_channel": rng.choice(catalog.CONTACT_CHANNELS),
            "quiet_hours_start": start if quiet else None,
            "quiet_hours_end": end if quiet else None,
            "reminder_days": rng.getrandbits(7),
            "daily_water_ml": rng.randrange(1000, 4000, 250) if rng.random() < 0.7 else None,
            "updated_at": utc_wall(now),
        }

    def enrollment(self, patient_id: int, plan_id: int, *, enrolled_at: dt.datetime, now: dt.datetime) -> Row:
        """A plan_enrollments row."""
        rng = self.rng
        status = rng.choices(("active", "paused", "cancelled"), (80, 10, 10))[0]
        return {
            "patient_id": patient_id,
            "plan_id": plan_id,
            "status": status,
            "enrolled_at": utc_wall(enrolled_at),
            "ended_on": now.date() if status == "cancelled" else None,
            "discount_pct": money(rng, 0, 5001) if rng.random() < 0.3 else None,
            "updated_at": utc_wall(now),
        }

    def event_time(self, zone_name: str, start: dt.datetime, end: dt.datetime) -> dt.datetime:
        """An instant in [start, end) during local office hours in ``zone_name``; now and then inside a DST fold.

        The value is generated as a local wall time and converted, as an application would do it.
        """
        rng = self.rng
        folds = [
            (window.first, window.length)
            for window in fold_windows(zone_name, end)
            if start <= window.utc_start and window.utc_end < end
        ]
        if folds and rng.random() < 0.05:
            first, length = rng.choice(folds)
            local = first + dt.timedelta(
                microseconds=rng.randrange(int(length / dt.timedelta(microseconds=1)))
            )
            return local_to_utc(local, zone_name, fold=rng.randrange(2))
        day = between(rng, start, end).astimezone(zone(zone_name))
        local = dt.datetime.combine(
            day.date(),
            dt.time(rng.randrange(7, 19), rng.randrange(60), rng.randrange(60), rng.randrange(1_000_000)),
        )
        instant = local_to_utc(local, zone_name)
        if instant >= end:  # office hours of the last day may lie after ``end``: take the day before
            instant = local_to_utc(local - dt.timedelta(days=1), zone_name)
        return instant

    def assessment(
        self, assessment_id: int | None, patient_id: int, zone_name: str, *, assessed_at: dt.datetime
    ) -> Row:
        """An assessments row; vitals are sometimes missing."""
        rng = self.rng
        weight = Decimal(rng.randrange(450, 1400)).scaleb(-1)
        height_m = Decimal(rng.randrange(150, 200)) / 100
        risk = Decimal(rng.randrange(0, 10_001)).scaleb(-4)
        band = risk_band(risk)
        measured = rng.random() < 0.9
        row: Row = {
            "patient_id": patient_id,
            "assessed_at": utc_wall(assessed_at),
            "assessed_tz": zone_name,
            "weight_kg": weight if measured else None,
            "bmi": (weight / (height_m * height_m)).quantize(Decimal("0.01")) if measured else None,
            "systolic_mmhg": rng.randrange(95, 190) if measured else None,
            "diastolic_mmhg": rng.randrange(55, 120) if measured else None,
            "resting_heart_rate": rng.randrange(38, 120) if rng.random() < 0.8 else None,
            "vo2_max": round(rng.uniform(18, 75), 1) if rng.random() < 0.4 else None,
            "risk_score": risk,
            "risk_band": band,
            "notes": rng.choice(catalog.NOTE_SNIPPETS) if rng.random() < 0.6 else None,
        }
        return row if assessment_id is None else {"assessment_id": assessment_id, **row}

    def survey_answers(self) -> tuple[int, str]:
        """(nps, answers JSON) of a submitted survey."""
        rng = self.rng
        answers = {
            "sleep_quality": rng.randrange(1, 6),
            "stress": rng.randrange(1, 6),
            "energy": rng.randrange(1, 6),
            "would_recommend": rng.random() < 0.7,
            "comment": rng.choice(catalog.SURVEY_COMMENTS),
            "version": 3,
        }
        return rng.randrange(0, 11), json_text(answers)

    def survey(
        self,
        survey_id: int | None,
        patient_id: int,
        *,
        sent_at: dt.datetime,
        submitted_at: dt.datetime | None,
    ) -> Row:
        """A surveys row; unanswered surveys have NULL submitted_at and nps and empty answers."""
        rng = self.rng
        channels = [c for c in ("email", "sms", "app") if rng.random() < 0.45]
        nps, answers = self.survey_answers() if submitted_at is not None else (None, "{}")
        row: Row = {
            "patient_id": patient_id,
            "survey_type": rng.choice(("onboarding", "quarterly", "post_visit")),
            "channel": ",".join(channels),  # MySQL SET: comma-separated members, '' for none
            "sent_at": utc_wall(sent_at),
            "submitted_at": utc_wall(submitted_at) if submitted_at is not None else None,
            "nps": nps,
            "duration_seconds": rng.randrange(20, 1800) if submitted_at is not None else None,
            "answers": answers,
        }
        return row if survey_id is None else {"survey_id": survey_id, **row}

    def claim(
        self,
        claim_id: int,
        patient_id: int,
        provider_id: int,
        currency: str,
        *,
        submitted_at: dt.datetime,
        now: dt.datetime,
        status: str | None = None,
    ) -> Row:
        """An insurance_claims row in a consistent status (approved/paid have an approved amount)."""
        rng = self.rng
        if status is None:
            status = rng.choices(("submitted", "approved", "denied", "paid"), (25, 20, 10, 45))[0]
        amount = _MAX_AMOUNT if rng.random() < 0.01 else money(rng, 1_000, 500_000)
        approved = None
        if status in ("approved", "paid"):
            approved = (amount * Decimal(rng.randrange(50, 101)) / 100).quantize(Decimal("0.01"))
        service_date = (submitted_at - dt.timedelta(days=rng.randrange(0, 60))).date()
        return {
            "claim_id": claim_id,
            "patient_id": patient_id,
            "provider_id": provider_id,
            "service_date": service_date,
            "benefit_year": service_date.year,
            "submitted_at": utc_wall(submitted_at),
            "amount": amount,
            "approved_amount": approved,
            "currency": currency,
            "status": status,
            "diagnosis_code": rng.choice(catalog.DIAGNOSIS_CODES),
            "denial_reason": rng.choice(catalog.DENIAL_REASONS) if status == "denied" else None,
            "attachment": self.attachment(),
            "updated_at": utc_wall(now),
        }

    def attachment(self) -> bytes | None:
        """NULL, an empty blob (not the same as NULL) or binary bytes that are not valid UTF-8."""
        rng = self.rng
        r = rng.random()
        if r < 0.5:
            return None
        if r < 0.53:
            return b""
        return b"%PDF-1.4\n\x00\xff\xfe" + rng.randbytes(rng.randrange(16, 2048))
