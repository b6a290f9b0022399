"""The sample world and its workload, against the real local MariaDB and PostgreSQL (and MySQL 9.7).

The process runs in America/St_Johns (conftest), so any naive-local datetime mix-up in the world's
UTC conventions shows up as wrong hours here.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest

from pipelines.world import (
    TABLES,
    ChangeKind,
    OperationMix,
    Workload,
    WorkloadConfig,
    WorkloadError,
    WorldError,
    catalog,
    create_databases,
    create_mysql_database,
    create_mysql_world,
    create_world,
    drop_schema,
)
from pipelines.world.schema import MYSQL_TABLES, POSTGRES_TABLES, WorldTable, count_rows
from pipelines.world.timeutil import ambiguous_hours, local_to_utc, zone

ALL_TABLES = {t.name for t in TABLES}
CLOCK = dt.datetime(2025, 7, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2, minutes=-30)))


@pytest.fixture
def world_conns(mysql_db: Any, pg_db: Any) -> Iterator[tuple[Any, Any]]:
    """Admin connections to the fresh health (MariaDB) and tenants (PostgreSQL) databases."""
    mysql_conn = mysql_db.admin_connect()
    with mysql_conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")  # read TIMESTAMP columns as UTC, whatever the server says
    yield mysql_conn, pg_db.admin_connect()


@pytest.fixture
def world8_conns(mysql8_db: Any, pg_db: Any) -> Iterator[tuple[Any, Any]]:
    """Admin connections to a fresh health database on the MySQL 9.7 server and a tenants one."""
    mysql_conn = mysql8_db.admin_connect()
    with mysql_conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
    yield mysql_conn, pg_db.admin_connect()


def _order_by(table: WorldTable) -> str:
    cols = [f'"{c}" COLLATE "C"' if c == "tenant_id" else f'"{c}"' for c in table.key]
    if table.engine == "mysql":
        cols = [f"`{c}`" for c in table.key]
    return ", ".join(cols)


def dump(mysql_conn: Any, pg_conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every world table, ordered by primary key."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in TABLES:
        conn = mysql_conn if table.engine == "mysql" else pg_conn
        quoted = f"`{table.name}`" if table.engine == "mysql" else f'"{table.name}"'
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {quoted} ORDER BY {_order_by(table)}")
            out[table.name] = [tuple(r) for r in cur.fetchall()]
    return out


def counts(mysql_conn: Any, pg_conn: Any) -> dict[str, int]:
    """Rows per world table."""
    return {**count_rows(mysql_conn, MYSQL_TABLES), **count_rows(pg_conn, POSTGRES_TABLES)}


def keys(mysql_conn: Any, pg_conn: Any, table: WorldTable) -> set[tuple[Any, ...]]:
    """Primary keys present in ``table``."""
    conn = mysql_conn if table.engine == "mysql" else pg_conn
    q = "`" if table.engine == "mysql" else '"'
    cols = ", ".join(f"{q}{c}{q}" for c in table.key)
    with conn.cursor() as cur:
        cur.execute(f"SELECT {cols} FROM {q}{table.name}{q}")
        return {tuple(r) for r in cur.fetchall()}


def open_transactions(mysql_conn: Any, pg_db: Any) -> tuple[int, int]:
    """(1 if the workload's MySQL session is inside a transaction, idle-in-transaction PG sessions).

    MySQL is asked through the session itself: information_schema.innodb_trx is served from a cache
    that may be up to 0.1 s old.
    """
    with mysql_conn.cursor() as cur:
        cur.execute("SELECT @@in_transaction")
        mysql_open = int(cur.fetchone()[0])
    pg_probe = pg_db.admin_connect()
    with pg_probe.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state LIKE 'idle in transaction%%'",
            (pg_db.name,),
        )
        pg_open = int(cur.fetchone()[0])
    return mysql_open, pg_open


# ---------------------------------------------------------------------------- seeding


def test_create_world_seeds_requested_size_and_is_idempotent(world_conns: tuple[Any, Any]) -> None:
    mysql_conn, pg_conn = world_conns
    summary = create_world(mysql_conn, pg_conn, seed=11, patients=120)

    assert summary.seeded
    assert summary.row_counts["patients"] == 120
    assert counts(mysql_conn, pg_conn) == dict(summary.row_counts)
    assert all(summary.row_counts[name] > 0 for name in ALL_TABLES), summary.row_counts
    assert summary.row_counts["SynonymsTable"] == len(catalog.SYNONYMS)
    assert summary.row_counts["fitness_plans"] == len(catalog.PLANS)

    again = create_world(mysql_conn, pg_conn, seed=99, patients=5)
    assert not again.seeded
    assert dict(again.row_counts) == dict(summary.row_counts)
    assert counts(mysql_conn, pg_conn) == dict(summary.row_counts)


def test_same_seed_gives_identical_rows_and_another_seed_does_not(world_conns: tuple[Any, Any]) -> None:
    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=3, patients=80, now=CLOCK)
    first = dump(mysql_conn, pg_conn)

    drop_schema(mysql_conn, pg_conn)
    create_world(mysql_conn, pg_conn, seed=3, patients=80, now=CLOCK)
    assert dump(mysql_conn, pg_conn) == first

    drop_schema(mysql_conn, pg_conn)
    create_world(mysql_conn, pg_conn, seed=4, patients=80, now=CLOCK)
    other = dump(mysql_conn, pg_conn)
    assert other["patients"] != first["patients"]
    assert other["insurance_claims"] != first["insurance_claims"]


def test_seeded_values_round_trip(world_conns: tuple[Any, Any]) -> None:
    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=21, patients=300)
    catalog_names = {
        n for loc in catalog.LOCALES for n in (*loc.female_names, *loc.male_names, *loc.family_names)
    }
    with mysql_conn.cursor() as cur:
        cur.execute("SELECT given_name, family_name, created_at, updated_at, wearable_serial FROM patients")
        patients = cur.fetchall()
        cur.execute("SELECT Base_Term, Synonym_1, Synonym_2 FROM SynonymsTable ORDER BY SynID")
        synonyms = cur.fetchall()
        cur.execute("SELECT name, monthly_fee FROM fitness_plans ORDER BY plan_id")
        plans = cur.fetchall()
        cur.execute("SELECT claim_id, amount, approved_amount, status, attachment FROM insurance_claims")
        claims = cur.fetchall()
        cur.execute("SELECT preferences, reminder_days FROM health_preferences")
        preferences = cur.fetchall()

    names = {n for given, family, *_ in patients for n in (given, family) if n is not None}
    assert names <= catalog_names  # every stored name came back exactly as written
    assert any(ord(ch) > 0xFFFF for n in names for ch in n), "expected a 4-byte UTF-8 name (𠮷田)"
    assert any(family is None for _, family, *_ in patients)  # mononyms
    assert all(created <= updated for _, _, created, updated, _ in patients)  # both UTC
    assert max(p[4] for p in patients if p[4] is not None) == 2**64 - 1

    assert [tuple(s) for s in synonyms] == list(catalog.SYNONYMS)
    assert ("child's doctor", "pediatrician", None) in synonyms
    assert [(name, fee) for name, fee in plans] == [(p.name, p.monthly_fee) for p in catalog.PLANS]

    assert min(c[0] for c in claims) > 2**53
    for _, amount, approved, status, _ in claims:
        assert isinstance(amount, Decimal)
        assert (approved is not None) == (status in ("approved", "paid"))
        assert approved is None or approved <= amount
    assert b"" in {c[4] for c in claims}  # an empty blob, distinct from NULL
    assert any(c[4] is None for c in claims)

    for doc, bits in preferences:
        parsed = json.loads(doc)
        assert parsed["coach_note"] in catalog.COACH_NOTES
        assert len(bits) == 1  # BIT(7) comes back as one byte

    with pg_conn.cursor() as cur:
        cur.execute("SELECT settings, created_at, credit_balance FROM tenant_metadata")
        tenants = cur.fetchall()
        cur.execute("SELECT languages, rating FROM care_providers")
        providers = cur.fetchall()
    assert all(created.utcoffset() is not None for _, created, _ in tenants)
    assert any(len(json.dumps(settings)) > 4000 for settings, *_ in tenants)  # a TOASTed document
    assert max(balance for *_, balance in tenants) > Decimal(10**26)  # beyond any int64 or double
    assert all(isinstance(langs, list) for langs, _ in providers)
    assert any(langs == [] for langs, _ in providers) and any(len(langs) > 1 for langs, _ in providers)
    assert any(rating is None for _, rating in providers)


def test_assessment_times_are_utc_wall_times_of_local_office_hours(world_conns: tuple[Any, Any]) -> None:
    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=8, patients=400)
    with mysql_conn.cursor() as cur:
        cur.execute("SELECT assessed_at, assessed_tz FROM assessments")
        rows = cur.fetchall()
    in_fold = 0
    for assessed_at, zone_name in rows:
        local = assessed_at.replace(tzinfo=dt.UTC).astimezone(zone(zone_name))
        wall = local.replace(tzinfo=None)
        folded = any(start <= wall < start + length for start, length in ambiguous_hours(zone_name))
        in_fold += folded
        assert folded or 7 <= local.hour < 19, (assessed_at, zone_name, local)
    assert in_fold > 0  # some events were generated inside a DST fold on purpose


def test_local_to_utc_honours_fold() -> None:
    copenhagen = ambiguous_hours("Europe/Copenhagen")
    assert (dt.datetime(2024, 10, 27, 2, 0), dt.timedelta(hours=1)) in copenhagen
    assert (dt.datetime(2024, 4, 7, 2, 45), dt.timedelta(hours=1)) in ambiguous_hours("Pacific/Chatham")
    assert ambiguous_hours("Asia/Kolkata") == ()
    wall = dt.datetime(2024, 10, 27, 2, 30)
    assert local_to_utc(wall, "Europe/Copenhagen", fold=0) == dt.datetime(2024, 10, 27, 0, 30, tzinfo=dt.UTC)
    assert local_to_utc(wall, "Europe/Copenhagen", fold=1) == dt.datetime(2024, 10, 27, 1, 30, tzinfo=dt.UTC)


# ---------------------------------------------------------------------------- workload


def test_workload_counts_match_the_database(world_conns: tuple[Any, Any]) -> None:
    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=5, patients=150)
    before = counts(mysql_conn, pg_conn)
    rows_before = dump(mysql_conn, pg_conn)

    workload = Workload(mysql_conn, pg_conn, WorkloadConfig(seed=5, keep_journal=True))
    stats = workload.run_ops(600)

    assert stats.operations == 600
    assert 0 < stats.transactions < 600  # some transactions held several operations
    after = counts(mysql_conn, pg_conn)
    for name in ALL_TABLES:
        assert after[name] - before[name] == stats.net_rows(name), name
    assert stats.tables == ALL_TABLES
    rows_after = dump(mysql_conn, pg_conn)
    assert all(rows_after[name] != rows_before[name] for name in ALL_TABLES)

    # The last change to each key decides whether it exists now.
    last: dict[tuple[str, tuple[Any, ...]], ChangeKind] = {}
    for change in stats.journal:
        last[(change.table, change.key)] = change.kind
    assert len(stats.journal) == stats.count()
    present = {t.name: keys(mysql_conn, pg_conn, t) for t in TABLES}
    for (table, key), kind in last.items():
        assert (key in present[table]) == (kind is not ChangeKind.DELETE), (table, key, kind)
    assert workload.totals.rows == stats.rows


def test_every_table_gets_inserts_updates_and_deletes(world_conns: tuple[Any, Any]) -> None:
    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=6, patients=100)
    before = counts(mysql_conn, pg_conn)
    config = WorkloadConfig(seed=6, table_weights={name: 1.0 for name in ALL_TABLES})
    stats = Workload(mysql_conn, pg_conn, config).run_ops(1500)

    for name in ALL_TABLES:
        for kind in ChangeKind:
            assert stats.count(name, kind) > 0, (name, kind, stats.by_table())
    after = counts(mysql_conn, pg_conn)
    assert all(after[n] - before[n] == stats.net_rows(n) for n in ALL_TABLES)


def test_workload_is_deterministic_with_a_simulated_clock(world_conns: tuple[Any, Any]) -> None:
    mysql_conn, pg_conn = world_conns
    config = WorkloadConfig(seed=9, clock_start=CLOCK)

    create_world(mysql_conn, pg_conn, seed=1, patients=60, now=CLOCK)
    first_stats = Workload(mysql_conn, pg_conn, config).run_ops(300)
    first = dump(mysql_conn, pg_conn)

    drop_schema(mysql_conn, pg_conn)
    create_world(mysql_conn, pg_conn, seed=1, patients=60, now=CLOCK)
    second_stats = Workload(mysql_conn, pg_conn, config).run_ops(300)

    assert second_stats.rows == first_stats.rows
    assert dump(mysql_conn, pg_conn) == first
    with mysql_conn.cursor() as cur:
        cur.execute("SELECT max(updated_at) FROM patients")
        newest = cur.fetchone()[0]
    # Simulated timestamps: the clock start converted to UTC, one tick per operation.
    assert CLOCK.astimezone(dt.UTC).replace(tzinfo=None) < newest < dt.datetime(2025, 7, 1, 12, 30)


def test_stop_event_ends_a_rate_limited_run_cleanly(world_conns: tuple[Any, Any], pg_db: Any) -> None:
    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=2, patients=40)
    before = counts(mysql_conn, pg_conn)
    workload = Workload(mysql_conn, pg_conn, seed=2)
    stop = threading.Event()

    already = workload.run(rate=1000, stop=_set(threading.Event()))
    assert already.operations == 0

    timer = threading.Timer(0.5, stop.set)
    timer.start()
    try:
        stats = workload.run(rate=40, stop=stop)  # unbounded: only the event ends it
    finally:
        timer.cancel()

    assert stats.operations > 0
    after = counts(mysql_conn, pg_conn)
    assert all(after[n] - before[n] == stats.net_rows(n) for n in ALL_TABLES)
    assert open_transactions(mysql_conn, pg_db) == (0, 0)


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


@pytest.mark.parametrize("engine", ["mysql", "postgres"])
def test_interrupt_mid_transaction_rolls_back(world_conns: tuple[Any, Any], pg_db: Any, engine: str) -> None:
    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=4, patients=60)
    before = counts(mysql_conn, pg_conn)
    workload = Workload(mysql_conn, pg_conn, WorkloadConfig(seed=4, keep_journal=True))
    workload.reload()
    actions = workload._actions  # the seam where a Ctrl-C can land between two statements
    assert actions is not None
    original = actions.run
    calls = {"n": 0}

    def run_then_interrupt(cur: Any, table: str, kind: ChangeKind) -> None:
        original(cur, table, kind)
        calls["n"] += 1
        engine_of_table = next(t.engine for t in TABLES if t.name == table)
        # Interrupt after a statement of an uncommitted transaction has changed rows.
        if calls["n"] >= 30 and engine_of_table == engine and actions.pending:
            raise KeyboardInterrupt

    actions.run = run_then_interrupt  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        workload.run_ops(1000)

    committed = workload.totals
    assert 0 < committed.operations < 1000
    after = counts(mysql_conn, pg_conn)
    assert all(after[n] - before[n] == committed.net_rows(n) for n in ALL_TABLES)
    assert open_transactions(mysql_conn, pg_db) == (0, 0)

    # The workload reloads its picture of the world and carries on.
    more = workload.run_ops(50)
    assert more.operations == 50
    final = counts(mysql_conn, pg_conn)
    assert all(final[n] - before[n] == workload.totals.net_rows(n) for n in ALL_TABLES)


def test_workload_config_rejects_unknown_tables_and_naive_clock() -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown tables"):
        WorkloadConfig(table_weights={"patient": 1.0})
    with pytest.raises(pydantic.ValidationError, match="timezone-aware"):
        WorkloadConfig(clock_start=dt.datetime(2025, 1, 1))
    with pytest.raises(pydantic.ValidationError):
        OperationMix(insert=0, update=0, delete=0)


def test_workload_without_a_world_fails_with_a_named_error(world_conns: tuple[Any, Any]) -> None:
    mysql_conn, pg_conn = world_conns
    with pytest.raises(WorkloadError, match="create_world"):
        Workload(mysql_conn, pg_conn, seed=1).run_ops(1)


def test_create_databases_is_idempotent(mysql_db: Any, pg_db: Any) -> None:
    suffix = uuid.uuid4().hex[:8]
    mysql_name, pg_name = f"health_{suffix}", f"tenants_{suffix}"
    mysql_admin, pg_admin = mysql_db.admin_connect(), pg_db.admin_connect()
    try:
        for _ in range(2):
            create_databases(mysql_admin, pg_admin, mysql_database=mysql_name, postgres_database=pg_name)
        with mysql_admin.cursor() as cur:
            cur.execute(
                "SELECT default_character_set_name FROM information_schema.schemata WHERE schema_name = %s",
                (mysql_name,),
            )
            assert cur.fetchone() == ("utf8mb4",)
        with pg_admin.cursor() as cur:
            cur.execute(
                "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = %s", (pg_name,)
            )
            assert cur.fetchone() == ("UTF8",)
        with pytest.raises(WorldError, match="lower_snake_case"):
            create_databases(mysql_admin, pg_admin, mysql_database="Health; DROP", postgres_database=pg_name)
    finally:
        with mysql_admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{mysql_name}`")
        with pg_admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{pg_name}"')


def test_workload_recovers_when_someone_else_deleted_its_rows(world_conns: tuple[Any, Any]) -> None:
    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=12, patients=20)
    config = WorkloadConfig(
        seed=12, table_weights={"SynonymsTable": 1.0}, mix=OperationMix(insert=1, delete=3)
    )
    workload = Workload(mysql_conn, pg_conn, config)
    workload.reload()  # the workload now believes in the seeded synonyms
    with mysql_conn.cursor() as cur:
        cur.execute("DELETE FROM SynonymsTable")

    stats = workload.run_ops(40)

    assert stats.count("SynonymsTable", ChangeKind.INSERT) > 0
    assert counts(mysql_conn, pg_conn)["SynonymsTable"] == stats.net_rows("SynonymsTable")


# ---------------------------------------------------------------------------- MySQL 8 (Aurora MySQL 3)


def _comparable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """JSON documents parsed: MySQL 8 stores JSON in binary and hands back its own spelling of it."""
    return tuple(json.loads(v) if isinstance(v, str) and v[:1] in ("{", "[") else v for v in row)


def test_the_health_database_seeds_identically_on_mysql8(
    world_conns: tuple[Any, Any], mysql8_db: Any
) -> None:
    """create_mysql_world gives MySQL 9.7 the very rows create_world gives MariaDB, and is idempotent."""
    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=13, patients=120)
    mysql8 = mysql8_db.admin_connect()
    with mysql8.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")

    summary = create_mysql_world(mysql8, seed=13, patients=120)

    assert summary.seeded
    assert (
        dict(summary.row_counts) == count_rows(mysql_conn, MYSQL_TABLES) == count_rows(mysql8, MYSQL_TABLES)
    )
    for table in MYSQL_TABLES:
        rows = {}
        for conn in (mysql_conn, mysql8):
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM `{table.name}` ORDER BY {_order_by(table)}")
                rows[conn] = [_comparable(tuple(r)) for r in cur.fetchall()]
        assert rows[mysql8] == rows[mysql_conn], table.name
    with mysql8.cursor() as cur:
        cur.execute("SELECT DISTINCT tenant_id FROM patients")
        tenants = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT max(provider_id) FROM insurance_claims")
        (max_provider,) = cur.fetchone()
    with pg_conn.cursor() as cur:
        cur.execute("SELECT tenant_id FROM tenant_metadata")
        assert tenants <= {r[0] for r in cur.fetchall()}
        cur.execute("SELECT max(provider_id) FROM care_providers")
        assert max_provider <= cur.fetchone()[0]

    again = create_mysql_world(mysql8, seed=99, patients=5)
    assert not again.seeded and dict(again.row_counts) == dict(summary.row_counts)


def test_world_and_workload_run_on_mysql8(world8_conns: tuple[Any, Any]) -> None:
    """The DDL, the seed and every kind of change of the workload work on MySQL 9.7 (GTIDs enforced)."""
    mysql_conn, pg_conn = world8_conns
    summary = create_world(mysql_conn, pg_conn, seed=6, patients=60)
    assert summary.seeded and all(summary.row_counts[name] > 0 for name in ALL_TABLES)
    before = counts(mysql_conn, pg_conn)

    stats = Workload(
        mysql_conn, pg_conn, WorkloadConfig(seed=6, table_weights={n: 1.0 for n in ALL_TABLES})
    ).run_ops(800)

    for name in (t.name for t in MYSQL_TABLES):
        for kind in ChangeKind:
            assert stats.count(name, kind) > 0, (name, kind, stats.by_table())
    after = counts(mysql_conn, pg_conn)
    assert all(after[n] - before[n] == stats.net_rows(n) for n in ALL_TABLES)


def test_create_mysql_database_on_mysql8_uses_utf8mb4_whatever_the_server_default(mysql8_db: Any) -> None:
    """The server's default collation is utf8mb4_0900_ai_ci; the health database spells its own."""
    name = f"health_{uuid.uuid4().hex[:8]}"
    admin = mysql8_db.admin_connect()
    try:
        for _ in range(2):
            create_mysql_database(admin, name)
        with admin.cursor() as cur:
            cur.execute(
                "SELECT default_character_set_name, default_collation_name FROM information_schema.schemata"
                " WHERE schema_name = %s",
                (name,),
            )
            assert cur.fetchone() == ("utf8mb4", "utf8mb4_unicode_ci")
            cur.execute("SELECT @@collation_server")
            assert cur.fetchone() == ("utf8mb4_0900_ai_ci",)
        with pytest.raises(WorldError, match="lower_snake_case"):
            create_mysql_database(admin, "Health; DROP")
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


# ---------------------------------------------------------------------------- issue 13


def _synonyms(mysql_conn: Any) -> list[tuple[Any, ...]]:
    with mysql_conn.cursor() as cur:
        cur.execute("SELECT SynID, Base_Term, Synonym_1, Synonym_2 FROM SynonymsTable ORDER BY SynID")
        return [tuple(r) for r in cur.fetchall()]


def test_workload_leaves_the_seed_synonyms_alone(world_conns: tuple[Any, Any]) -> None:
    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=7, patients=20)
    seeded = _synonyms(mysql_conn)
    assert [row[1:] for row in seeded] == list(catalog.SYNONYMS)

    stats = Workload(
        mysql_conn, pg_conn, WorkloadConfig(seed=11, table_weights={"SynonymsTable": 1})
    ).run_ops(300)

    for kind in ChangeKind:  # the workload still adds, corrects and removes synonyms: its own
        assert stats.count("SynonymsTable", kind) > 0, stats.by_table()
    after = _synonyms(mysql_conn)
    assert after[: len(seeded)] == seeded
    own = {base for base, _, _ in catalog.EXTRA_SYNONYMS}
    assert all(row[1] in own for row in after[len(seeded) :])


def test_the_workload_runs_twice_with_the_same_seed(world_conns: tuple[Any, Any]) -> None:
    """Same seed, same draws: the second run must not repeat the first run's unique values (e-mails, plan codes)."""
    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=7, patients=50)
    weights = {"patients": 5, "fitness_plans": 2, "tenant_metadata": 1, "care_providers": 1}
    config = WorkloadConfig(seed=11, table_weights=weights, mix=OperationMix(insert=1, update=1, delete=0))
    for _ in range(2):
        assert Workload(mysql_conn, pg_conn, config).run_ops(200).operations == 200
    with mysql_conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT email) FROM patients WHERE email IS NOT NULL")
        total, distinct = cur.fetchone()
    assert total == distinct


def test_a_failing_part_stops_the_other_promptly(world_conns: tuple[Any, Any]) -> None:
    from pipelines.world.runs import WorkloadPart, run_parts

    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=7, patients=20)
    sql = Workload(mysql_conn, pg_conn, seed=11)
    seen: list[float] = []

    def failing(stop: threading.Event) -> Any:
        stop.wait(0.3)
        raise RuntimeError("duplicate entry\nfor key")

    started = time.monotonic()
    with pytest.raises(WorkloadError, match="^device workload failed: duplicate entry for key$"):
        run_parts(
            [
                WorkloadPart("database", lambda stop: sql.run(rate=20, duration=60, stop=stop)),
                WorkloadPart("device", failing),
            ],
            threading.Event(),
        )
    seen.append(time.monotonic() - started)
    assert seen[0] < 3, seen
    assert sql.totals.operations > 0  # it was running, and stopped between two transactions
    assert open_transactions(mysql_conn, _PgName(pg_conn)) == (0, 0)


class _PgName:
    """Enough of a TestDatabase for ``open_transactions``: the database of ``conn``."""

    def __init__(self, conn: Any) -> None:
        self.name = conn.info.dbname
        self._conn = conn

    def admin_connect(self) -> Any:
        return self._conn


def test_lakehouse_workload_stops_within_two_seconds_of_sigint(
    mysql_db: Any, pg_db: Any, tmp_path: Path
) -> None:
    create_world(mysql_db.admin_connect(), pg_db.admin_connect(), seed=7, patients=20)
    config = tmp_path / "lakehouse.toml"
    config.write_text(
        f"""
[lake]
root = "{tmp_path / "lake"}"

[[sources]]
name = "aurora_mysql"
kind = "mysql"
host = "{mysql_db.host}"
port = {mysql_db.port}
user = "{mysql_db.cdc_user}"
password = "{mysql_db.cdc_password.get_secret_value()}"
database = "{mysql_db.name}"
tables = ["patients"]

[[sources]]
name = "aurora_postgres"
kind = "postgres"
host = "{pg_db.host}"
port = {pg_db.port}
user = "{pg_db.cdc_user}"
password = "{pg_db.cdc_password.get_secret_value()}"
database = "{pg_db.name}"
tables = ["tenant_metadata"]
"""
    )
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "--config",
        str(config),
        "workload",
        "--rate",
        "50",
        "--seconds",
        "120",
    ]
    probe = mysql_db.admin_connect()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _patients(probe) <= 20:  # wait until it writes
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < 2, (took, err)
    assert proc.returncode == 0, err
    assert "database workload:" in out and "operations" in out


def _patients(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM patients")
        return int(cur.fetchone()[0])


def test_the_tenants_databases_rows_are_isolated_by_rls_per_tenant_role(world_conns: tuple[Any, Any]) -> None:
    """As in the seed design: the tenant's own database role sees only its own rows."""
    from psycopg2 import sql

    mysql_conn, pg_conn = world_conns
    create_world(mysql_conn, pg_conn, seed=11, patients=60)
    pg_conn.autocommit = False  # the roles below are rolled back with the transaction
    try:
        with pg_conn.cursor() as cur:
            cur.execute("SELECT tenant_id, count(*) FROM care_providers GROUP BY 1 ORDER BY 1")
            providers = dict(cur.fetchall())
            assert len(providers) >= 2
            for tenant, count in list(providers.items())[:2]:
                role = sql.Identifier(tenant)  # the policy compares tenant_id with current_user
                cur.execute(sql.SQL("CREATE ROLE {}").format(role))
                cur.execute(sql.SQL("GRANT SELECT ON tenant_metadata, care_providers TO {}").format(role))
                cur.execute(sql.SQL("SET ROLE {}").format(role))
                cur.execute(
                    "SELECT DISTINCT tenant_id FROM care_providers UNION SELECT tenant_id FROM tenant_metadata"
                )
                assert [r[0] for r in cur.fetchall()] == [tenant]
                cur.execute("SELECT count(*) FROM care_providers")
                assert cur.fetchone()[0] == count
                cur.execute("RESET ROLE")
    finally:
        pg_conn.rollback()
