"""Reference data of the sample world: locales, plans, synonyms and the words rows are made of.

Everything here is constant; the row generators pick from it with a seeded ``random.Random``.
The names are chosen to be hostile to careless code: combining marks, letters outside Latin-1,
4-byte UTF-8 (``𠮷``), right-to-left script, apostrophes and single-word names.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Locale:
    """Where a patient lives: country, zone, language and the names people there carry."""

    country: str
    zone: str
    language: str
    currency: str
    phone_prefix: str
    cities: tuple[str, ...]
    female_names: tuple[str, ...]
    male_names: tuple[str, ...]
    family_names: tuple[str, ...]
    # Share of people known by a single name (family_name NULL).
    mononym_share: float = 0.0


# fmt: off
LOCALES: tuple[Locale, ...] = (
    Locale(
        "DK", "Europe/Copenhagen", "da-DK", "DKK", "+45",
        ("København", "Aarhus", "Ærøskøbing", "Odense"),
        ("Mette", "Åse", "Sofie", "Frederikke"),
        ("Søren", "Jens", "Øystein", "Mads"),
        ("Kierkegaard", "Nørgaard", "Østergaard", "Ærenlund"),
    ),
    Locale(
        "KE", "Africa/Nairobi", "sw-KE", "KES", "+254",
        ("Nairobi", "Mombasa", "Kisumu"),
        ("Wanjirũ", "Nyambũra", "Akinyi"),
        ("Ngũgĩ", "Kamau", "Otieno"),
        ("wa Thiong'o", "Mũrage", "Odhiambo"),
    ),
    Locale(
        "CN", "Asia/Shanghai", "zh-Hans-CN", "CNY", "+86",
        ("北京", "上海", "成都"),
        ("芳", "秀英", "婷"),
        ("伟", "强", "磊"),
        ("李", "王", "张", "欧阳"),
    ),
    Locale(
        "JP", "Asia/Tokyo", "ja-JP", "JPY", "+81",
        ("東京", "大阪", "札幌"),
        ("さくら", "陽菜", "結衣"),
        ("翔太", "蓮", "大翔"),
        # 𠮷 (U+20BB7) is outside the Basic Multilingual Plane: 4 bytes in UTF-8, needs utf8mb4.
        ("𠮷田", "佐藤", "髙橋"),
    ),
    Locale(
        "CA", "America/Toronto", "fr-CA", "CAD", "+1",
        ("Montréal", "Québec", "Trois-Rivières"),
        ("Zoë", "Renée", "Chloé", "Geneviève"),
        ("François", "Jérôme", "Noël"),
        ("Côté", "Lefèvre", "Bélanger", "D'Amours"),
    ),
    Locale(
        "CA", "America/St_Johns", "en-CA", "CAD", "+1",
        ("St. John's", "Corner Brook", "Gander"),
        ("Siobhán", "Mary-Kate", "Aoife"),
        ("Seán", "Pádraig", "Liam"),
        ("O'Reilly", "Tobin", "FitzGerald"),
    ),
    Locale(
        "PL", "Europe/Warsaw", "pl-PL", "PLN", "+48",
        ("Łódź", "Kraków", "Gdańsk", "Wrocław"),
        ("Małgorzata", "Zofia", "Jadwiga"),
        ("Łukasz", "Bartłomiej", "Paweł"),
        ("Wałęsa", "Żółkiewski", "Brzęczyszczykiewicz"),
    ),
    Locale(
        "IN", "Asia/Kolkata", "hi-IN", "INR", "+91",
        ("Mumbai", "Bengaluru", "Chennai"),
        ("Priya", "Saanvi", "Ananya"),
        ("Arjun", "Aarav", "Vihaan"),
        ("Iyer", "Chatterjee", "Reddy"),
    ),
    Locale(
        "NP", "Asia/Kathmandu", "ne-NP", "NPR", "+977",
        ("Kathmandu", "Pokhara"),
        ("Sita", "Anjali"),
        ("Bikash", "Pasang"),
        ("Shrestha", "Sherpa", "Gurung"),
    ),
    Locale(
        "NZ", "Pacific/Chatham", "en-NZ", "NZD", "+64",
        ("Waitangi",),
        ("Aroha", "Mereana"),
        ("Tāne", "Wiremu"),
        ("Ngata", "Te Whāiti"),
    ),
    Locale(
        "EG", "Africa/Cairo", "ar-EG", "EGP", "+20",
        ("القاهرة", "الإسكندرية"),
        ("فاطمة", "مريم"),
        ("محمد", "عمر"),
        ("عبد الله", "حسن"),
    ),
    Locale(
        "ID", "Asia/Jakarta", "id-ID", "IDR", "+62",
        ("Jakarta", "Yogyakarta"),
        ("Sri", "Dewi"),
        ("Sukarno", "Budi"),
        ("Wijaya", "Santoso"),
        mononym_share=0.6,
    ),
    Locale(
        "US", "America/Los_Angeles", "en-US", "USD", "+1",
        ("Los Angeles", "San Francisco", "Coeur d'Alene"),
        ("Renée", "Zoë", "Ashley"),
        ("D'Angelo", "José", "Michael"),
        ("O'Connor", "García", "Smith-Jones"),
    ),
    Locale(
        "DE", "Europe/Berlin", "de-DE", "EUR", "+49",
        ("München", "Köln", "Düsseldorf"),
        ("Jürgen", "Käthe", "Ännchen"),
        ("Jürgen", "Björn", "Uwe"),
        ("Weiß", "Groß", "Müller-Lüdenscheidt"),
    ),
)
# fmt: on

ZONES: tuple[str, ...] = tuple(sorted({loc.zone for loc in LOCALES}))

WORLD_START = dt.datetime(2019, 1, 1, tzinfo=dt.UTC)

# Claim ids are issued outside the database and start at 2^53 (see sql/mysql.sql).
CLAIM_ID_BASE = 2**53


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """One fitness plan in the seeded catalogue."""

    code: str
    name: str
    description: str | None
    monthly_fee: Decimal
    currency: str
    target_daily_steps: int
    target_sleep_minutes: int
    intensity: str
    is_active: bool
    launched_on: dt.date


# fmt: off
PLANS: tuple[PlanSpec, ...] = (
    PlanSpec("WALK-10K", "Walk 10k", "Daily walking, ten thousand steps.", Decimal("9.99"), "USD",
             10_000, 450, "gentle", True, dt.date(2019, 3, 1)),
    PlanSpec("SOVN-STYRKE", "Søvn & Styrke", "Sleep first, then strength: 3×/week.", Decimal("79.00"), "DKK",
             7_500, 480, "moderate", True, dt.date(2020, 1, 15)),
    PlanSpec("CAFE-CARDIO", "Café Cardio", None, Decimal("14.50"), "EUR",
             12_000, 420, "vigorous", True, dt.date(2021, 6, 1)),
    PlanSpec("ZEN-YOGA", "禅 Yoga 🧘", "Gentle yoga; \"no pain\" — just breathing.", Decimal("0.00"), "USD",
             6_000, 510, "gentle", True, dt.date(2022, 2, 2)),
    PlanSpec("MARATHON", "Marathon Prep", "16 weeks to 42.195 km.", Decimal("29.99"), "USD",
             18_000, 480, "vigorous", True, dt.date(2020, 9, 9)),
    PlanSpec("DIABETES-CARE", "Diabetes Care+", "Coaching with a nurse; glucose logs.", Decimal("149.99"), "USD",
             8_000, 450, "gentle", True, dt.date(2019, 11, 11)),
    PlanSpec("CORPORATE-PRO", "Corporate Wellness Pro", "Employer-paid, billed annually.", Decimal("99999999.99"), "USD",
             9_000, 450, "moderate", True, dt.date(2023, 1, 1)),
    # Retired plans nobody follows: the only ones the workload may delete.
    PlanSpec("LEGACY-2018", "Legacy Fit 2018", None, Decimal("4.99"), "USD",
             5_000, 420, "gentle", False, dt.date(2018, 1, 1)),
    PlanSpec("PILOT-Ł", "Pilot: Łatwy start", "Pilot programme, never launched widely.", Decimal("19.00"), "PLN",
             4_000, 480, "gentle", False, dt.date(2024, 4, 1)),
)
# fmt: on
RETIRED_PLAN_CODES = frozenset({"LEGACY-2018", "PILOT-Ł"})

# (Base_Term, Synonym_1, Synonym_2). No commas or "=>" inside a term: OpenSearch synonym files use
# them as separators.
SYNONYMS: tuple[tuple[str, str | None, str | None], ...] = (
    ("danish", "croissant", "pastry"),
    ("child's doctor", "pediatrician", None),
    ("sneaker", "tennis shoe", "trainer"),
    ("physician", "doctor", "GP"),
    ("hypertension", "high blood pressure", None),
    ("myocardial infarction", "heart attack", None),
    ("physiotherapy", "physical therapy", "PT"),
    ("ob-gyn", "obstetrician", "gynecologist"),
    ("jogging", "running", None),
    ("café", "coffee shop", None),
    ("yoghurt", "yogurt", None),
    ("sleep apnoea", "sleep apnea", "OSA"),
    ("flu", "influenza", None),
    ("naïve", "naive", None),
)

# Extra terms the workload adds to the synonyms table. Rows with these base terms are the only
# ones it updates or deletes: the seeded ones above are what the README's searches rely on.
EXTRA_SYNONYMS: tuple[tuple[str, str | None, str | None], ...] = (
    ("dietitian", "nutritionist", None),
    ("BP", "blood pressure", None),
    ("GP", "family doctor", "general practitioner"),
    ("ER", "emergency room", "A&E"),
    ("stomach ache", "bellyache", "abdominal pain"),
    ("ibuprofen", "Advil", "Nurofen"),
    ("über-fit", "very fit", None),
    ("sleeplessness", "insomnia", None),
)

SPECIALTIES: tuple[str, ...] = (
    "general practice",
    "cardiology",
    "pediatrics",
    "physiotherapy",
    "nutrition",
    "sleep medicine",
    "endocrinology",
    "psychology",
    "obstetrics & gynecology",
    "sports medicine",
)
PROVIDER_LANGUAGES: tuple[str, ...] = (
    "en",
    "fr",
    "da",
    "sw",
    "zh",
    "ja",
    "pl",
    "hi",
    "ne",
    "ar",
    "id",
    "de",
    "es",
)
PROVIDER_PREFIXES: tuple[str, ...] = ("Dr.", "Clinic", "Praxis", "Klinik", "Centre", "诊所")

TENANT_WORDS: tuple[str, ...] = (
    "nordlys",
    "acme",
    "kilimanjaro",
    "maple",
    "sakura",
    "wisła",
    "ganges",
    "aroha",
    "nile",
    "pacific",
    "evergreen",
    "zephyr",
    "lumière",
    "tundra",
)
TENANT_SUFFIXES: tuple[str, ...] = (
    "Health",
    "Wellness",
    "Care",
    "Clinic Group",
    "Insurance",
    "Employers' Trust",
)
TENANT_REGIONS: tuple[str, ...] = (
    "us-east-1",
    "eu-central-1",
    "ap-southeast-1",
    "ca-central-1",
    "af-south-1",
)
TENANT_TIERS: tuple[str, ...] = ("free", "standard", "premium", "enterprise")
TENANT_STATUSES: tuple[str, ...] = ("trial", "active", "suspended", "churned")

DIAGNOSIS_CODES: tuple[str, ...] = (
    "Z00.00",
    "J06.9",
    "E11.65",
    "I10",
    "M54.5",
    "F41.1",
    "G47.33",
    "K21.9",
    "R51.9",
    "S93.401A",
)
DENIAL_REASONS: tuple[str, ...] = (
    "Not covered by plan",
    "Duplicate claim",
    "Missing pre-authorisation — call 1-800-555-0199",
    'Provider out of network; patient\'s plan excludes "elective" care',
)

NOTE_SNIPPETS: tuple[str, ...] = (
    "Feeling great 💪",
    "Patient reports poor sleep; suggested 'wind-down' routine.",
    "BP elevated — recheck in 2 weeks.\nDiscussed salt intake.",
    "Weight stable. Goal: 10 000 steps/day.",
    "Backslash test: C:\\Users\\patient\\notes.txt",
    "患者睡眠质量差，建议减少咖啡因。",
    "Allergic to penicillin; uses 50% less sugar in café au lait ☕",
    "مراجعة بعد أسبوعين",
    "Tab\tseparated\tvalues and a NUL-free but odd line\r\nending.",
    "",
)

SURVEY_QUESTIONS: tuple[str, ...] = ("sleep_quality", "stress", "energy", "would_recommend", "comment")
SURVEY_COMMENTS: tuple[str | None, ...] = (
    "Great app!",
    "Trop de notifications 😅",
    None,
    "Brak polskich napisów",
    "很好",
    "",
    "5 stars ★★★★★",
)

DIETS: tuple[str | None, ...] = (
    "omnivore",
    "vegetarian",
    "vegan",
    "pescatarian",
    "halal",
    "kosher",
    "keto",
    None,
)
CONTACT_CHANNELS: tuple[str, ...] = ("email", "sms", "app", "phone", "none")
# The coach's note in health_preferences; the first two are found only through the seed synonyms
# (the README's searches "danish" and "child's doctor").
COACH_NOTES: tuple[str, ...] = (
    "Swap the Sunday croissant for porridge",
    "Book the pediatrician check-up for the kids",
    "Keep going ✓",
    "Ráðlegging: sofðu meira",
    "继续加油",
    "",
)
GOALS: tuple[str, ...] = ("lose_weight", "sleep_better", "run_5k", "lower_bp", "less_stress", "build_muscle")
UNITS: tuple[str, ...] = ("metric", "imperial")
