"""The fake Redshift catalog plus what tenant isolation publishes: roles, materialized views, RLS
policies and their attachments, and the system views that list them.

Statements (tokenized with sqlglot's Redshift tokenizer, names folded to lower case):
``CREATE ROLE``, ``CREATE MATERIALIZED VIEW <schema>.<name> AS <query>`` (the schema must be a local
one; external tables may be read), ``ALTER MATERIALIZED VIEW ... ROW LEVEL SECURITY ON|OFF``,
``REFRESH MATERIALIZED VIEW``, ``CREATE RLS POLICY <name> WITH (<col> <type>) USING (<predicate>)``,
``DROP RLS POLICY [IF EXISTS] <name> [CASCADE]`` (refused while attached, without CASCADE),
``ATTACH RLS POLICY <name> ON <schema>.<rel> TO ROLE <role>`` (the relation must carry the policy's
column, the role must exist) and ``GRANT ... TO ROLE <role>`` (the role must exist). Reads:
``svv_roles``, ``svv_mv_info``, ``svv_rls_policy``, ``svv_rls_attached_policy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.executor import execute
from sqlglot.tokens import Token

from tests.fakes.redshift_catalog import (
    _DIALECT,
    FINISHED,
    FakeRedshiftCatalog,
    Outcome,
    _Cursor,
    _output_columns,
    _SqlError,
    _text_from,
    _word,
)

RLS_VIEWS: dict[str, dict[str, str]] = {
    "svv_roles": {"role_id": "int4", "role_name": "varchar", "role_owner": "varchar", "external_id": "varchar"},
    "svv_mv_info": {"schema_name": "varchar", "name": "varchar", "is_stale": "char"},
    "svv_rls_policy": {"poldb": "varchar", "polname": "varchar", "polatts": "varchar", "polqual": "varchar"},
    "svv_rls_attached_policy": {
        "relschema": "varchar", "relname": "varchar", "relkind": "varchar", "polname": "varchar",
        "grantee": "varchar", "granteekind": "varchar", "is_pol_on": "bool", "is_rls_on": "bool",
    },
}  # fmt: skip


@dataclass
class Policy:
    column: str
    qual: str


@dataclass
class FakeRlsCatalog(FakeRedshiftCatalog):
    """FakeRedshiftCatalog with roles, materialized views and RLS policies."""

    roles: set[str] = field(default_factory=set)
    mvs: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)  # -> columns
    rls_on: set[tuple[str, str]] = field(default_factory=set)
    policies: dict[str, Policy] = field(default_factory=dict)
    attached: set[tuple[str, str, str, str]] = field(default_factory=set)
    grants: set[tuple[str, str]] = field(default_factory=set)  # (object, role)
    refreshed: list[tuple[str, str]] = field(default_factory=list)

    def _run(self, sql: str, tokens: list[Token]) -> Outcome:
        if _word(tokens[0]) == "REFRESH" and len(tokens) == 2:
            # sqlglot tokenizes REFRESH as a command swallowing the rest as one string: split it.
            tokens = [tokens[0], *_DIALECT.tokenize(tokens[1].text)]
        words = [_word(t) for t in tokens[:4]]
        if words[:2] == ["CREATE", "ROLE"]:
            cur = _Cursor(tokens, 2)
            name = cur.name()
            cur.expect_end()
            if name in self.roles:
                raise _SqlError(f'role "{name}" already exists')
            self.roles.add(name)
        elif words[:3] == ["CREATE", "MATERIALIZED", "VIEW"]:
            self._create_mv(_text_from(sql, tokens))
        elif words[:3] in (["ALTER", "MATERIALIZED", "VIEW"], ["REFRESH", "MATERIALIZED", "VIEW"]):
            cur = _Cursor(tokens, 3)
            key = self._relation(cur)
            if key not in self.mvs:
                raise _SqlError(f'materialized view "{key[1]}" does not exist')
            if words[0] == "REFRESH":
                cur.expect_end()
                self.refreshed.append(key)
            else:
                for word in ("ROW", "LEVEL", "SECURITY"):
                    cur.expect(word)
                on = cur.accept("ON")
                if not on:
                    cur.expect("OFF")
                cur.expect_end()
                (self.rls_on.add if on else self.rls_on.discard)(key)
        elif words[:3] == ["CREATE", "RLS", "POLICY"]:
            self._create_policy(_Cursor(tokens, 3), _text_from(sql, tokens))
        elif words[:3] == ["DROP", "RLS", "POLICY"]:
            cur = _Cursor(tokens, 3)
            if_exists = cur.accept("IF", "EXISTS")
            name = cur.name()
            cascade = cur.accept("CASCADE")
            cur.expect_end()
            if name not in self.policies:
                if if_exists:
                    return FINISHED
                raise _SqlError(f'policy "{name}" does not exist')
            if any(a[2] == name for a in self.attached) and not cascade:
                raise _SqlError(f'cannot drop policy "{name}": it is attached. HINT: use CASCADE')
            self.attached = {a for a in self.attached if a[2] != name}
            del self.policies[name]
        elif words[:3] == ["ATTACH", "RLS", "POLICY"]:
            self._attach(_Cursor(tokens, 3))
        elif words[0] == "GRANT":
            role = tokens[-1].text.lower()
            if _word(tokens[-2]) != "ROLE" or role not in self.roles:
                raise _SqlError(f'role "{tokens[-1].text}" does not exist')
            self.grants.add((" ".join(t.text for t in tokens[1:-3]), role))
        else:
            return super()._run(sql, tokens)
        return FINISHED

    def _relation(self, cur: _Cursor) -> tuple[str, str]:
        schema = cur.name()
        cur.expect(".")
        return schema, cur.name()

    def _create_mv(self, statement: str) -> None:
        create = sqlglot.parse_one(statement, read="redshift")
        if not isinstance(create, exp.Create) or not isinstance(create.expression, exp.Query):
            raise _SqlError("syntax error in CREATE MATERIALIZED VIEW")
        target = create.this
        schema, name = target.db.lower(), target.name.lower()
        if schema not in self.local_schemas:
            raise _SqlError(f'schema "{schema}" does not exist')
        if (schema, name) in self.mvs or (schema, name) in self.views:
            raise _SqlError(f'relation "{name}" already exists')
        self.mvs[(schema, name)] = _output_columns(create.expression)

    def _create_policy(self, cur: _Cursor, statement: str) -> None:
        name = cur.name()
        if name in self.policies:
            raise _SqlError(f'policy "{name}" already exists')
        cur.expect("WITH")
        cur.expect("(")
        column = cur.name()
        depth = 1  # skip the type, e.g. VARCHAR ( 64 ), to the WITH clause's closing parenthesis
        while depth:
            text = cur.take().text
            depth += {"(": 1, ")": -1}.get(text, 0)
        cur.expect("USING")
        tail = statement[statement.upper().rindex("USING") + len("USING") :].strip()
        try:
            predicate = sqlglot.parse_one(tail, read="redshift")
        except sqlglot.errors.ParseError as exc:
            raise _SqlError(f"syntax error in USING: {exc}") from None
        referenced = {c.name.lower() for c in predicate.find_all(exp.Column)}
        if referenced - {column}:
            raise _SqlError(f"policy columns {sorted(referenced - {column})} are not in its WITH clause")
        self.policies[name] = Policy(column, predicate.sql("redshift"))

    def _attach(self, cur: _Cursor) -> None:
        name = cur.name()
        cur.expect("ON")
        cur.accept("TABLE")
        key = self._relation(cur)
        cur.expect("TO")
        cur.expect("ROLE")
        role = cur.name()
        cur.expect_end()
        if name not in self.policies:
            raise _SqlError(f'policy "{name}" does not exist')
        if role not in self.roles:
            raise _SqlError(f'role "{role}" does not exist')
        if key in self.external_schemas:
            raise _SqlError("RLS policies cannot be attached to external tables")
        columns = self.mvs.get(key)
        if columns is None:
            raise _SqlError(f'relation "{key[0]}.{key[1]}" does not exist')
        if self.policies[name].column not in columns:
            raise _SqlError(f'column "{self.policies[name].column}" does not exist in "{key[1]}"')
        self.attached.add((*key, name, role))

    def _select(self, statement: str) -> Outcome:
        query = sqlglot.parse_one(statement, read="redshift")
        tables = list(query.find_all(exp.Table))
        if not tables or any(t.name.lower() not in RLS_VIEWS for t in tables):
            return super()._select(statement)
        for t in tables:
            t.set("db", exp.to_identifier("pg_catalog"))
        data = {
            "svv_roles": [
                {"role_id": i, "role_name": r, "role_owner": "publisher", "external_id": None}
                for i, r in enumerate(sorted(self.roles))
            ],
            "svv_mv_info": [{"schema_name": s, "name": n, "is_stale": "f"} for s, n in self.mvs],
            "svv_rls_policy": [
                {"poldb": "dev", "polname": n, "polatts": f'[{{"colname":"{p.column}"}}]', "polqual": p.qual}
                for n, p in self.policies.items()
            ],
            "svv_rls_attached_policy": [
                {
                    "relschema": s, "relname": r, "relkind": "materialized view", "polname": p, "grantee": g,
                    "granteekind": "role", "is_pol_on": True, "is_rls_on": (s, r) in self.rls_on,
                }
                for s, r, p, g in sorted(self.attached)
            ],
        }  # fmt: skip
        result = execute(
            query, dialect="redshift", tables={"pg_catalog": data}, schema={"pg_catalog": RLS_VIEWS}
        )
        rows = tuple(tuple(row) for row in result.rows)
        types = tuple(RLS_VIEWS[tables[0].name.lower()].get(c, "varchar") for c in result.columns)
        return Outcome("FINISHED", columns=tuple(result.columns), types=types, rows=rows)


def visible_rows(
    catalog: FakeRlsCatalog, schema: str, view: str, role: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows of `view` (given) that `role` sees: none unless a policy is attached for it and
    RLS is on; then those its predicate holds for (evaluated by sqlglot's executor)."""
    key = (schema, view)
    if key not in catalog.rls_on:
        return rows
    quals = [catalog.policies[p].qual for s, v, p, g in catalog.attached if (s, v) == key and g == role]
    seen = []
    for row in rows:
        for qual in quals:
            result = execute(f"SELECT 1 AS ok FROM t WHERE {qual}", dialect="redshift", tables={"t": [row]})
            if result.rows:
                seen.append(row)
                break
    return seen
