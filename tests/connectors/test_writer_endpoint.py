"""A source pointed at a reader instance is refused by preflight, naming the cluster endpoint.

Aurora's reader endpoints (and a replica's own endpoint) accept the CDC login, but a reader has no
binlog of its own and cannot hold a logical slot, and the writer moves on failover: capture must
use the cluster endpoint. Checked against real servers: MariaDB made read-only, and a real
PostgreSQL hot standby (pg_basebackup of a small primary, both on free ports).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from connectors.mysql import MySQLSource, MySQLSourceConfig
from connectors.postgres import PostgresSource, PostgresSourceConfig
from connectors.source import PreflightError
from devstack.postgres import PG_BIN


def mysql_config(db: Any, **overrides: Any) -> MySQLSourceConfig:
    settings = {"name": f"w_{db.name}", "host": db.host, "port": db.port, "user": db.cdc_user,
                "password": db.cdc_password, "database": db.name}  # fmt: skip
    return MySQLSourceConfig(**(settings | overrides))


@pytest.fixture
def read_only_mariadb(mysql_db: Any) -> Iterator[Any]:
    admin = mysql_db.admin_connect()
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        cur.execute("SET GLOBAL read_only = 1")
    try:
        yield mysql_db
    finally:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL read_only = 0")


def test_a_read_only_mysql_server_is_refused_unless_declared_a_replica(read_only_mariadb: Any) -> None:
    source = MySQLSource(mysql_config(read_only_mariadb))
    try:
        with pytest.raises(PreflightError, match=r"is read-only \(read_only=ON.*cluster \(writer\) endpoint"):
            source.preflight()
    finally:
        source.close()
    replica = MySQLSource(mysql_config(read_only_mariadb, allow_replica=True))
    try:
        replica.preflight()  # a self-managed replica that logs what it applies may be read
    finally:
        replica.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Pair:
    """A primary and its hot standby: private PostgreSQL servers of the stack's binaries."""

    primary: int
    standby: int


@pytest.fixture
def pair() -> Iterator[Pair]:
    """A small primary (initdb, trust on 127.0.0.1) and a hot standby of it (pg_basebackup -R).

    Private rather than a standby of the stack's server, whose data (every test's database) is
    too large to copy for one test."""
    root = Path(tempfile.mkdtemp(prefix="lakehouse-pair-"))  # pytest's tmp is root's only
    shutil.chown(root, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]

    def run(*cmd: str | Path, timeout: float = 120) -> None:
        done = subprocess.run([*as_postgres, *map(str, cmd)], capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout + done.stderr

    def start(data: Path, port: int, *settings: str) -> None:
        opts = " ".join([f"-p {port} -k {root} -c listen_addresses=127.0.0.1", *settings])
        run(
            PG_BIN / "pg_ctl",
            "-D",
            data,
            "-o",
            opts,
            "-l",
            root / f"{data.name}.log",
            "-w",
            "-t",
            "60",
            "start",
        )

    primary, standby = root / "primary", root / "standby"
    ports = Pair(_free_port(), _free_port())
    started: list[Path] = []
    try:
        run(PG_BIN / "initdb", "-D", primary, "-U", "postgres", "--auth=trust", "--no-sync")
        start(primary, ports.primary, "-c wal_level=logical")
        started.append(primary)
        run(PG_BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", ports.primary, "-U", "postgres", "-D", standby,
            "-R", "-X", "stream")  # fmt: skip
        start(standby, ports.standby, "-c hot_standby=on")
        started.append(standby)
        yield ports
    finally:
        for data in reversed(started):
            subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _preflight_problems(port: int) -> str:
    config = PostgresSourceConfig(
        name="writer_check",
        host="127.0.0.1",
        port=port,
        user="postgres",
        password="unused",
        database="postgres",
    )
    source = PostgresSource(config)
    try:
        source.preflight()
        return ""
    except PreflightError as e:
        return str(e)
    finally:
        source.close()


def test_a_postgres_standby_is_refused_naming_the_cluster_endpoint(pair: Pair) -> None:
    conn = psycopg2.connect(host="127.0.0.1", port=pair.primary, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id int PRIMARY KEY)")
    conn.close()
    assert "is a standby" not in _preflight_problems(pair.primary)
    problems = _preflight_problems(pair.standby)
    assert re.search(r"127\.0\.0\.1 is a standby \(pg_is_in_recovery\(\) is true.*cluster endpoint", problems)
