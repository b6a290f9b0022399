"""For the search benchmarks: a throw-away pair of sample-world databases on the local stack."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import pymysql

import devstack
from devstack.settings import StackSettings
from pipelines.world.setup import create_databases


@dataclass
class WorldDatabases:
    """MariaDB and PostgreSQL databases named `name`, with admin connections into each."""

    stack: StackSettings
    name: str
    mysql: Any
    postgres: Any


@contextmanager
def world_databases(name: str) -> Iterator[WorldDatabases]:
    """Create the world's databases `name` (empty), yield connections, drop them afterwards."""
    stack = devstack.settings()
    pw = stack.admin_password.get_secret_value()
    my = pymysql.connect(
        host=stack.host, port=stack.mariadb_port, user=stack.admin_user, password=pw,
        charset="utf8mb4", autocommit=True,
    )  # fmt: skip
    pg = psycopg2.connect(
        host=stack.host, port=stack.postgres_port, user=stack.admin_user, password=pw, dbname="postgres"
    )
    pg.autocommit = True
    create_databases(my, pg, mysql_database=name, postgres_database=name)
    my.select_db(name)
    pgw = psycopg2.connect(
        host=stack.host, port=stack.postgres_port, user=stack.admin_user, password=pw, dbname=name
    )
    try:
        yield WorldDatabases(stack, name, my, pgw)
    finally:
        pgw.close()
        with my.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        with pg.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        my.close()
        pg.close()
