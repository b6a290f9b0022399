"""Redshift DDL from the declared schemas and views: golden text, parse-back, quoting, validation."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest
import sqlglot
from pydantic import ValidationError
from sqlglot import exp
from sqlglot.tokens import TokenType

from connectors.catalog.redshift_config import (
    FederatedSchema,
    RedshiftConfig,
    SpectrumSchema,
    UnionView,
    ViewSource,
)
from connectors.catalog.redshift_ddl import (
    create_external_schema,
    create_spectrum_schema,
    create_view,
    drop_external_schema,
    render_view_for,
)

ROLE = "arn:aws:iam::123456789012:role/redshift-federated"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:aurora/cdc-AbCdEf"
PASSWORD = "s3cr3t-hunter2"


def mysql(**overrides: Any) -> FederatedSchema:
    args: dict[str, Any] = {
        "name": "live_mysql",
        "engine": "MYSQL",
        "database": "shop",
        "uri": "aurora.cluster-x.us-east-1.rds.amazonaws.com",
        "iam_role_arn": ROLE,
        "secret_arn": SECRET,
    }
    return FederatedSchema(**{**args, **overrides})


def postgres(**overrides: Any) -> FederatedSchema:
    args: dict[str, Any] = {
        "name": "live_pg",
        "engine": "POSTGRES",
        "database": "app",
        "schema_name": "public",
        "uri": "pg.example.com",
        "port": 5433,
        "iam_role_arn": ROLE,
        "secret_arn": SECRET,
    }
    return FederatedSchema(**{**args, **overrides})


def customers_view(**overrides: Any) -> UnionView:
    args: dict[str, Any] = {
        "schema": "analytics",
        "name": "customers",
        "columns": ("id", "email"),
        "sources": (
            ViewSource(schema="public", table="customers", label="warehouse"),
            ViewSource(schema="live_mysql", table="customer", columns=("customer_id", "email"), label="live"),
            ViewSource(schema="lake", table="customers", label="lake"),
        ),
    }
    return UnionView(**{**args, **overrides})


def field_errors(excinfo: pytest.ExceptionInfo[ValidationError]) -> dict[str, str]:
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in excinfo.value.errors()}


# --- golden DDL -------------------------------------------------------------------------------


def test_mysql_external_schema_golden() -> None:
    assert create_external_schema(mysql()) == (
        "CREATE EXTERNAL SCHEMA IF NOT EXISTS \"live_mysql\" FROM MYSQL DATABASE 'shop' "
        "URI 'aurora.cluster-x.us-east-1.rds.amazonaws.com' PORT 3306 "
        f"IAM_ROLE '{ROLE}' SECRET_ARN '{SECRET}'"
    )


def test_postgres_external_schema_golden() -> None:
    assert create_external_schema(postgres()) == (
        "CREATE EXTERNAL SCHEMA IF NOT EXISTS \"live_pg\" FROM POSTGRES DATABASE 'app' "
        "SCHEMA 'public' URI 'pg.example.com' PORT 5433 "
        f"IAM_ROLE '{ROLE}' SECRET_ARN '{SECRET}'"
    )


def test_postgres_default_port_is_stated() -> None:
    assert " PORT 5432 " in create_external_schema(postgres(port=None))


def test_data_catalog_schema_golden() -> None:
    minimal = SpectrumSchema(name="lake", glue_database="lakehouse_db", iam_role_arn=ROLE)
    assert create_spectrum_schema(minimal) == (
        'CREATE EXTERNAL SCHEMA IF NOT EXISTS "lake" FROM DATA CATALOG '
        f"DATABASE 'lakehouse_db' IAM_ROLE '{ROLE}'"
    )
    full = SpectrumSchema(
        name="lake",
        glue_database="lakehouse_db",
        iam_role_arn=ROLE,
        region="eu-west-1",
        create_external_database=True,
    )
    assert create_spectrum_schema(full) == (
        'CREATE EXTERNAL SCHEMA IF NOT EXISTS "lake" FROM DATA CATALOG '
        f"DATABASE 'lakehouse_db' REGION 'eu-west-1' IAM_ROLE '{ROLE}' "
        "CREATE EXTERNAL DATABASE IF NOT EXISTS"
    )


def test_drop_golden() -> None:
    assert drop_external_schema("live_mysql") == 'DROP SCHEMA IF EXISTS "live_mysql"'
    assert drop_external_schema("live_mysql", cascade=True) == ('DROP SCHEMA IF EXISTS "live_mysql" CASCADE')


def test_view_golden() -> None:
    assert create_view(customers_view()) == (
        'CREATE OR REPLACE VIEW "analytics"."customers" AS '
        'SELECT "id", "email", \'warehouse\' AS "source" FROM "public"."customers" '
        'UNION ALL SELECT "customer_id" AS "id", "email", \'live\' AS "source" '
        'FROM "live_mysql"."customer" '
        'UNION ALL SELECT "id", "email", \'lake\' AS "source" FROM "lake"."customers" '
        "WITH NO SCHEMA BINDING"
    )


@pytest.mark.parametrize("dialect", ["athena", "duckdb"])
def test_view_for_other_engines_drops_redshift_only_syntax(dialect: str) -> None:
    sql = render_view_for(customers_view(), dialect)  # type: ignore[arg-type]
    assert sql == create_view(customers_view()).removesuffix(" WITH NO SCHEMA BINDING")
    assert "SCHEMA BINDING" not in sql
    assert isinstance(sqlglot.parse_one(sql, read=dialect), exp.Create)


def test_view_for_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="snowflake"):
        render_view_for(customers_view(), "snowflake")  # type: ignore[arg-type]


# --- parse back -------------------------------------------------------------------------------


def test_view_parses_back_to_the_same_tree() -> None:
    sql = create_view(customers_view())
    parsed = sqlglot.parse_one(sql, read="redshift")
    assert isinstance(parsed, exp.Create)
    assert parsed.kind == "VIEW"
    assert parsed.args.get("no_schema_binding")
    assert isinstance(parsed.expression, exp.Union)
    assert parsed.expression.args.get("distinct") is False
    assert parsed.sql(dialect="redshift") == sql


def test_drop_parses_back() -> None:
    sql = drop_external_schema("a b")
    parsed = sqlglot.parse_one(sql, read="redshift")
    assert isinstance(parsed, exp.Drop)
    assert parsed.kind == "SCHEMA"
    assert parsed.sql(dialect="redshift") == sql


@pytest.mark.parametrize(
    ("sql", "name"),
    [
        (create_external_schema(mysql()), "live_mysql"),
        (create_external_schema(postgres(name='we"ird Schema', schema_name="It's")), 'we"ird Schema'),
        (
            create_spectrum_schema(
                SpectrumSchema(
                    name="lake",
                    glue_database="db",
                    iam_role_arn=ROLE,
                    region="us-west-2",
                    create_external_database=True,
                )
            ),
            "lake",
        ),
    ],
)
def test_external_schema_parses_as_stable_command(sql: str, name: str) -> None:
    # sqlglot has no grammar for CREATE EXTERNAL SCHEMA: it keeps the statement as a Command,
    # which must re-render unchanged, and its tokens must show the name as one quoted identifier
    # followed by FROM (so no quote inside a name or literal broke out of its token).
    parsed = sqlglot.parse_one(sql, read="redshift")
    assert isinstance(parsed, exp.Command)
    assert parsed.sql(dialect="redshift") == sql
    tokens = sqlglot.tokenize(sql, read="redshift")
    assert [t.text for t in tokens[:6]] == ["CREATE", "EXTERNAL", "SCHEMA", "IF", "NOT", "EXISTS"]
    assert tokens[6].text == name and tokens[6].token_type == TokenType.IDENTIFIER
    assert tokens[7].text == "FROM"
    strings = [t.text for t in tokens if t.token_type == TokenType.STRING]
    assert strings[-2:] in ([ROLE, SECRET], ["us-west-2", ROLE])


# --- quoting ----------------------------------------------------------------------------------

AWKWARD = ["with space", 'dq"inside', "MixedCase", "select", "user", "naïve_ünïcödé", "日本"]


@pytest.mark.parametrize("name", AWKWARD)
def test_awkward_schema_names_are_quoted(name: str) -> None:
    quoted = '"' + name.replace('"', '""') + '"'
    ddl = create_external_schema(mysql(name=name))
    assert ddl.startswith(f"CREATE EXTERNAL SCHEMA IF NOT EXISTS {quoted} FROM MYSQL ")
    drop = drop_external_schema(name)
    assert drop == f"DROP SCHEMA IF EXISTS {quoted}"
    assert sqlglot.parse_one(drop, read="redshift").find(exp.Identifier).this == name  # type: ignore[union-attr]


@pytest.mark.parametrize("name", AWKWARD)
def test_awkward_view_identifiers_round_trip(name: str) -> None:
    view = UnionView(
        schema=name,
        name=name,
        columns=(name, "plain"),
        sources=(ViewSource(schema=name, table=name, label="a"),),
        source_column="src",
    )
    sql = create_view(view)
    parsed = sqlglot.parse_one(sql, read="redshift")
    names = {i.this for i in parsed.find_all(exp.Identifier)}
    assert names == {name, "plain", "src"}
    assert all(i.quoted for i in parsed.find_all(exp.Identifier))


def test_single_quote_in_literals_is_escaped() -> None:
    view = customers_view(sources=(ViewSource(schema="s", table="t", label="O'Brien's"),), columns=("id",))
    sql = create_view(view)
    literal = sqlglot.parse_one(sql, read="redshift").find(exp.Literal)
    assert literal is not None and literal.this == "O'Brien's"
    ddl = create_external_schema(mysql(database="it's"))
    assert "DATABASE 'it\\'s'" in ddl  # sqlglot's Redshift escape; Redshift accepts \' and ''
    strings = [t.text for t in sqlglot.tokenize(ddl, read="redshift") if t.token_type == TokenType.STRING]
    assert strings[0] == "it's"


def test_duckdb_rendering_runs_with_awkward_names() -> None:
    """The DuckDB rendering is executed for real, so its quoting is checked by an engine."""
    odd_schema, odd_table, odd_col = 'we"ird Schema', "select", "User Name"
    view = UnionView(
        schema="main",
        name="Everyone's",
        columns=("id", odd_col),
        sources=(
            ViewSource(schema=odd_schema, table=odd_table, label="it's odd"),
            ViewSource(schema="main", table="plain", columns=("pk", "nm"), label="plain"),
        ),
    )
    con = duckdb.connect()
    con.execute('CREATE SCHEMA "we""ird Schema"')
    con.execute('CREATE TABLE "we""ird Schema"."select" (id INTEGER, "User Name" VARCHAR)')
    con.execute("""INSERT INTO "we""ird Schema"."select" VALUES (1, 'ann')""")
    con.execute("CREATE TABLE main.plain (pk INTEGER, nm VARCHAR)")
    con.execute("INSERT INTO main.plain VALUES (2, 'bob')")
    con.execute(render_view_for(view, "duckdb"))
    rows = con.execute("""SELECT * FROM main."Everyone's" ORDER BY id""").fetchall()
    assert rows == [(1, "ann", "it's odd"), (2, "bob", "plain")]
    assert [d[0] for d in con.description] == ["id", "User Name", "source"]


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("iam_role_arn", "arn:aws:iam::12345:role/short-account"),
        ("iam_role_arn", "arn:aws:iam::123456789012:user/not-a-role"),
        ("iam_role_arn", f"{ROLE},arn:aws:s3:::bucket"),
        ("secret_arn", "arn:aws:secretsmanager:us-east-1:123456789012:parameter/x"),
        ("secret_arn", PASSWORD),
        ("uri", "mysql://host:3306/db"),
        ("port", 70000),
        ("name", ""),
        ("name", "x" * 128),
    ],
)
def test_bad_federated_fields_are_named(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as excinfo:
        mysql(**{field: value})
    assert list(field_errors(excinfo)) == [field]


def test_role_chain_is_accepted() -> None:
    chain = f"{ROLE},arn:aws:iam::210987654321:role/cross-account"
    assert f"IAM_ROLE '{chain}'" in create_external_schema(mysql(iam_role_arn=chain))


def test_postgres_requires_schema_and_mysql_refuses_it() -> None:
    with pytest.raises(ValidationError) as excinfo:
        postgres(schema_name=None)
    assert "required when engine is POSTGRES" in field_errors(excinfo)["schema_name"]
    with pytest.raises(ValidationError) as excinfo:
        mysql(schema_name="public")
    assert "schema_name" in field_errors(excinfo)


def test_spectrum_region_and_role_are_checked() -> None:
    with pytest.raises(ValidationError) as excinfo:
        SpectrumSchema(name="lake", glue_database="db", iam_role_arn="role", region="Europe")
    assert set(field_errors(excinfo)) == {"iam_role_arn", "region"}


def test_view_shape_errors_are_named() -> None:
    with pytest.raises(ValidationError) as excinfo:
        customers_view(source_column="ID")
    assert "source_column" in field_errors(excinfo)
    with pytest.raises(ValidationError) as excinfo:
        customers_view(sources=(ViewSource(schema="s", table="t", columns=("a",), label="x"),))
    assert "1 columns, the view has 2" in field_errors(excinfo)["sources"]
    with pytest.raises(ValidationError) as excinfo:
        customers_view(
            sources=(
                ViewSource(schema="s", table="t", label="x"),
                ViewSource(schema="s", table="u", label="x"),
            )
        )
    assert "labels must be distinct" in field_errors(excinfo)["sources"]
    with pytest.raises(ValidationError) as excinfo:
        customers_view(columns=("id", "ID"))
    assert "duplicate column" in field_errors(excinfo)["columns"]


def test_config_refuses_clashing_schema_names() -> None:
    with pytest.raises(ValidationError, match="federated/spectrum/views: duplicate external schema"):
        RedshiftConfig(
            federated=(mysql(name="Lake"),),
            spectrum=(SpectrumSchema(name="lake", glue_database="db", iam_role_arn=ROLE),),
        )


def test_models_are_frozen_and_closed() -> None:
    schema = mysql()
    with pytest.raises(ValidationError):
        schema.database = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError) as excinfo:
        mysql(password=PASSWORD)
    assert "password" in field_errors(excinfo)


# --- secrets ----------------------------------------------------------------------------------


def test_secrets_appear_only_as_arns() -> None:
    """No field can carry a credential, and the DDL states the secret only by its ARN."""
    assert not {"password", "user", "username"} & set(FederatedSchema.model_fields)
    ddl = create_external_schema(mysql())
    assert PASSWORD not in ddl
    tokens = [t.text for t in sqlglot.tokenize(ddl, read="redshift")]
    secret_value = tokens[tokens.index("SECRET_ARN") + 1]
    assert secret_value == SECRET
    config_dump = RedshiftConfig(federated=(mysql(), postgres())).model_dump_json()
    assert PASSWORD not in config_dump
