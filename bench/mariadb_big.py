"""For the stream benchmarks: a throw-away MariaDB database with a large `big` and an empty `small`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pymysql

from connectors.mysql.config import MySQLSourceConfig
from devstack.settings import StackSettings, load_settings


@dataclass
class BigAndSmall:
    """The database, the admin's connection settings, and the stack it lives on."""

    stack: StackSettings
    database: str
    admin: dict[str, Any]

    def config(self, name: str) -> MySQLSourceConfig:
        """A source capturing both tables as the CDC user."""
        return MySQLSourceConfig(
            name=name, host=self.stack.host, port=self.stack.mariadb_port, user=self.stack.cdc_user,
            password=self.stack.cdc_password, database=self.database, tables=("big", "small"), server_id=0,
        )  # fmt: skip


@contextmanager
def big_and_small(rows: int) -> Iterator[BigAndSmall]:
    """`big` (id, note, amount) holds `rows` rows, `small` (id, note) none; dropped afterwards."""
    stack = load_settings()
    admin = {
        "host": stack.host, "port": stack.mariadb_port, "user": stack.admin_user,
        "password": stack.admin_password.get_secret_value(),
    }  # fmt: skip
    database = f"bench_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(**admin, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{database}`")
            conn.select_db(database)  # the SEQUENCE engine's seq_1_to_N resolves in the current database
            cur.execute("CREATE TABLE big (id BIGINT PRIMARY KEY, note VARCHAR(64), amount DECIMAL(12,2))")
            cur.execute(f"INSERT INTO big SELECT seq, CONCAT('row ', seq), seq / 100 FROM seq_1_to_{rows}")
            cur.execute("CREATE TABLE small (id BIGINT PRIMARY KEY, note VARCHAR(20))")
        yield BigAndSmall(stack, database, admin)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()
