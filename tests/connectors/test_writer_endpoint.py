"""A source pointed at a reader instance is refused by preflight, naming the cluster endpoint.

Aurora's reader endpoints (and a replica's own endpoint) accept the CDC login, but a reader has no
binlog of its own and cannot hold a logical slot, and the writer moves on failover: capture must
use the cluster endpoint. Checked against real servers: MariaDB made read-only, and a real
PostgreSQL hot standby of the stack's server (pg_basebackup, started on a free port).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from connectors.mysql import MySQLSource, MySQLSourceConfig
from connectors.postgres import PostgresSource
from connectors.source import PreflightError
from devstack.postgres import PG_BIN
from tests.postgres_support import make_config


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


@pytest.fixture
def standby(pg_db: Any, tmp_path: Path) -> Iterator[int]:
    """A hot standby of the stack's PostgreSQL on a free port (its own data directory)."""
    data = tmp_path / "standby"
    data.mkdir(mode=0o700)
    shutil.chown(data, "postgres", "postgres")
    tmp_path.chmod(0o755)
    env_password = pg_db.admin_password.get_secret_value()
    subprocess.run(
        ["runuser", "-u", "postgres", "--", "env", f"PGPASSWORD={env_password}", str(PG_BIN / "pg_basebackup"),
         "-h", pg_db.host, "-p", str(pg_db.port), "-U", pg_db.admin_user, "-D", str(data), "-R", "-X", "stream"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = _free_port()
    opts = f"-p {port} -k {data} -c listen_addresses={pg_db.host} -c hot_standby=on"
    subprocess.run(
        ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts,
         "-l", str(data / "log"), "-w", "-t", "60", "start"],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:  # accepting read-only connections once it reached consistency
            try:
                psycopg2.connect(host=pg_db.host, port=port, user=pg_db.cdc_user,
                                 password=pg_db.cdc_password.get_secret_value(), dbname=pg_db.name).close()  # fmt: skip
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield port
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip


def test_a_postgres_standby_is_refused_naming_the_cluster_endpoint(pg_db: Any, standby: int) -> None:
    admin = pg_db.admin_connect()
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE t (id int PRIMARY KEY)")
    primary = PostgresSource(make_config(pg_db, tables=("t",)))
    try:
        primary.preflight()  # the writer passes
    finally:
        primary.close()
    source = PostgresSource(make_config(pg_db, port=standby, tables=("t",)))
    try:
        with pytest.raises(
            PreflightError, match=r"is a standby \(pg_is_in_recovery\(\) is true.*cluster endpoint"
        ):
            source.preflight()
    finally:
        source.close()
