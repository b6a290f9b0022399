"""A small stateful Redshift catalog behind the fake Data API: external schemas, local schemas, views.

It runs the statements a schema and view publisher sends and answers its catalog reads, so a
publisher can be tested for idempotence and drift end to end:

* ``CREATE EXTERNAL SCHEMA [IF NOT EXISTS] <name> FROM MYSQL | POSTGRES | DATA CATALOG <options>``
  adds a row to ``SVV_EXTERNAL_SCHEMAS`` (``esoptions`` is the JSON of the options other than
  ``DATABASE``, upper-case keys, every value a string, as Redshift echoes them);
* ``CREATE SCHEMA`` / ``DROP SCHEMA`` for local and external schemas (one namespace, as in Redshift);
* ``CREATE [OR REPLACE] VIEW`` / ``DROP VIEW``, kept in ``pg_views``. A late-binding view (``WITH NO
  SCHEMA BINDING``) keeps its statement text from ``create`` on as its definition, as Redshift does;
  a schema-bound one keeps its query, may not read an external schema and may not change its
  columns on ``OR REPLACE`` (Redshift's CREATE VIEW reference);
* ``SELECT`` over ``svv_external_schemas`` / ``pg_views`` (optionally ``pg_catalog.``-qualified),
  evaluated by sqlglot's executor after Data API ``:name`` parameters are substituted as literals.

Every other statement finishes with no result. Identifiers are folded to lower case, quoted ones
too: Redshift's default (``enable_case_sensitive_identifier`` off). Statements are tokenized with
sqlglot's Redshift tokenizer, independently of how ``connectors.catalog.redshift_ddl`` renders them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.executor import execute
from sqlglot.tokens import Token, TokenType

_DIALECT = sqlglot.Dialect.get_or_raise("redshift")
# SVV_EXTERNAL_SCHEMAS.eskind by source (Redshift docs, SVV_EXTERNAL_SCHEMAS).
ESKIND = {"DATA CATALOG": 1, "POSTGRES": 3, "MYSQL": 8}
FIRST_ESOID = 100100
ESOWNER = 100
VIEW_OWNER = "publisher"
# Column names and Data API type names of the system views, in their order.
SYSTEM_VIEWS: dict[str, dict[str, str]] = {
    "svv_external_schemas": {
        "esoid": "oid",
        "eskind": "int4",
        "schemaname": "name",
        "esowner": "int4",
        "databasename": "text",
        "esoptions": "text",
    },
    "pg_views": {"schemaname": "name", "viewname": "name", "viewowner": "name", "definition": "text"},
}
# Options each source accepts, and those it cannot do without.
_SOURCE_OPTIONS = {
    "DATA CATALOG": {"DATABASE", "REGION", "IAM_ROLE", "CREATE EXTERNAL DATABASE"},
    "POSTGRES": {"DATABASE", "SCHEMA", "URI", "PORT", "IAM_ROLE", "SECRET_ARN"},
    "MYSQL": {"DATABASE", "URI", "PORT", "IAM_ROLE", "SECRET_ARN"},
}
_REQUIRED_OPTIONS = {
    "DATA CATALOG": ("DATABASE", "IAM_ROLE"),
    "POSTGRES": ("DATABASE", "URI", "IAM_ROLE", "SECRET_ARN"),
    "MYSQL": ("DATABASE", "URI", "IAM_ROLE", "SECRET_ARN"),
}
_NOT_WORDS = {TokenType.IDENTIFIER, TokenType.STRING, TokenType.NUMBER}


@dataclass(frozen=True)
class Outcome:
    """How a statement ends: FINISHED (with a result set when ``rows`` is set) or FAILED."""

    status: Literal["FINISHED", "FAILED"]
    error: str = ""
    columns: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] | None = None

    @property
    def has_result_set(self) -> bool:
        return self.status == "FINISHED" and self.rows is not None


FINISHED = Outcome("FINISHED")


@dataclass
class ExternalSchema:
    """One row of SVV_EXTERNAL_SCHEMAS."""

    esoid: int
    eskind: int
    schemaname: str
    esowner: int
    databasename: str
    esoptions: str

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SYSTEM_VIEWS["svv_external_schemas"]}


@dataclass
class View:
    """One row of pg_views, plus what OR REPLACE is checked against."""

    schemaname: str
    viewname: str
    definition: str
    columns: tuple[str, ...]
    late_binding: bool
    viewowner: str = VIEW_OWNER

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SYSTEM_VIEWS["pg_views"]}


class _SqlError(Exception):
    """A statement Redshift would refuse; the message is the Data API's Error text."""

    def __init__(self, message: str) -> None:
        super().__init__(f"ERROR: {message}")


@dataclass
class FakeRedshiftCatalog:
    """External schemas, local schemas and views of one database; ``run`` executes a statement."""

    external_schemas: dict[str, ExternalSchema] = field(default_factory=dict)
    local_schemas: set[str] = field(default_factory=lambda: {"public"})
    views: dict[tuple[str, str], View] = field(default_factory=dict)
    next_esoid: int = FIRST_ESOID

    def run(self, sql: str, parameters: list[dict[str, str]] | None = None) -> Outcome:
        """Execute one statement against the catalog, as the Data API would run it."""
        try:
            tokens = _statement_tokens(sql, parameters or [])
            return self._run(sql, tokens)
        except _SqlError as exc:
            return Outcome("FAILED", error=str(exc))

    def schema_exists(self, name: str) -> bool:
        return name in self.external_schemas or name in self.local_schemas

    # -- dispatch --------------------------------------------------------------------------------

    def _run(self, sql: str, tokens: list[Token]) -> Outcome:
        words = [_word(t) for t in tokens[:4]]
        if words[:3] == ["CREATE", "EXTERNAL", "SCHEMA"]:
            self._create_external_schema(_Cursor(tokens, 3))
        elif words[:2] == ["CREATE", "SCHEMA"]:
            self._create_schema(_Cursor(tokens, 2))
        elif words[:2] == ["DROP", "SCHEMA"]:
            self._drop_schema(_Cursor(tokens, 2))
        elif words[:2] == ["CREATE", "VIEW"] or words[:4] == ["CREATE", "OR", "REPLACE", "VIEW"]:
            self._create_view(_text_from(sql, tokens))
        elif words[:2] == ["DROP", "VIEW"]:
            self._drop_view(_Cursor(tokens, 2))
        elif words[0] in ("SELECT", "WITH"):
            return self._select(_text_from(sql, tokens))
        return FINISHED

    # -- schemas ---------------------------------------------------------------------------------

    def _create_external_schema(self, cur: _Cursor) -> None:
        if_not_exists = cur.accept("IF", "NOT", "EXISTS")
        name = cur.name()
        cur.expect("FROM")
        source = next((s for s in ESKIND if cur.accept(*s.split())), None)
        if source is None:
            raise _SqlError(f"the fake catalog does not model external schemas FROM {cur.peek_text()}")
        options: dict[str, str] = {}
        while not cur.at_end():
            key, value = _external_option(cur)
            if key in options:
                raise _SqlError(f"conflicting or redundant options: {key} is given twice")
            if key not in _SOURCE_OPTIONS[source]:
                raise _SqlError(f"{key} is not a valid option for CREATE EXTERNAL SCHEMA FROM {source}")
            options[key] = value
        for key in _REQUIRED_OPTIONS[source]:
            if key not in options:
                raise _SqlError(f"{key} must be specified for CREATE EXTERNAL SCHEMA FROM {source}")
        if self.schema_exists(name):
            if if_not_exists:
                return
            raise _SqlError(f'schema "{name}" already exists')
        echoed = {k: v for k, v in options.items() if k not in ("DATABASE", "CREATE EXTERNAL DATABASE")}
        self.external_schemas[name] = ExternalSchema(
            esoid=self.next_esoid,
            eskind=ESKIND[source],
            schemaname=name,
            esowner=ESOWNER,
            databasename=options["DATABASE"],
            esoptions=json.dumps(echoed, separators=(",", ":"), ensure_ascii=False),
        )
        self.next_esoid += 1

    def _create_schema(self, cur: _Cursor) -> None:
        if_not_exists = cur.accept("IF", "NOT", "EXISTS")
        name = cur.name()
        # AUTHORIZATION and QUOTA clauses change nothing the catalog models.
        if self.schema_exists(name):
            if if_not_exists:
                return
            raise _SqlError(f'schema "{name}" already exists')
        self.local_schemas.add(name)

    def _drop_schema(self, cur: _Cursor) -> None:
        if_exists = cur.accept("IF", "EXISTS")
        names = [cur.name()]
        while cur.accept(","):
            names.append(cur.name())
        cascade = cur.accept("CASCADE")
        if not cascade:
            cur.accept("RESTRICT")
        cur.expect_end()
        for name in names:  # the whole statement fails before anything is dropped
            if not self.schema_exists(name) and not if_exists:
                raise _SqlError(f'schema "{name}" does not exist')
            dependent = [v for (s, v) in self.views if s == name]
            if dependent and not cascade:
                raise _SqlError(
                    f'cannot drop schema "{name}" because other objects depend on it '
                    f'(view "{dependent[0]}"). HINT: Use DROP ... CASCADE to drop the dependent objects too.'
                )
        for name in names:
            self.external_schemas.pop(name, None)
            self.local_schemas.discard(name)
            for key in [k for k in self.views if k[0] == name]:
                del self.views[key]

    # -- views -----------------------------------------------------------------------------------

    def _create_view(self, statement: str) -> None:
        try:
            create = sqlglot.parse_one(statement, read="redshift")
        except (ParseError, TokenError) as exc:
            raise _SqlError(f"syntax error in CREATE VIEW: {exc}") from None
        if not isinstance(create, exp.Create) or not isinstance(create.expression, exp.Query):
            raise _SqlError("syntax error in CREATE VIEW: no query after AS")
        target = create.this
        if not isinstance(target, exp.Table):
            raise _SqlError("syntax error in CREATE VIEW: no view name")
        schema, name = (
            (target.args["db"].this.lower() if target.args.get("db") else "public"),
            target.name.lower(),
        )
        late_binding = bool(create.args.get("no_schema_binding"))
        if schema in self.external_schemas:
            raise _SqlError(f'cannot create a view in external schema "{schema}"')
        if schema not in self.local_schemas:
            raise _SqlError(f'schema "{schema}" does not exist')
        query = create.expression
        if not late_binding:
            for table in query.find_all(exp.Table):
                if table.db.lower() in self.external_schemas:
                    raise _SqlError(
                        "External tables are not supported in views. "
                        "HINT: Create the view WITH NO SCHEMA BINDING (a late-binding view)."
                    )
        columns = _output_columns(query)
        existing = self.views.get((schema, name))
        if existing is not None:
            if not create.args.get("replace"):
                raise _SqlError(f'relation "{name}" already exists')
            if not existing.late_binding:
                _check_same_columns(existing.columns, columns)
        # Redshift keeps a late-binding view's own text; a bound view's definition is its query.
        definition = statement if late_binding else query.sql(dialect="redshift") + ";"
        self.views[(schema, name)] = View(schema, name, definition, columns, late_binding)

    def _drop_view(self, cur: _Cursor) -> None:
        if_exists = cur.accept("IF", "EXISTS")
        first = cur.name()
        schema, name = (first, cur.name()) if cur.accept(".") else ("public", first)
        if not cur.accept("CASCADE"):
            cur.accept("RESTRICT")
        cur.expect_end()
        if (schema, name) not in self.views:
            if if_exists:
                return
            raise _SqlError(f'view "{name}" does not exist')
        del self.views[(schema, name)]

    # -- catalog reads ---------------------------------------------------------------------------

    def _select(self, statement: str) -> Outcome:
        try:
            query = sqlglot.parse_one(statement, read="redshift")
        except (ParseError, TokenError):
            return FINISHED  # not a catalog read the fake can answer; like any other statement
        ctes = {c.alias_or_name.lower() for c in query.find_all(exp.CTE)}
        tables = [t for t in query.find_all(exp.Table) if t.name.lower() not in ctes]
        system = [t for t in tables if _is_system(t)]
        if not system:
            return FINISHED
        if len(system) != len(tables):
            raise _SqlError("the fake catalog answers queries over svv_external_schemas and pg_views only")
        for table in system:
            # Both system views live in pg_catalog; the executor wants one level of qualification.
            table.set("db", exp.to_identifier("pg_catalog"))
            table.set("this", exp.to_identifier(table.name.lower()))
        data = {
            "svv_external_schemas": [s.row() for s in self.external_schemas.values()],
            "pg_views": [v.row() for v in self.views.values()],
        }
        try:
            result = execute(
                query, dialect="redshift", tables={"pg_catalog": data}, schema={"pg_catalog": SYSTEM_VIEWS}
            )
        except Exception as exc:  # sqlglot's executor raises plain errors for what it cannot evaluate
            raise _SqlError(f"the fake catalog could not evaluate the query: {exc}") from None
        known = {c: t for cols in SYSTEM_VIEWS.values() for c, t in cols.items()}
        rows = tuple(tuple(row) for row in result.rows)
        columns = tuple("?column?" if c.startswith("_col_") else c for c in result.columns)
        types = tuple(known.get(c) or _type_of(rows, i) for i, c in enumerate(columns))
        return Outcome("FINISHED", columns=columns, types=types, rows=rows)


# -- tokens ---------------------------------------------------------------------------------------


class _Cursor:
    """Walks a statement's tokens; keywords compare case-insensitively, quoted names never match."""

    def __init__(self, tokens: list[Token], position: int) -> None:
        self.tokens = tokens
        self.i = position

    def at_end(self) -> bool:
        return self.i >= len(self.tokens)

    def peek_text(self) -> str:
        return "end of input" if self.at_end() else self.tokens[self.i].text

    def accept(self, *words: str) -> bool:
        end = self.i + len(words)
        if end > len(self.tokens) or any(
            _word(t) != w for t, w in zip(self.tokens[self.i : end], words, strict=True)
        ):
            return False
        self.i = end
        return True

    def expect(self, word: str) -> None:
        if not self.accept(word):
            self.fail()

    def expect_end(self) -> None:
        if not self.at_end():
            self.fail()

    def fail(self) -> None:
        if self.at_end():
            raise _SqlError("syntax error at end of input")
        raise _SqlError(f'syntax error at or near "{self.tokens[self.i].text}"')

    def take(self) -> Token:
        if self.at_end():
            self.fail()
        self.i += 1
        return self.tokens[self.i - 1]

    def name(self) -> str:
        """An identifier, folded to lower case (quoted ones too, Redshift's default)."""
        token = self.take()
        if token.token_type in (TokenType.STRING, TokenType.NUMBER) or not _is_name(token):
            self.i -= 1
            self.fail()
        return token.text.lower()

    def string(self) -> str:
        token = self.take()
        if token.token_type != TokenType.STRING:
            self.i -= 1
            self.fail()
        return token.text


def _external_option(cur: _Cursor) -> tuple[str, str]:
    if cur.accept("CREATE", "EXTERNAL", "DATABASE", "IF", "NOT", "EXISTS"):
        return "CREATE EXTERNAL DATABASE", ""
    for key in ("DATABASE", "SCHEMA", "URI", "SECRET_ARN", "REGION"):
        if cur.accept(key):
            return key, cur.string()
    if cur.accept("IAM_ROLE"):
        return "IAM_ROLE", "default" if cur.accept("DEFAULT") else cur.string()
    if cur.accept("PORT"):
        token = cur.take()
        if token.token_type != TokenType.NUMBER or not token.text.isdigit():
            cur.i -= 1
            cur.fail()
        return "PORT", str(int(token.text))
    cur.fail()
    raise AssertionError("unreachable")  # fail() always raises


def _word(token: Token) -> str | None:
    """A token's text as a keyword, or None for quoted names, strings and numbers."""
    return None if token.token_type in _NOT_WORDS else token.text.upper()


def _is_name(token: Token) -> bool:
    return (
        token.token_type == TokenType.IDENTIFIER or token.text.replace("_", "a").replace("$", "a").isalnum()
    )


def _statement_tokens(sql: str, parameters: list[dict[str, str]]) -> list[Token]:
    """The tokens of the one statement in ``sql``, with ``:name`` parameters made string literals."""
    try:
        tokens = _DIALECT.tokenize(sql)
    except TokenError as exc:
        raise _SqlError(f"syntax error: {exc}") from None
    values = {p["name"]: p["value"] for p in parameters}
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.token_type == TokenType.COLON and following is not None and following.start == token.end + 1:
            if following.text not in values:
                raise _SqlError(f'no value for parameter ":{following.text}"')
            out.append(
                Token(
                    TokenType.STRING,
                    values[following.text],
                    token.line,
                    token.col,
                    token.start,
                    following.end,
                )
            )
            i += 2
            continue
        out.append(token)
        i += 1
    while out and out[-1].token_type == TokenType.SEMICOLON:
        out.pop()
    if any(t.token_type == TokenType.SEMICOLON for t in out):
        raise _SqlError("cannot insert multiple commands into a prepared statement")
    if not out:
        raise _SqlError("syntax error at end of input")
    return out


def _text_from(sql: str, tokens: list[Token]) -> str:
    """The statement's text from its first token to its last, parameters substituted."""
    parts: list[str] = []
    position = tokens[0].start
    for token in tokens:
        parts.append(sql[position : token.start])
        if token.token_type == TokenType.STRING and sql[token.start] == ":":  # a substituted parameter
            parts.append("'" + token.text.replace("'", "''") + "'")
        else:
            parts.append(sql[token.start : token.end + 1])
        position = token.end + 1
    return "".join(parts)


def _is_system(table: exp.Table) -> bool:
    return table.name.lower() in SYSTEM_VIEWS and table.db.lower() in ("", "pg_catalog") and not table.catalog


def _output_columns(query: exp.Query) -> tuple[str, ...]:
    """The view's column names: the first UNION branch's, as PostgreSQL names them."""
    select: exp.Expr = query
    while isinstance(select, exp.SetOperation):
        select = select.left
    if not isinstance(select, exp.Select):
        return ()
    names = []
    for e in select.expressions:
        named = isinstance(e, (exp.Alias, exp.Column, exp.Star))
        names.append(e.alias_or_name.lower() if named else "?column?")
    return tuple(names)


def _check_same_columns(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    # Redshift replaces a schema-bound view only when the new query yields the same columns.
    if len(old) != len(new):
        raise _SqlError("cannot change number of columns in view")
    for before, after in zip(old, new, strict=True):
        if before != after:
            raise _SqlError(f'cannot change name of view column "{before}" to "{after}"')


def _type_of(rows: tuple[tuple[Any, ...], ...], index: int) -> str:
    sample = next((row[index] for row in rows if row[index] is not None), "")
    if isinstance(sample, bool):
        return "bool"
    if isinstance(sample, int):
        return "int8"
    if isinstance(sample, float):
        return "float8"
    return "varchar"
