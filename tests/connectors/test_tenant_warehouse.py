"""Tenants in the warehouse (issue 16): per-tenant DuckDB views, PostgreSQL roles and row-level
security enforcing them, and the Redshift RLS DDL published through the fake Data API.

The lake holds two tenants' patients (a column table) and insurance claims (a `via` table whose
tenant is its patient's), plus a patient whose tenant id is not a slug. Every tenant must see
exactly its rows of every table, be refused the other's schema where the component can refuse, and
a patient moved to the other tenant must move with its claims after the next merge and publish.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from connectors.catalog.tenant_views import TenantError, check_tenant_id, tenant_name
from connectors.catalog.tenant_warehouse import (
    TenantLayout,
    create_duckdb_tenant_views,
    publish_postgres_tenants,
    read_layout,
)
from connectors.catalog.warehouse import connect, register_lake
from connectors.events import Batch, Column, TableChanges, TableId, TableSchema
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.postgres.offset import Lsn
from connectors.tenancy import TenancyConfig

SOURCE = "aurora_mysql"
PATIENTS = TableId(SOURCE, "health", "patients")
CLAIMS = TableId(SOURCE, "health", "insurance_claims")
LAKE_NAMES = {SOURCE: {"patients": "health__patients", "insurance_claims": "health__insurance_claims"}}
TENANCY = TenancyConfig.model_validate(
    {
        "tag_key": "tenant",
        "tables": {
            f"{SOURCE}.patients": {"column": "tenant_id"},
            f"{SOURCE}.insurance_claims": {
                "via": {"table": "patients", "column": "patient_id", "key": "patient_id"}
            },
        },
    }
)
PATIENT_SCHEMA = TableSchema(
    PATIENTS,
    (Column("patient_id", pa.int64()), Column("tenant_id", pa.string()), Column("email", pa.string())),
    ("patient_id",),
)
CLAIM_SCHEMA = TableSchema(
    CLAIMS,
    (
        Column("claim_id", pa.int64()),
        Column("patient_id", pa.int64()),
        Column("amount", pa.decimal128(12, 2)),
    ),
    ("claim_id",),
)
T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
BAD_TENANT = "o'brien clinic"


def _changes(sch: TableSchema, rows: list[tuple[str, int, dict[str, Any]]]) -> TableChanges:
    return TableChanges.from_rows(
        sch,
        [
            {"Op": op, "_commit_ts": T0, "_position": str(Lsn(lsn)), "_txid": str(lsn), **v}
            for op, lsn, v in rows
        ],
    )


class World:
    """Two tenants with patients and claims in a fresh lake; ids unique per test (PostgreSQL roles
    are cluster-wide)."""

    def __init__(self, root: Path) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.a, self.b = f"clinic-a{suffix}", f"clinic-b{suffix}"
        self.lake = Lake(LakeConfig(root=str(root)))
        patients = [(1, self.a), (2, self.a), (3, self.b), (4, self.b), (5, BAD_TENANT)]
        self.owner = dict(patients)
        claims = (
            [(10 + p, p) for p, _ in patients] + [(20 + p, p) for p, _ in patients if p % 2] + [(99, 404)]
        )
        self.claims = dict(claims)  # claim -> patient; claim 99's patient does not exist
        batch = Batch(
            start=None,
            end=Lsn(5),
            changes=(
                _changes(
                    PATIENT_SCHEMA,
                    [
                        ("I", 5, {"patient_id": p, "tenant_id": t, "email": f"p{p}@x.example"})
                        for p, t in patients
                    ],
                ),
                _changes(
                    CLAIM_SCHEMA,
                    [
                        ("I", 5, {"claim_id": c, "patient_id": p, "amount": Decimal("12.50")})
                        for c, p in claims
                    ],
                ),
            ),
            snapshot=frozenset({PATIENTS, CLAIMS}),
            floors={PATIENTS: Lsn(5), CLAIMS: Lsn(5)},
        )
        self.lake.writer(SOURCE).write(batch)
        self.lake.current(SOURCE).merge()

    def move(self, patient: int, tenant: str) -> None:
        """Patient `patient` changes tenant in the source; merged into the current state."""
        row = {"patient_id": patient, "tenant_id": tenant, "email": f"p{patient}@x.example"}
        batch = Batch(start=Lsn(5), end=Lsn(6), changes=(_changes(PATIENT_SCHEMA, [("U", 6, row)]),))
        self.lake.writer(SOURCE).write(batch)
        self.lake.current(SOURCE).merge()
        self.owner[patient] = tenant

    def expected(self, tenant: str) -> dict[str, set[int]]:
        patients = {p for p, t in self.owner.items() if t == tenant}
        return {
            "health__patients": patients,
            "health__insurance_claims": {c for c, p in self.claims.items() if p in patients},
        }


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "lake")


def _duckdb(world: World) -> tuple[Any, TenantLayout]:
    con = connect(federation=True)
    register_lake(con, world.lake, [SOURCE])
    return con, read_layout(con, TENANCY, LAKE_NAMES)


def _ids(rows: list[tuple[Any, ...]]) -> set[int]:
    return {int(r[0]) for r in rows}


# -- layout and names --------------------------------------------------------------------------------


def test_layout_finds_tables_and_tenants_and_refuses_unsafe_ids(world: World) -> None:
    con, layout = _duckdb(world)
    assert [(t.lake_table, t.tenant_column, t.via is not None) for t in layout.tables] == [
        ("health__patients", "tenant_id", False),
        ("health__insurance_claims", "tenant_id", True),
    ]
    assert layout.tenants == sorted([world.a, world.b])
    assert layout.refused == [BAD_TENANT]
    con.close()


@pytest.mark.parametrize("bad", ["o'brien", "two words", 'q"uote', "UPPER", "a.b", "", "x" * 49, "-lead"])
def test_unsafe_tenant_ids_are_rejected(bad: str) -> None:
    with pytest.raises(TenantError):
        check_tenant_id(bad)
    with pytest.raises(TenantError):
        tenant_name("tenant", bad)


# -- DuckDB ------------------------------------------------------------------------------------------


def test_duckdb_tenant_schemas_hold_exactly_each_tenants_rows_and_follow_a_move(world: World) -> None:
    con, layout = _duckdb(world)
    created = create_duckdb_tenant_views(con, layout)
    assert len(created) == 4  # 2 tenants x 2 tables
    for tenant in (world.a, world.b):
        schema = tenant_name("tenant", tenant)
        for table, ids in world.expected(tenant).items():
            assert _ids(con.sql(f'SELECT * FROM "{schema}"."{table}"').fetchall()) == ids, (tenant, table)
        claims = con.sql(f'SELECT DISTINCT tenant_id FROM "{schema}"."health__insurance_claims"').fetchall()
        assert claims == [(tenant,)]
    # Nobody sees the refused tenant's rows, nor the claim without a patient.
    everyone = set().union(*(world.expected(t)["health__insurance_claims"] for t in (world.a, world.b)))
    assert 99 not in everyone and 15 not in everyone
    con.close()

    world.move(1, world.b)  # patient 1 (and claims 11, 21) now belong to tenant B
    con, layout = _duckdb(world)
    create_duckdb_tenant_views(con, layout)
    a, b = tenant_name("tenant", world.a), tenant_name("tenant", world.b)
    assert _ids(con.sql(f'SELECT * FROM "{a}".health__insurance_claims').fetchall()) == {12}
    assert _ids(con.sql(f'SELECT * FROM "{b}".health__insurance_claims').fetchall()) == {11, 13, 14, 21, 23}
    assert _ids(con.sql(f'SELECT * FROM "{b}".health__patients').fetchall()) == {1, 3, 4}
    con.close()


# -- PostgreSQL: the refusal is the database's ----------------------------------------------------


@pytest.fixture
def tenant_pg(pg_db: Any, world: World) -> Iterator[tuple[Any, str]]:
    admin = pg_db.admin_connect()
    password = pg_db.admin_password.get_secret_value()
    dsn = (
        f"host={pg_db.host} port={pg_db.port} dbname={pg_db.name} user={pg_db.admin_user} password={password}"
    )
    yield admin, dsn
    with admin.cursor() as cur:
        for tenant in (world.a, world.b):
            role = tenant_name("tenant", tenant)
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if cur.fetchone():
                cur.execute(f'DROP OWNED BY "{role}"')
                cur.execute(f'DROP ROLE "{role}"')


def _as_role(admin: Any, role: str, sql: str) -> set[int]:
    with admin.cursor() as cur:
        cur.execute(f'SET ROLE "{role}"')
        try:
            cur.execute(sql)
            return _ids(cur.fetchall())
        finally:
            cur.execute("RESET ROLE")


def test_postgres_roles_see_only_their_rows_and_are_refused_the_other_schema(
    world: World, tenant_pg: tuple[Any, str]
) -> None:
    admin, dsn = tenant_pg
    con, layout = _duckdb(world)
    publish_postgres_tenants(con, admin, dsn, layout)
    for tenant, other in ((world.a, world.b), (world.b, world.a)):
        role, other_schema = tenant_name("tenant", tenant), tenant_name("tenant", other)
        for table, ids in world.expected(tenant).items():
            assert _as_role(admin, role, f'SELECT * FROM "{role}"."{table}"') == ids
            # The shared table too: row-level security, not the view's filter, decides.
            assert _as_role(admin, role, f'SELECT * FROM "{SOURCE}"."{table}"') == ids
        with pytest.raises(Exception, match="permission denied for schema"):
            _as_role(admin, role, f'SELECT * FROM "{other_schema}".health__patients')
        admin.rollback() if not admin.autocommit else None

    # Publishing again is idempotent; a moved patient moves with its claims.
    world.move(1, world.b)
    con.close()
    con, layout = _duckdb(world)
    publish_postgres_tenants(con, admin, dsn, layout)
    a, b = tenant_name("tenant", world.a), tenant_name("tenant", world.b)
    assert _as_role(admin, a, f'SELECT * FROM "{a}".health__insurance_claims') == {12}
    assert _as_role(admin, b, f'SELECT * FROM "{b}".health__insurance_claims') == {11, 13, 14, 21, 23}
    assert _as_role(admin, b, f'SELECT * FROM "{SOURCE}".health__patients') == {1, 3, 4}
    con.close()


# -- Redshift: structure of the DDL, and publish through the fake Data API --------------------------

ROLE_ARN = "arn:aws:iam::123456789012:role/spectrum"


def _rls_layout(world: World) -> Any:
    from connectors.catalog.redshift_config import SpectrumSchema
    from connectors.catalog.tenant_rls import rls_layout

    con, layout = _duckdb(world)
    con.close()
    spectrum = [SpectrumSchema(name="lake_health", glue_database=SOURCE, iam_role_arn=ROLE_ARN)]
    return spectrum, rls_layout("tenant", spectrum, layout.tables, layout.tenants, layout.refused)


def test_redshift_ddl_attaches_one_policy_per_tenant_to_every_view(world: World) -> None:
    import sqlglot

    from connectors.catalog.tenant_rls import RlsState, plan_rls

    _, layout = _rls_layout(world)
    actions = plan_rls(layout, RlsState())
    kinds = {a.kind for a in actions}
    assert kinds == {"create_tenant_view", "create_role", "create_policy", "attach_policy", "refused_tenant"}
    views = {a.name for a in actions if a.kind == "create_tenant_view"}
    assert views == {"lake_health_tenant.health__patients", "lake_health_tenant.health__insurance_claims"}
    roles = {a.name for a in actions if a.kind == "create_role"}
    assert roles == {f"tenant_{world.a}", f"tenant_{world.b}"}
    attached: dict[str, set[str]] = {}
    for action in actions:
        if action.kind != "attach_policy":
            continue
        attach = action.statements[0]
        # ATTACH RLS POLICY "<policy>" ON "<schema>"."<view>" TO ROLE "<role>": all names quoted.
        tokens = sqlglot.Dialect.get_or_raise("redshift").tokenize(attach)
        names = [t.text for t in tokens if t.token_type == sqlglot.tokens.TokenType.IDENTIFIER]
        policy, schema, view, role = names
        assert policy == f"{role}__tenant_id" and schema == "lake_health_tenant"
        attached.setdefault(view, set()).add(role)
        assert action.statements[1:] == (
            f'GRANT USAGE ON SCHEMA "{schema}" TO ROLE "{role}"',
            f'GRANT SELECT ON "{schema}"."{view}" TO ROLE "{role}"',
        )
    assert attached == {v.split(".")[1]: roles for v in views}  # every view, to exactly each tenant role
    policies = {a.name: a.statements[0] for a in actions if a.kind == "create_policy"}
    assert policies[f"tenant_{world.a}__tenant_id"] == (
        f'CREATE RLS POLICY "tenant_{world.a}__tenant_id" WITH ("tenant_id" VARCHAR(64)) '
        f"USING (\"tenant_id\" = '{world.a}')"
    )
    claims = next(
        a for a in actions if a.name.endswith("insurance_claims") and a.kind == "create_tenant_view"
    )
    create = sqlglot.parse_one(claims.statements[1], read="redshift")
    join = create.find(sqlglot.exp.Join)
    assert join is not None and join.this.sql("redshift") == '"lake_health"."health__patients" AS "owner"'
    assert claims.statements[2].endswith("ROW LEVEL SECURITY ON")
    refused = [a for a in actions if a.kind == "refused_tenant"]
    assert [a.statements for a in refused] == [()] and BAD_TENANT in refused[0].name
    assert all(BAD_TENANT not in s for a in actions for s in a.statements)


def test_redshift_publish_is_idempotent_and_repairs_a_dropped_or_altered_policy(world: World) -> None:
    from connectors.catalog.redshift_config import RedshiftConfig
    from connectors.catalog.redshift_data import DataApiRunner
    from connectors.catalog.redshift_publish import RedshiftPublisher
    from tests.fakes.redshift_data import FakeRedshiftData, RedshiftDataServer
    from tests.fakes.redshift_rls import FakeRlsCatalog, visible_rows
    from tests.redshift_support import CLUSTER, FakeTime, ResponseAudit, make_client

    spectrum, layout = _rls_layout(world)
    catalog = FakeRlsCatalog()
    fake = FakeRedshiftData(polls_to_finish=1, catalog=catalog)
    audit, clock = ResponseAudit(), FakeTime()
    with RedshiftDataServer(fake) as server:
        runner = DataApiRunner(make_client(server, audit), CLUSTER, sleep=clock.sleep, clock=clock.clock)
        publisher = RedshiftPublisher(runner, RedshiftConfig(spectrum=tuple(spectrum)), tenants=layout)
        first = publisher.publish()
        a, b = f"tenant_{world.a}", f"tenant_{world.b}"
        assert catalog.roles == {a, b}
        assert (
            catalog.rls_on
            == set(catalog.mvs)
            == {
                ("lake_health_tenant", "health__patients"),
                ("lake_health_tenant", "health__insurance_claims"),
            }
        )
        rows = [{"tenant_id": world.a, "n": 1}, {"tenant_id": world.b, "n": 2}]
        assert visible_rows(catalog, "lake_health_tenant", "health__patients", a, rows) == rows[:1]
        assert visible_rows(catalog, "lake_health_tenant", "health__patients", b, rows) == rows[1:]
        assert visible_rows(catalog, "lake_health_tenant", "health__patients", "analyst", rows) == []
        assert len(first.changes) > 0

        refreshed = len(catalog.refreshed)
        again = publisher.publish()
        assert again.changes == []  # the DDL is a no-op; only the views are refreshed
        assert len(catalog.refreshed) == refreshed + 2

        # Drift: a policy dropped (detached with it), another altered, RLS turned off on a view.
        runner.execute(f'DROP RLS POLICY "{a}__tenant_id" CASCADE')
        catalog.policies[f"{b}__tenant_id"].qual = "\"tenant_id\" = 'someone-else'"
        catalog.rls_on.discard(("lake_health_tenant", "health__insurance_claims"))
        repair = publisher.publish()
        assert sorted({x.kind for x in repair.changes}) == [
            "attach_policy",
            "create_policy",
            "replace_policy",
            "rls_on",
        ]
        assert visible_rows(catalog, "lake_health_tenant", "health__patients", a, rows) == rows[:1]
        assert visible_rows(catalog, "lake_health_tenant", "health__insurance_claims", b, rows) == rows[1:]
        assert publisher.publish().changes == []
    assert server.response_problems == [] and audit.problems == []
