"""Redshift DDL for the declared federated schemas, Spectrum schema and cross-source views.

Every statement is a sqlglot expression rendered for a dialect, so identifiers and string literals
are quoted by sqlglot whatever they contain (spaces, quotes, reserved words, unicode); nothing is
pasted into SQL text. Identifiers are always quoted: that makes reserved words safe and the output
deterministic, which the drift check relies on.

sqlglot (30.x) has no node for Redshift's `CREATE EXTERNAL SCHEMA ... FROM MYSQL | POSTGRES |
DATA CATALOG <options>` and parses that statement only as a generic `exp.Command`. So the
statement is an ordinary `exp.Create(kind="SCHEMA")` carrying sqlglot's own `ExternalProperty`
(which renders `CREATE EXTERNAL SCHEMA`) plus one small custom property, `ExternalSchemaSource`,
for the `FROM ...` clause. Its option keywords are fixed by this module and its values are
`exp.Literal` nodes, so quoting still goes through sqlglot. The custom node is rendered by a
private subclass of sqlglot's Redshift generator rather than by registering a transform on the
shared generator class, which would leak into every other caller of sqlglot in the process (and
sqlglot caches each generator class's dispatch table at first use, so late registration is
unreliable anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

from sqlglot import exp
from sqlglot.errors import ErrorLevel
from sqlglot.generator import Generator
from sqlglot.generators.redshift import RedshiftGenerator

from connectors.catalog.redshift_config import FederatedSchema, SpectrumSchema, UnionView

ViewDialect = Literal["redshift", "athena", "duckdb"]


class ExternalSchemaOption(exp.Expression):
    """One `KEYWORD value` option of CREATE EXTERNAL SCHEMA; a bare keyword when value is unset."""

    arg_types = {"this": True, "value": False}


class ExternalSchemaSource(exp.Expression):
    """The `FROM <source> <option> ...` clause of Redshift's CREATE EXTERNAL SCHEMA."""

    arg_types = {"this": True, "expressions": True}


def _option_sql(self: Generator, expression: ExternalSchemaOption) -> str:
    value = self.sql(expression, "value")
    return f"{self.sql(expression, 'this')} {value}" if value else self.sql(expression, "this")


def _source_sql(self: Generator, expression: ExternalSchemaSource) -> str:
    options = self.expressions(expression, sep=" ", flat=True)
    return f"FROM {self.sql(expression, 'this')} {options}"


class _RedshiftDDLGenerator(RedshiftGenerator):
    """sqlglot's Redshift generator plus the FROM clause of CREATE EXTERNAL SCHEMA."""

    TRANSFORMS: ClassVar[dict[type[exp.Expr], Callable[..., str]]] = {
        **RedshiftGenerator.TRANSFORMS,
        ExternalSchemaOption: _option_sql,
        ExternalSchemaSource: _source_sql,
    }
    # POST_SCHEMA: after the schema name, where Redshift expects the FROM clause.
    PROPERTIES_LOCATION = {
        **RedshiftGenerator.PROPERTIES_LOCATION,
        ExternalSchemaSource: exp.Properties.Location.POST_SCHEMA,
    }


def _render_redshift(expression: exp.Expr) -> str:
    generator = _RedshiftDDLGenerator(dialect="redshift", unsupported_level=ErrorLevel.RAISE)
    return generator.generate(expression)


def _ident(name: str) -> exp.Identifier:
    return exp.Identifier(this=name, quoted=True)


def _schema_ref(name: str) -> exp.Table:
    # sqlglot models a schema name as a Table with only `db` set (as its parser does).
    return exp.Table(db=_ident(name))


def _option(keyword: str, value: exp.Expr | None = None) -> ExternalSchemaOption:
    return ExternalSchemaOption(this=exp.var(keyword), value=value)


def _external_schema(name: str, source: str, options: list[ExternalSchemaOption]) -> str:
    create = exp.Create(
        this=_schema_ref(name),
        kind="SCHEMA",
        exists=True,
        properties=exp.Properties(
            expressions=[
                exp.ExternalProperty(),
                ExternalSchemaSource(this=exp.var(source), expressions=options),
            ]
        ),
    )
    return _render_redshift(create)


def create_external_schema(schema: FederatedSchema) -> str:
    """CREATE EXTERNAL SCHEMA IF NOT EXISTS ... FROM MYSQL|POSTGRES for a live database.

    Option order follows the Redshift reference (DATABASE, SCHEMA, URI, PORT, IAM_ROLE,
    SECRET_ARN). The port is always stated so the DDL matches SVV_EXTERNAL_SCHEMAS exactly.
    """
    options = [_option("DATABASE", exp.Literal.string(schema.database))]
    if schema.schema_name is not None:
        options.append(_option("SCHEMA", exp.Literal.string(schema.schema_name)))
    options += [
        _option("URI", exp.Literal.string(schema.uri)),
        _option("PORT", exp.Literal.number(schema.resolved_port)),
        _option("IAM_ROLE", exp.Literal.string(schema.iam_role_arn)),
        _option("SECRET_ARN", exp.Literal.string(schema.secret_arn)),
    ]
    return _external_schema(schema.name, schema.engine, options)


def create_spectrum_schema(schema: SpectrumSchema) -> str:
    """CREATE EXTERNAL SCHEMA IF NOT EXISTS ... FROM DATA CATALOG over a Glue database."""
    options = [_option("DATABASE", exp.Literal.string(schema.glue_database))]
    # REGION before IAM_ROLE, the order of the Redshift reference's syntax.
    if schema.region is not None:
        options.append(_option("REGION", exp.Literal.string(schema.region)))
    options.append(_option("IAM_ROLE", exp.Literal.string(schema.iam_role_arn)))
    if schema.create_external_database:
        options.append(_option("CREATE EXTERNAL DATABASE IF NOT EXISTS"))
    return _external_schema(schema.name, "DATA CATALOG", options)


def drop_external_schema(name: str, *, cascade: bool = False) -> str:
    """DROP SCHEMA IF EXISTS for an external schema.

    Never adds DROP EXTERNAL DATABASE: the Glue database belongs to the catalog publisher, and
    dropping a Redshift schema must not delete the lake's catalog.
    """
    drop = exp.Drop(tables=[_schema_ref(name)], kind="SCHEMA", exists=True, cascade=cascade)
    return _render_redshift(drop)


def view_select(view: UnionView) -> exp.Query:
    """The view's SELECT ... UNION ALL ... as an expression, for any dialect to render."""
    branches: list[exp.Select] = []
    for source in view.sources:
        source_columns = source.columns or view.columns
        projections: list[exp.Expr] = []
        for source_col, view_col in zip(source_columns, view.columns, strict=True):
            column = exp.Column(this=_ident(source_col))
            # Alias only when the names differ; UNION ALL takes its names from the first branch.
            projections.append(column if source_col == view_col else exp.alias_(column, _ident(view_col)))
        projections.append(exp.alias_(exp.Literal.string(source.label), _ident(view.source_column)))
        table = exp.Table(this=_ident(source.table), db=_ident(source.schema_))
        branches.append(exp.select(*projections).from_(table))
    query: exp.Query = branches[0]
    for branch in branches[1:]:
        query = exp.union(query, branch, distinct=False)
    return query


def _view(view: UnionView, *, no_schema_binding: bool) -> exp.Create:
    return exp.Create(
        this=exp.Table(this=_ident(view.name), db=_ident(view.schema_)),
        kind="VIEW",
        replace=True,
        expression=view_select(view),
        # Late binding: the view may read external schemas, whose tables Redshift cannot bind
        # at creation time, and must survive their recreation.
        no_schema_binding=no_schema_binding or None,
    )


def create_view(view: UnionView) -> str:
    """CREATE OR REPLACE VIEW ... AS SELECT ... UNION ALL ... WITH NO SCHEMA BINDING for Redshift."""
    return _render_redshift(_view(view, no_schema_binding=True))


def render_view_for(view: UnionView, dialect: ViewDialect) -> str:
    """The same view for another engine; WITH NO SCHEMA BINDING is kept for Redshift only."""
    if dialect == "redshift":
        return create_view(view)
    if dialect not in ("athena", "duckdb"):
        raise ValueError(f"unsupported view dialect {dialect!r}")
    return _view(view, no_schema_binding=False).sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)


def local_schema(name: str) -> str:
    """CREATE SCHEMA IF NOT EXISTS for the (local) schema a view lives in."""
    return _render_redshift(exp.Create(this=_schema_ref(name), kind="SCHEMA", exists=True))


def drop_view(schema: str, name: str) -> str:
    """DROP VIEW IF EXISTS, for a view whose columns change (Redshift replaces only same-column views)."""
    table = exp.Table(this=_ident(name), db=_ident(schema))
    return _render_redshift(exp.Drop(tables=[table], kind="VIEW", exists=True))
