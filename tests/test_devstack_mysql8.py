"""The stack's MySQL 9.7 server (the MySQL 8 family, Aurora MySQL 3 stand-in) is a working CDC primary.

Settings, the CDC login (caching_sha2_password, exactly the grants CDC needs) and a GTID binlog
stream on the shared server; the lifecycle (up, down, kill -9) on a private stack that reuses the
shared server's unpacked packages through a symlink, so the tests never download them twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import pytest
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import GtidEvent
from pymysqlreplication.row_event import UpdateRowsEvent, WriteRowsEvent

import devstack
from devstack.base import InstallError
from devstack.mysql8 import MySQL8Service
from devstack.private_apt import AptSource, PrivateApt, parse_apt_sources, pick_debian_mirror
from devstack.settings import StackSettings, load_settings
from tests.conftest import TestDatabase

CDC_GRANTS = "GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `cdc`@`%`"


def _variables(conn: Any, *names: str) -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN (" + ",".join(["%s"] * len(names)) + ")", names
        )
        return {str(k).lower(): str(v) for k, v in cur.fetchall()}


def _one(conn: Any, sql: str) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
    assert row is not None, sql
    return tuple(row)


# ---------------------------------------------------------------- the shared server


def test_mysql8_has_cdc_binlog_settings(mysql8_db: TestDatabase) -> None:
    """GTIDs on and enforced, ROW/FULL/FULL, server_id 1, a week of binlogs, utf8mb4, UTC, localhost only."""
    conn = mysql8_db.admin_connect()
    got = _variables(
        conn,
        "log_bin",
        "gtid_mode",
        "enforce_gtid_consistency",
        "binlog_format",
        "binlog_row_image",
        "binlog_row_metadata",
        "binlog_row_value_options",
        "binlog_transaction_compression",
        "binlog_expire_logs_seconds",
        "server_id",
        "character_set_server",
        "time_zone",
        "bind_address",
    )
    assert got == {
        "log_bin": "ON",
        "gtid_mode": "ON",
        "enforce_gtid_consistency": "ON",
        "binlog_format": "ROW",
        "binlog_row_image": "FULL",
        "binlog_row_metadata": "FULL",
        "binlog_row_value_options": "",
        "binlog_transaction_compression": "OFF",
        "binlog_expire_logs_seconds": "604800",
        "server_id": "1",
        "character_set_server": "utf8mb4",
        "time_zone": "+00:00",
        "bind_address": "127.0.0.1",
    }
    version, comment = _one(conn, "SELECT VERSION(), @@version_comment")
    assert int(version.split(".")[0]) >= 8 and "mariadb" not in f"{version} {comment}".lower()
    assert mysql8_db.flavor == "mysql"
    assert _one(conn, f"SHOW CREATE DATABASE `{mysql8_db.name}`")[1].count("utf8mb4") >= 1


def test_mysql8_cdc_user_has_exactly_the_cdc_grants(mysql8_db: TestDatabase) -> None:
    """cdc logs in with caching_sha2_password over TCP, reads tables and binlog status, writes nothing."""
    with mysql8_db.admin_connect().cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO t VALUES (7)")
        cur.execute(
            "SELECT user, plugin FROM mysql.user WHERE user IN (%s, %s) ORDER BY user",
            (mysql8_db.admin_user, mysql8_db.cdc_user),
        )
        plugins = dict(cur.fetchall())
    assert plugins == {
        mysql8_db.admin_user: "caching_sha2_password",
        mysql8_db.cdc_user: "caching_sha2_password",
    }

    cdc = mysql8_db.cdc_connect()
    with cdc.cursor() as cur:
        cur.execute("SHOW GRANTS")
        grants = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT id FROM t")
        rows = cur.fetchall()
        cur.execute("SHOW BINARY LOG STATUS")  # 8.4+; Aurora MySQL 3 (8.0) has SHOW MASTER STATUS
        status = cur.fetchone()
        cur.execute("SHOW BINARY LOGS")
        logs = cur.fetchall()
        cur.execute("SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_purged, @@server_uuid")
        executed, purged, server_uuid = cur.fetchone()
        with pytest.raises(pymysql.err.ProgrammingError) as removed:
            cur.execute("SHOW MASTER STATUS")
        with pytest.raises(pymysql.err.OperationalError) as denied:
            cur.execute("INSERT INTO t VALUES (8)")
    assert grants == [CDC_GRANTS]
    assert rows == ((7,),)
    assert status[0].startswith("binlog.") and status[0] in {log[0] for log in logs}
    # This test's own DDL and DML at least; other tests may add other UUIDs or purge binlogs.
    assert f"{server_uuid}:1-" in executed and isinstance(purged, str)
    assert removed.value.args[0] == 1064
    assert denied.value.args[0] == 1142


def test_mysql8_root_is_not_reachable_over_tcp(mysql8_db: TestDatabase) -> None:
    """root@localhost has no password, so it must answer only on the owner-only socket."""
    with pytest.raises(pymysql.err.OperationalError) as caught:
        pymysql.connect(host=mysql8_db.host, port=mysql8_db.port, user="root", password="")
    assert caught.value.args[0] == 1045


def test_mysql8_cdc_user_streams_gtid_transactions(mysql8_db: TestDatabase) -> None:
    """From @@gtid_executed, a non-blocking auto_position dump yields the next transactions' GTIDs and rows."""
    admin = mysql8_db.admin_connect()
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE visits (id INT PRIMARY KEY, note VARCHAR(20), fee DECIMAL(8,2), doc JSON)")
    start = _one(mysql8_db.cdc_connect(), "SELECT @@GLOBAL.gtid_executed")[0].replace("\n", "")
    admin.begin()
    with admin.cursor() as cur:
        cur.execute("INSERT INTO visits VALUES (1, '𠮷田', 12.50, '{\"a\": 1}'), (2, 'Ada', NULL, NULL)")
    admin.commit()
    with admin.cursor() as cur:
        cur.execute("UPDATE visits SET fee = 13.75 WHERE id = 1")
    server_uuid = _one(admin, "SELECT @@server_uuid")[0]

    reader = BinLogStreamReader(
        connection_settings={
            "host": mysql8_db.host,
            "port": mysql8_db.port,
            "user": mysql8_db.cdc_user,
            "password": mysql8_db.cdc_password.get_secret_value(),
        },
        server_id=100_000 + uuid.uuid4().int % 100_000,
        auto_position=start,
        blocking=False,
        only_events=[GtidEvent, WriteRowsEvent, UpdateRowsEvent],
        only_schemas=[mysql8_db.name],
    )
    events: list[tuple[str, Any]] = []
    gtid = ""
    try:
        for event in reader:
            if isinstance(event, GtidEvent):
                gtid = event.gtid
            elif isinstance(event, WriteRowsEvent):
                events += [(gtid, ("insert", row["values"])) for row in event.rows]
            elif isinstance(event, UpdateRowsEvent):
                events += [
                    (gtid, ("update", row["before_values"]["fee"], row["after_values"]["fee"]))
                    for row in event.rows
                ]
    finally:
        reader.close()

    # Other tests share the server, so only this database's rows are compared (only_schemas).
    assert [change for _, change in events] == [
        ("insert", {"id": 1, "note": "𠮷田", "fee": Decimal("12.50"), "doc": {b"a": 1}}),  # binary JSON
        ("insert", {"id": 2, "note": "Ada", "fee": None, "doc": None}),
        ("update", Decimal("12.50"), Decimal("13.75")),
    ]
    gtids = [g for g, _ in events]
    assert gtids[0] == gtids[1] != gtids[2]  # one transaction, then another
    assert all(g.startswith(f"{server_uuid}:") for g in gtids)
    assert int(gtids[2].rsplit(":", 1)[1]) > int(gtids[0].rsplit(":", 1)[1])


def test_up_is_idempotent_for_mysql8(stack: StackSettings) -> None:
    """A second up starts nothing and keeps the pid; the pid is recognised although exe is ld-linux."""
    (before,) = devstack.status(["mysql8"])
    (result,) = devstack.up(["mysql8"])
    assert result.action == "already running"
    assert before.pid is not None
    assert result.status.pid == before.pid
    assert "ld-linux" in os.readlink(f"/proc/{before.pid}/exe")


# ---------------------------------------------------------------- install details (no server)


def test_mirror_comes_from_deb822_or_one_line_sources() -> None:
    """The Debian archive for this release wins; security archives and inline keys are not used."""
    deb822 = parse_apt_sources(
        Path("debian.sources"),
        "Types: deb\n# a comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb\nURIs: https://example.org/apt\nSuites: nodistro\nSigned-By:\n -----BEGIN PGP\n .\n",
    )
    one_line = parse_apt_sources(
        Path("sources.list"),
        "# deb http://old.example/debian buster main\n"
        "deb [arch=amd64 signed-by=/etc/apt/keyrings/m.gpg] http://mirror.example/debian/ bookworm main\n"
        "deb-src http://mirror.example/debian bookworm main\n",
    )
    assert [(s.uri, s.suites, str(s.signed_by)) for s in deb822] == [
        (
            "http://deb.debian.org/debian",
            ("bookworm", "bookworm-updates"),
            "/usr/share/keyrings/debian-archive-keyring.gpg",
        ),
        ("http://deb.debian.org/debian-security", ("bookworm-security",), "None"),
        ("https://example.org/apt", ("nodistro",), "None"),
    ]
    assert [(s.uri, s.suites, str(s.signed_by)) for s in one_line] == [
        ("http://mirror.example/debian/", ("bookworm",), "/etc/apt/keyrings/m.gpg")
    ]
    picked = pick_debian_mirror([*reversed(deb822), *one_line], "bookworm")
    assert picked is not None and picked.uri == "http://deb.debian.org/debian"
    assert pick_debian_mirror(deb822[1:], "bookworm") is None  # only security and a third party


def test_an_expired_release_file_is_fetched_again_without_the_date_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mirror serving a frozen snapshot has a Release past its Valid-Until date (seen on bookworm)."""
    apt = PrivateApt(
        tmp_path / "apt",
        AptSource("http://mirror.example/debian", ("sid",), None),
        "amd64",
        tmp_path / "log",
        suite="sid",
    )
    seen: list[list[str]] = []

    def fake_run(tool: str, args: list[str], *, cwd: Path | None = None) -> str:
        seen.append([tool, *args, *apt.options])
        if len(seen) == 1:
            raise InstallError(
                "apt-get update failed (exit 100):\nE: Release file for http://mirror.example/debian/dists/sid/"
                "InRelease is expired (invalid since 29d 17h 47min 44s). Updates for this repository will not be applied."
            )
        return "Get:1 http://mirror.example/debian sid InRelease\nReading package lists..."

    monkeypatch.setattr(apt, "run", fake_run)
    apt.update()
    assert [call[:2] for call in seen] == [["apt-get", "update"], ["apt-get", "update"]]
    assert (
        "Acquire::Check-Valid-Until=false" not in seen[0]
        and seen[1][-1] == "Acquire::Check-Valid-Until=false"
    )
    assert (
        tmp_path / "apt" / "etc" / "sources.list"
    ).read_text() == "deb http://mirror.example/debian sid main\n"


def test_a_long_stack_dir_puts_the_socket_in_a_private_temp_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """sun_path holds 108 bytes; a deep stack dir moves the socket, nothing else."""
    monkeypatch.setenv("LAKEHOUSE_STACK_DIR", "/" + "d" * 120)
    monkeypatch.setenv("LAKEHOUSE_MYSQL8_PORT", "23307")
    svc = MySQL8Service(load_settings())
    assert (
        svc.socket == Path(tempfile.gettempdir()) / f"lakehouse-mysql8-{os.geteuid()}-23307" / "mysqld.sock"
    )
    assert svc.pid_file.is_relative_to(svc.base)


# ---------------------------------------------------------------- isolated stack lifecycle


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_mysql8(stack: StackSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[MySQL8Service]:
    """A throw-away stack dir and port, with the shared stack's unpacked packages symlinked in."""
    shared = MySQL8Service(stack)
    assert shared.is_installed()
    root = Path(tempfile.mkdtemp(prefix="devstack-mysql8-test-"))
    monkeypatch.setenv("LAKEHOUSE_STACK_DIR", str(root / "stack"))
    monkeypatch.setenv("LAKEHOUSE_MYSQL8_PORT", str(_free_port()))
    svc = MySQL8Service(devstack.settings())
    svc.base.mkdir(parents=True)
    svc.root.symlink_to(shared.root)  # 350 MB and a download saved; the tree is only read
    shutil.copyfile(shared.stamp, svc.stamp)
    try:
        yield svc
    finally:
        devstack.down(["mysql8"])
        shutil.rmtree(root, ignore_errors=True)


def _connect(svc: MySQL8Service, *, cdc: bool = False) -> Any:
    s = svc.settings
    user, password = (s.cdc_user, s.cdc_password) if cdc else (s.admin_user, s.admin_password)
    return pymysql.connect(
        host=s.host, port=s.mysql8_port, user=user, password=password.get_secret_value(), autocommit=True
    )


def test_lifecycle_survives_down_and_unclean_kill(private_mysql8: MySQL8Service) -> None:
    """up inits with an empty gtid_executed -> down is clean -> up reuses all -> kill -9 -> up recovers."""
    svc = private_mysql8
    stamp = svc.stamp.stat().st_mtime_ns
    assert [r.action for r in devstack.up(["mysql8"])] == ["started"]
    initialised = svc.initialized.stat().st_mtime_ns
    with _connect(svc) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.gtid_executed")
        assert cur.fetchone() == ("",)  # the accounts were created outside the binlog
        cur.execute("CREATE DATABASE keepme")

    assert [r.action for r in devstack.down(["mysql8"])] == ["stopped"]
    assert "Shutdown complete" in svc.error_log.read_text()  # SIGTERM is mysqld's clean shutdown
    assert not svc.pid_file.exists()
    assert [r.action for r in devstack.down(["mysql8"])] == ["already stopped"]
    assert [s.state for s in devstack.status(["mysql8"])] == ["stopped"]

    assert [r.action for r in devstack.up(["mysql8"])] == ["started"]
    assert (svc.stamp.stat().st_mtime_ns, svc.initialized.stat().st_mtime_ns) == (stamp, initialised)
    (running,) = devstack.status(["mysql8"])
    assert running.pid is not None
    os.kill(running.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while svc.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert svc.pid_file.exists()  # stale pid file (and socket lock) left behind by the kill

    assert [r.action for r in devstack.up(["mysql8"])] == ["started"]
    with _connect(svc, cdc=True) as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE 'keepme'")
        assert cur.fetchall() == (("keepme",),)
        cur.execute("SELECT @@GLOBAL.gtid_executed, @@server_uuid")
        executed, server_uuid = cur.fetchone()
    assert executed == f"{server_uuid}:1"  # only CREATE DATABASE keepme
