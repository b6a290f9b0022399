"""Create the sample world's schemas and seed them deterministically from a seed.

The same seed and size always give the same rows (ids included) on fresh databases: every table
family draws from its own ``random.Random(f"{seed}/<family>")``, seeded timestamps lie before a
reference "now" (midnight UTC of the day the world is created, or the ``now`` passed in; see
``timeutil.reference_now``), and ids are written explicitly. The same seed, size and reference
give the same rows. Only DB-API connections are needed
(PyMySQL and psycopg2), so the world does not depend on the project's connectors.
``create_mysql_world`` seeds the health database alone, with the same rows, on another MySQL
server (the MySQL 8 family stand-in for Aurora MySQL 3 next to MariaDB).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pipelines.world import catalog
from pipelines.world.profiles import patient_profile
from pipelines.world.rows import Row, RowFactory, between
from pipelines.world.schema import (
    MYSQL_TABLES,
    POSTGRES_TABLES,
    WorldError,
    apply_ddl,
    count_rows,
    insert_rows,
)
from pipelines.world.session import check_mysql_connection, mysql_utc_session, transactional
from pipelines.world.timeutil import reference_now

__all__ = [
    "DEFAULT_MYSQL_DATABASE",
    "DEFAULT_POSTGRES_DATABASE",
    "WorldSummary",
    "create_databases",
    "create_mysql_database",
    "create_mysql_world",
    "create_schema",
    "create_world",
]

log = logging.getLogger(__name__)

DEFAULT_MYSQL_DATABASE = "health"
DEFAULT_POSTGRES_DATABASE = "tenants"
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Tenants that never get patients or providers (the ones a workload may delete).
_EMPTY_TENANTS = 2
# The table seeded last: rows there mean seeding finished.
_SEEDED_MARKER = "SynonymsTable"


@dataclass(frozen=True, slots=True)
class WorldSummary:
    """What ``create_world`` did: the seed, whether it seeded, and the rows per table."""

    seed: int
    seeded: bool
    row_counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


def create_databases(
    mysql_admin_conn: Any,
    pg_admin_conn: Any,
    *,
    mysql_database: str = DEFAULT_MYSQL_DATABASE,
    postgres_database: str = DEFAULT_POSTGRES_DATABASE,
) -> None:
    """Create the two databases if they do not exist (admin connections to any database on each server).

    Names must be lower_snake_case. The MySQL database gets utf8mb4; the PostgreSQL one UTF8.
    """
    _check_database_name(postgres_database)
    create_mysql_database(mysql_admin_conn, mysql_database)
    with pg_admin_conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (postgres_database,))
        exists = cur.fetchone() is not None
    pg_admin_conn.rollback()
    if not exists:
        # CREATE DATABASE cannot run inside a transaction block.
        previous = pg_admin_conn.autocommit
        pg_admin_conn.autocommit = True
        try:
            with pg_admin_conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE \"{postgres_database}\" ENCODING 'UTF8' TEMPLATE template0")
        finally:
            pg_admin_conn.autocommit = previous


def create_mysql_database(mysql_admin_conn: Any, name: str = DEFAULT_MYSQL_DATABASE) -> None:
    """Create the health database with utf8mb4 if it does not exist (MariaDB or MySQL 8; lower_snake_case).

    The collation is spelled out because the servers' defaults differ (MariaDB 10.11
    utf8mb4_general_ci, MySQL 8 utf8mb4_0900_ai_ci); the tables name utf8mb4_unicode_ci too.
    """
    _check_database_name(name)
    with mysql_admin_conn.cursor() as cur:
        cur.execute(
            f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
    mysql_admin_conn.commit()


def _check_database_name(name: str) -> None:
    if not _DATABASE_NAME.match(name):
        raise WorldError(f"database name {name!r} must be lower_snake_case")


def create_schema(mysql_conn: Any, pg_conn: Any) -> None:
    """Create the world's tables in both databases (CREATE TABLE IF NOT EXISTS; commits)."""
    check_mysql_connection(mysql_conn)
    apply_ddl(mysql_conn, "mysql")
    apply_ddl(pg_conn, "postgres")


def create_world(
    mysql_conn: Any,
    pg_conn: Any,
    *,
    seed: int,
    patients: int = 200,
    chunk_rows: int = 5_000,
    now: dt.datetime | None = None,
) -> WorldSummary:
    """Create the schemas and, if the tables are empty, seed about ``patients`` patients' worth of rows.

    ``mysql_conn`` is a PyMySQL connection (charset utf8mb4) to the health database, ``pg_conn`` a
    psycopg2 connection to the tenants database; both are left open with no transaction running.
    Calling it again on a seeded world changes nothing and returns ``seeded=False`` with the current
    counts. A world whose seeding was interrupted raises ``WorldError`` (drop it and start again).
    Rows are committed every ``chunk_rows`` rows, so a large world does not need one huge transaction.
    Seeded timestamps lie before ``reference_now(now)`` (today's midnight UTC by default).
    """
    if patients < 0:
        raise WorldError(f"patients must be >= 0, got {patients}")
    create_schema(mysql_conn, pg_conn)
    existing = {**count_rows(pg_conn, POSTGRES_TABLES), **count_rows(mysql_conn, MYSQL_TABLES)}
    if not _needs_seeding(existing):
        return WorldSummary(seed=seed, seeded=False, row_counts=MappingProxyType(existing))
    with transactional(mysql_conn), transactional(pg_conn), mysql_utc_session(mysql_conn):
        counts = _Seeder(mysql_conn, pg_conn, seed=seed, chunk_rows=chunk_rows, now=now).seed(patients)
    # DEBUG: the caller reports the summary (one line for the user, not two).
    log.debug("seeded world (seed=%s): %s", seed, counts)
    return WorldSummary(seed=seed, seeded=True, row_counts=MappingProxyType(counts))


def create_mysql_world(
    mysql_conn: Any,
    *,
    seed: int,
    patients: int = 200,
    chunk_rows: int = 5_000,
    now: dt.datetime | None = None,
) -> WorldSummary:
    """Create and seed only the health database: the MySQL rows ``create_world`` writes for this seed and size.

    For a second MySQL server beside the world's own (the MySQL 8 stand-in for Aurora MySQL 3):
    the tenant and provider ids the rows point at are those ``create_world`` gives the tenants
    database for the same seed and size, so both servers hold identical health data (given the same
    reference ``now``). Idempotent
    like ``create_world``: a seeded database is left as it is (``seeded=False``).
    """
    if patients < 0:
        raise WorldError(f"patients must be >= 0, got {patients}")
    check_mysql_connection(mysql_conn)
    apply_ddl(mysql_conn, "mysql")
    existing = count_rows(mysql_conn, MYSQL_TABLES)
    if not _needs_seeding(existing):
        return WorldSummary(seed=seed, seeded=False, row_counts=MappingProxyType(existing))
    with transactional(mysql_conn), mysql_utc_session(mysql_conn):
        counts = _Seeder(mysql_conn, None, seed=seed, chunk_rows=chunk_rows, now=now).seed(patients)
    log.debug("seeded the health database (seed=%s): %s", seed, counts)
    return WorldSummary(seed=seed, seeded=True, row_counts=MappingProxyType(counts))


def _needs_seeding(existing: dict[str, int]) -> bool:
    """False for a seeded world; raise for a partially seeded one."""
    if existing[_SEEDED_MARKER]:
        log.debug("world already seeded; leaving it as it is: %s", existing)
        return False
    if any(existing.values()):
        raise WorldError(
            f"the world is partially seeded ({existing}); drop it (pipelines.world.drop_schema) and create it again"
        )
    return True


class _Seeder:
    """Generates and inserts the seed rows, one table family at a time (MySQL only without ``pg_conn``)."""

    def __init__(
        self, mysql_conn: Any, pg_conn: Any | None, *, seed: int, chunk_rows: int, now: dt.datetime | None
    ) -> None:
        self.now = reference_now(now)
        self.mysql = mysql_conn
        self.pg = pg_conn
        self.seed_value = seed
        self.chunk_rows = max(chunk_rows, 1)
        tables = (*MYSQL_TABLES, *POSTGRES_TABLES) if pg_conn is not None else MYSQL_TABLES
        self.counts: dict[str, int] = {t.name: 0 for t in tables}

    def factory(self, family: str) -> RowFactory:
        """A row factory on its own random stream, so one family's draws never shift another's."""
        # str seeds hash with SHA-512 (not hash()), so they are stable across processes.
        return RowFactory(random.Random(f"{self.seed_value}/{family}"))

    def seed(self, patients: int) -> dict[str, int]:
        """Insert everything; return the rows written per table."""
        try:
            if self.pg is not None:
                tenant_ids = self.seed_tenants(self.pg, patients)
                provider_ids = self.seed_providers(self.pg, patients, tenant_ids)
            else:  # the ids the tenants database has (or would have) for this seed and size
                tenant_ids = [_tenant_id(i) for i in range(_tenants_with_patients(patients))]
                provider_ids = list(range(1, _provider_count(patients) + 1))
            self.seed_plans()
            self.seed_patients(patients, tenant_ids, provider_ids)
            self.seed_synonyms()
        except BaseException:
            # Leave no transaction open, whatever stopped us (including KeyboardInterrupt).
            for conn in (c for c in (self.mysql, self.pg) if c is not None):
                try:
                    conn.rollback()
                except Exception:  # noqa: BLE001 - the original error matters more
                    log.debug("rollback after a failed seed failed", exc_info=True)
            raise
        return dict(self.counts)

    def _insert(self, conn: Any, engine: str, table: str, rows: list[Row]) -> None:
        with conn.cursor() as cur:
            self.counts[table] += insert_rows(cur, engine, table, rows)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ tenants database

    def seed_tenants(self, pg: Any, patients: int) -> list[str]:
        """Tenants with patients (mostly active) plus a few empty trial/churned sign-ups."""
        f = self.factory("tenants")
        with_patients = _tenants_with_patients(patients)
        rows = []
        for i in range(with_patients + _EMPTY_TENANTS):
            tenant_id = _tenant_id(i)
            if i < with_patients:
                status = f.rng.choices(("active", "suspended"), (9, 1))[0]
            else:
                status = f.rng.choice(("trial", "churned"))
            created = between(f.rng, catalog.WORLD_START, self.now - dt.timedelta(days=60))
            rows.append(
                f.tenant(
                    tenant_id,
                    status=status,
                    created_at=created,
                    now=between(f.rng, created, self.now),
                    large_settings=True if i == 0 else None,  # at least one out-of-line document
                )
            )
        self._insert(pg, "postgres", "tenant_metadata", rows)
        pg.commit()
        return [r["tenant_id"] for r in rows[:with_patients]]

    def seed_providers(self, pg: Any, patients: int, tenant_ids: list[str]) -> list[int]:
        """Providers with explicit ids 1..n; the identity sequence is moved past them."""
        f = self.factory("providers")
        count = _provider_count(patients)
        npis: set[str] = set()
        rows = []
        for provider_id in range(1, count + 1):
            npi = _unique_npi(f.rng, npis)
            rows.append(
                f.provider(
                    provider_id,
                    f.rng.choice(tenant_ids),
                    npi=npi,
                    now=between(f.rng, catalog.WORLD_START, self.now),
                )
            )
        self._insert(pg, "postgres", "care_providers", rows)
        with pg.cursor() as cur:
            # Explicit ids do not advance a GENERATED BY DEFAULT identity; later inserts would collide.
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('care_providers', 'provider_id'),"
                " (SELECT max(provider_id) FROM care_providers))"
            )
        pg.commit()
        return [r["provider_id"] for r in rows]

    # ------------------------------------------------------------------ health database

    def seed_plans(self) -> None:
        """The fixed plan catalogue, ids 1..n."""
        f = self.factory("plans")
        rows = [
            f.plan(
                spec,
                plan_id=i,
                now=between(f.rng, dt.datetime.combine(spec.launched_on, dt.time(), dt.UTC), self.now),
            )
            for i, spec in enumerate(catalog.PLANS, start=1)
        ]
        self._insert(self.mysql, "mysql", "fitness_plans", rows)
        self.mysql.commit()

    def seed_patients(self, patients: int, tenant_ids: list[str], provider_ids: list[int]) -> None:
        """Patients and everything that hangs off them, committed in chunks."""
        fp = self.factory("patients")
        fpref = self.factory("health_preferences")
        fenr = self.factory("plan_enrollments")
        fass = self.factory("assessments")
        fsur = self.factory("surveys")
        fcla = self.factory("insurance_claims")
        active_plans = [
            i for i, spec in enumerate(catalog.PLANS, start=1) if spec.code not in catalog.RETIRED_PLAN_CODES
        ]
        buffers: dict[str, list[Row]] = {
            name: []
            for name in (
                "patients",
                "health_preferences",
                "plan_enrollments",
                "assessments",
                "surveys",
                "insurance_claims",
            )
        }
        assessment_id = survey_id = 0
        claim_no = 0
        end = self.now
        recent_claim_since = end - dt.timedelta(days=21)
        for patient_id in range(1, patients + 1):
            created = between(fp.rng, catalog.WORLD_START, end - dt.timedelta(days=7))
            patient, locale = fp.patient(
                patient_id,
                fp.rng.choice(tenant_ids),
                created_at=created,
                updated_at=between(fp.rng, created, end),
            )
            buffers["patients"].append(patient)
            if fpref.rng.random() < 0.85:
                buffers["health_preferences"].append(
                    fpref.preferences(patient_id, locale, now=between(fpref.rng, created, end))
                )
            for plan_id in sorted(fenr.rng.sample(active_plans, fenr.rng.choice((0, 1, 1, 1, 2)))):
                enrolled = between(fenr.rng, created, end)
                buffers["plan_enrollments"].append(
                    fenr.enrollment(
                        patient_id, plan_id, enrolled_at=enrolled, now=between(fenr.rng, enrolled, end)
                    )
                )
            for _ in range(fass.rng.randrange(0, 6)):
                assessment_id += 1
                at = fass.event_time(locale.zone, created, end)
                buffers["assessments"].append(
                    fass.assessment(assessment_id, patient_id, locale.zone, assessed_at=at)
                )
            for _ in range(fsur.rng.randrange(0, 4)):
                survey_id += 1
                sent = between(fsur.rng, created, end)
                submitted = sent + dt.timedelta(seconds=fsur.rng.randrange(60, 86_400 * 5))
                buffers["surveys"].append(
                    fsur.survey(
                        survey_id,
                        patient_id,
                        sent_at=sent,
                        submitted_at=submitted if fsur.rng.random() < 0.7 else None,
                    )
                )
            claims = fcla.rng.randrange(0, 6)
            # A patient whose resting pulse is rising (see profiles) has seen a doctor lately.
            rising = patient_profile(patient_id).pulse_rising
            for i in range(claims + rising):
                claim_no += 1
                recent = rising and i == claims
                submitted = between(fcla.rng, max(created, recent_claim_since) if recent else created, end)
                buffers["insurance_claims"].append(
                    fcla.claim(
                        catalog.CLAIM_ID_BASE + claim_no,
                        patient_id,
                        fcla.rng.choice(provider_ids),
                        locale.currency,
                        submitted_at=submitted,
                        now=between(fcla.rng, submitted, end + dt.timedelta(seconds=1)),
                    )
                )
            if sum(len(rows) for rows in buffers.values()) >= self.chunk_rows:
                self._flush(buffers)
        self._flush(buffers)

    def _flush(self, buffers: dict[str, list[Row]]) -> None:
        """Insert the buffered rows (parents first) in one transaction."""
        for table, rows in buffers.items():  # dict order: patients first
            self._insert(self.mysql, "mysql", table, rows)
            rows.clear()
        self.mysql.commit()

    def seed_synonyms(self) -> None:
        """The hand-maintained search synonyms (written last: they mark a finished seed)."""
        rows = [
            {"SynID": i, "Base_Term": base, "Synonym_1": s1, "Synonym_2": s2}
            for i, (base, s1, s2) in enumerate(catalog.SYNONYMS, start=1)
        ]
        self._insert(self.mysql, "mysql", "SynonymsTable", rows)
        self.mysql.commit()


def _tenants_with_patients(patients: int) -> int:
    """How many tenants get patients (the first ones; a few empty tenants follow them)."""
    return max(2, math.ceil(patients / 50))


def _tenant_id(index: int) -> str:
    return f"{catalog.TENANT_WORDS[index % len(catalog.TENANT_WORDS)]}-{index + 1:03d}"


def _provider_count(patients: int) -> int:
    """Providers get the ids 1..this."""
    return max(5, patients // 4)


def _unique_npi(rng: random.Random, taken: set[str]) -> str:
    """A 10-digit NPI-like number starting with 1 that is not in ``taken`` (added to it)."""
    while True:
        npi = f"1{rng.randrange(10**9):09d}"
        if npi not in taken:
            taken.add(npi)
            return npi
