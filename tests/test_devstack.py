"""The local stack provides what the connectors rely on: CDC server settings, users, wal2json, moto."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg2
import psycopg2.extras
import pymysql
import pytest

import devstack
from devstack.settings import StackSettings
from tests.conftest import TestDatabase


def _mysql_vars(conn: pymysql.connections.Connection, *names: str) -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES"
            " WHERE VARIABLE_NAME IN (" + ",".join(["%s"] * len(names)) + ")",
            [n.upper() for n in names],
        )
        return {k.lower(): v for k, v in cur.fetchall()}


def test_tests_run_in_a_hostile_time_zone() -> None:
    """conftest pins America/St_Johns (UTC-03:30 standard time) for the test process."""
    assert os.environ["TZ"] == "America/St_Johns"
    assert time.timezone == 3 * 3600 + 30 * 60


def test_mariadb_has_cdc_binlog_settings(mysql_db: TestDatabase) -> None:
    """ROW binlog with FULL image and FULL metadata, server_id 1, strict GTIDs, utf8mb4, UTC."""
    conn = mysql_db.admin_connect()
    got = _mysql_vars(
        conn,
        "log_bin",
        "binlog_format",
        "binlog_row_image",
        "binlog_row_metadata",
        "server_id",
        "gtid_strict_mode",
        "character_set_server",
        "time_zone",
        "bind_address",
    )
    assert got == {
        "log_bin": "ON",
        "binlog_format": "ROW",
        "binlog_row_image": "FULL",
        "binlog_row_metadata": "FULL",
        "server_id": "1",
        "gtid_strict_mode": "ON",
        "character_set_server": "utf8mb4",
        "time_zone": "+00:00",
        "bind_address": "127.0.0.1",
    }


def test_mariadb_writes_get_gtids(mysql_db: TestDatabase) -> None:
    """A committed write advances @@gtid_binlog_pos in domain 0 / server 1."""
    conn = mysql_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))")
        cur.execute("SELECT @@gtid_binlog_pos")
        (before,) = cur.fetchone()
        cur.execute("INSERT INTO t VALUES (1, 'a')")
        cur.execute("SELECT @@gtid_binlog_pos")
        (after,) = cur.fetchone()
    assert after.startswith("0-1-")
    assert int(after.rsplit("-", 1)[1]) > int(before.rsplit("-", 1)[1])


def test_mariadb_cdc_user_has_replication_grants(mysql_db: TestDatabase) -> None:
    """The cdc login works, holds the brief's grants and can read tables and binlog status."""
    admin = mysql_db.admin_connect()
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO t VALUES (7)")
    cdc = mysql_db.cdc_connect()
    with cdc.cursor() as cur:
        cur.execute("SHOW GRANTS")
        grants = " ".join(row[0] for row in cur.fetchall())
        cur.execute("SELECT id FROM t")
        rows = cur.fetchall()
        cur.execute("SHOW BINLOG STATUS")
        status = cur.fetchone()
    # MariaDB 10.11 reports REPLICATION CLIENT under its new name, BINLOG MONITOR.
    for privilege in ("SELECT", "RELOAD", "SHOW DATABASES", "REPLICATION SLAVE", "BINLOG MONITOR"):
        assert privilege in grants
    assert "ALL PRIVILEGES" not in grants
    assert rows == ((7,),)
    assert status is not None and status[0].startswith("mysql-bin.")


def test_mariadb_cdc_user_cannot_write(mysql_db: TestDatabase) -> None:
    """The CDC login is read-only: the grant set has no INSERT."""
    with mysql_db.admin_connect().cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    with mysql_db.cdc_connect().cursor() as cur, pytest.raises(pymysql.err.OperationalError):
        cur.execute("INSERT INTO t VALUES (1)")


def test_postgres_is_configured_for_logical_decoding(pg_db: TestDatabase) -> None:
    """wal_level=logical with room for slots, UTC, listening on localhost only."""
    with pg_db.admin_connect().cursor() as cur:
        got = {}
        for name in ("wal_level", "max_replication_slots", "max_wal_senders", "TimeZone", "listen_addresses"):
            cur.execute("SELECT current_setting(%s)", (name,))
            got[name] = cur.fetchone()[0]
        cur.execute("SHOW server_version_num")
        version = int(cur.fetchone()[0])
    assert got == {
        "wal_level": "logical",
        "max_replication_slots": "20",
        "max_wal_senders": "20",
        "TimeZone": "UTC",
        "listen_addresses": "127.0.0.1",
    }
    assert 150000 <= version < 160000


def test_postgres_wal2json_slot_decodes_changes(pg_db: TestDatabase) -> None:
    """The cdc role creates a wal2json slot, sees an admin's insert in it, and drops it."""
    with pg_db.admin_connect().cursor() as cur:
        cur.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    cdc = pg_db.cdc_connect()
    slot = f"s_{pg_db.name}"
    with cdc.cursor() as cur:
        cur.execute("SELECT lsn FROM pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
        with pg_db.admin_connect().cursor() as admin_cur:
            admin_cur.execute("INSERT INTO t VALUES (1, 'ünïcode')")
        cur.execute(
            "SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL, 'format-version', '2')", (slot,)
        )
        messages = [json.loads(row[0]) for row in cur.fetchall()]
        cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        cur.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        remaining = cur.fetchone()[0]
    inserts = [m for m in messages if m["action"] == "I"]
    assert [(m["table"], m["columns"][1]["value"]) for m in inserts] == [("t", "ünïcode")]
    assert remaining == 0


def test_postgres_cdc_role_can_stream_and_publish(pg_db: TestDatabase) -> None:
    """cdc owns admin-created tables, creates a publication and opens a replication connection."""
    with pg_db.admin_connect().cursor() as cur:
        cur.execute("CREATE TABLE t (id serial PRIMARY KEY, v text)")
        cur.execute("SELECT tableowner FROM pg_tables WHERE tablename = 't'")
        owner = cur.fetchone()[0]
    with pg_db.cdc_connect().cursor() as cur:
        cur.execute("CREATE PUBLICATION p_test FOR TABLE t")
        cur.execute("SELECT count(*) FROM t")
    assert owner == pg_db.cdc_user
    repl = psycopg2.connect(
        host=pg_db.host,
        port=pg_db.port,
        user=pg_db.cdc_user,
        password=pg_db.cdc_password.get_secret_value(),
        dbname=pg_db.name,
        connection_factory=psycopg2.extras.LogicalReplicationConnection,
    )
    try:
        with repl.cursor() as rcur:
            rcur.create_replication_slot(f"s_{pg_db.name}", output_plugin="pgoutput")
    finally:
        repl.close()
    # The slot is left behind on purpose: pg_db's teardown must drop it before the database.


def test_postgres_wrong_password_is_rejected(pg_db: TestDatabase) -> None:
    """TCP logins really use scram-sha-256 (pg_hba is not 'trust')."""
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host=pg_db.host, port=pg_db.port, user=pg_db.cdc_user, password="wrong", dbname=pg_db.name
        )


def test_moto_serves_s3(moto_endpoint: str, aws_client_kwargs: dict[str, str]) -> None:
    """create_bucket / put_object / list_objects_v2 round-trip on the moto server."""
    s3 = boto3.client("s3", **aws_client_kwargs)
    bucket = f"devstack-test-{time.time_ns()}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello")
    listed = s3.list_objects_v2(Bucket=bucket)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert aws_client_kwargs["endpoint_url"] == moto_endpoint
    assert bucket in names
    assert [o["Key"] for o in listed["Contents"]] == ["a/b.txt"]


def test_up_is_idempotent(stack: StackSettings) -> None:
    """A second up() starts nothing and reports the already running pids."""
    before = {s.name: s.pid for s in devstack.status()}
    results = devstack.up(["mariadb", "mysql8", "postgres", "moto", "opensearch"])
    assert [(r.status.name, r.action) for r in results] == [
        ("mariadb", "already running"),
        ("mysql8", "already running"),
        ("postgres", "already running"),
        ("moto", "already running"),
        ("opensearch", "already running"),
    ]
    assert {r.status.name: r.status.pid for r in results} == before


def test_status_cli_lists_running_services(stack: StackSettings) -> None:
    """``python -m devstack status`` exits 0 and shows every service running with its endpoint."""
    proc = subprocess.run(
        [sys.executable, "-m", "devstack", "status"],
        capture_output=True,
        text=True,
        check=False,
        cwd=stack.repo_dir,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert set(lines) == {"mariadb", "mysql8", "postgres", "moto", "opensearch"}
    assert all(" running " in line for line in lines.values())
    assert f"127.0.0.1:{stack.mariadb_port}" in lines["mariadb"]
    assert f"127.0.0.1:{stack.mysql8_port}" in lines["mysql8"]
    assert "admin-local-pw" not in proc.stdout


def test_cli_rejects_unknown_service(stack: StackSettings) -> None:
    """An unknown service name is a clear error with a non-zero exit code."""
    proc = subprocess.run(
        [sys.executable, "-m", "devstack", "up", "nosuchdb"],
        capture_output=True,
        text=True,
        check=False,
        cwd=stack.repo_dir,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "unknown service(s) nosuchdb" in proc.stderr


# ---------------------------------------------------------------- isolated stack lifecycle


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[StackSettings]:
    """A second, throw-away stack on free ports, so lifecycle tests never disturb the shared one."""
    # pytest's tmp_path is 0700; mariadbd/postgres run as their own users and must traverse it.
    root = Path(tempfile.mkdtemp(prefix="devstack-test-"))
    root.chmod(0o755)
    monkeypatch.setenv("LAKEHOUSE_STACK_DIR", str(root / "stack"))
    monkeypatch.setenv("LAKEHOUSE_MARIADB_PORT", str(_free_port()))
    monkeypatch.setenv("LAKEHOUSE_POSTGRES_PORT", str(_free_port()))
    monkeypatch.setenv("LAKEHOUSE_MOTO_PORT", str(_free_port()))
    try:
        yield devstack.settings()
    finally:
        devstack.down()
        shutil.rmtree(root, ignore_errors=True)


def test_lifecycle_survives_down_and_unclean_kill(private_stack: StackSettings) -> None:
    """up -> down -> down -> up -> kill -9 everything -> up recovers, keeping the data."""
    names = ["mariadb", "postgres", "moto"]
    assert {r.action for r in devstack.up(names)} == {"started"}
    with (
        pymysql.connect(
            host=private_stack.host,
            port=private_stack.mariadb_port,
            user=private_stack.admin_user,
            password=private_stack.admin_password.get_secret_value(),
            autocommit=True,
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("CREATE DATABASE keepme")

    assert {r.action for r in devstack.down(names)} == {"stopped"}
    assert {r.action for r in devstack.down(names)} == {"already stopped"}
    assert {s.state for s in devstack.status()} == {"stopped"}

    assert {r.action for r in devstack.up(names)} == {"started"}
    for st in devstack.status(names):
        assert st.pid is not None
        os.kill(st.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(s.running for s in devstack.status(names)) and time.monotonic() < deadline:
        time.sleep(0.1)

    results = devstack.up(names)
    assert {r.action for r in results} == {"started"}
    with (
        pymysql.connect(
            host=private_stack.host,
            port=private_stack.mariadb_port,
            user=private_stack.cdc_user,
            password=private_stack.cdc_password.get_secret_value(),
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SHOW DATABASES LIKE 'keepme'")
        assert cur.fetchall() == (("keepme",),)
    pg = psycopg2.connect(
        host=private_stack.host,
        port=private_stack.postgres_port,
        user=private_stack.cdc_user,
        password=private_stack.cdc_password.get_secret_value(),
        dbname="postgres",
    )
    pg.close()


# ---------------------------------------------------------------- the package lock (issue 13, item 3)


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A lock file held by another process the way apt and dpkg hold theirs (an fcntl record lock)."""
    lock = tmp_path / "lock-frontend"
    lock.touch()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n",  # holds it until its stdin is closed
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield lock, holder
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_a_held_package_lock_is_waited_for_and_its_holder_named(
    held_lock: tuple[Path, subprocess.Popen[str]],
) -> None:
    from devstack.package_lock import lock_holder, wait_for_locks

    lock, holder = held_lock
    assert lock_holder(lock) == holder.pid
    assert holder.stdin is not None
    threading.Timer(1.0, holder.stdin.close).start()  # the other apt finishes after a second
    said: list[str] = []
    started = time.monotonic()
    left = wait_for_locks([lock], 30, say=said.append)
    assert 0.9 < time.monotonic() - started < 10 and 20 < left <= 30
    assert len(said) == 1, said
    assert said[0].startswith(f"waiting up to 30 s for the package lock {lock} held by PID {holder.pid} (")
    holder.wait(timeout=10)
    assert lock_holder(lock) is None


def test_a_package_lock_held_too_long_fails_naming_its_holder(
    held_lock: tuple[Path, subprocess.Popen[str]],
) -> None:
    from devstack.base import InstallError
    from devstack.package_lock import wait_for_locks

    lock, holder = held_lock
    with pytest.raises(InstallError, match=rf"{lock} is still held by PID {holder.pid} .* after 1 s"):
        wait_for_locks([lock], 1.0, say=lambda _: None)
    assert holder.poll() is None  # never touched: only its holder may let go


def test_apt_that_lost_the_race_for_a_lock_runs_again_and_is_told_to_wait(tmp_path: Path) -> None:
    """apt gives up at once on a busy lock unless told to wait; a lost race is retried, bounded."""
    from devstack.base import InstallError
    from devstack.package_lock import run_apt

    calls = tmp_path / "calls"
    fake_apt = tmp_path / "apt-get"
    fake_apt.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f'if [ "$(wc -l < {calls})" -lt 2 ]; then\n'
        "  echo 'E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)' >&2\n"
        "  exit 100\n"
        "fi\n"
        "echo installed\n"
    )
    fake_apt.chmod(0o755)
    said: list[str] = []
    env = {"PATH": os.environ["PATH"]}
    proc = run_apt([str(fake_apt), "install", "x"], locks=[], lock_timeout=30, env=env, say=said.append)
    assert proc.returncode == 0 and proc.stdout == "installed\n"
    runs = calls.read_text().splitlines()
    assert len(runs) == 2 and all(
        r.startswith("-o DPkg::Lock::Timeout=") and r.endswith(" install x") for r in runs
    )
    assert len(said) == 1 and "held by process 4242" in said[0]
    calls.write_text("")
    with pytest.raises(InstallError, match="the package lock stayed busy for 0 s"):
        run_apt([str(fake_apt), "install", "x"], locks=[], lock_timeout=0, env=env, say=said.append)


# ---------------------------------------------------------------- first install (issue 13, item 6)


def _fake_checkout(root: Path, pip_exit: int) -> Path:
    """A checkout whose .venv python stands in for pip: it prints what pip prints, then exits."""
    (root / "scripts").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "scripts" / "bootstrap.sh", root / "scripts")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "constraints.txt").write_text("alpha==1.0\n")
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(
        "#!/bin/sh\n"
        "for p in alpha beta gamma; do\n"
        '  echo "Collecting $p==1.0"; echo "  Downloading $p-1.0-py3-none-any.whl (10 kB)"\n'
        "done\n"
        f"[ {pip_exit} -eq 0 ] || {{ echo 'ERROR: No matching distribution found for gamma' >&2; exit {pip_exit}; }}\n"
        'echo "Installing collected packages: alpha, beta, gamma"\n'
        'echo "Successfully installed alpha-1.0 beta-1.0 gamma-1.0"\n'
    )
    python.chmod(0o755)
    return root / "scripts" / "bootstrap.sh"


def test_bootstrap_shows_its_steps_and_pips_progress(tmp_path: Path) -> None:
    script = _fake_checkout(tmp_path / "ok", pip_exit=0)
    first = subprocess.run(["bash", script], capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split("]")[0] for line in lines if line.startswith("bootstrap: [")] == [
        "bootstrap: [1/3",
        "bootstrap: [2/3",
        "bootstrap: [3/3",
    ]
    assert "installing Python packages" in lines[2] and "min" in lines[2]
    assert lines[3:6] == ["  Collecting alpha==1.0", "  Collecting beta==1.0", "  Collecting gamma==1.0"]
    assert "  Successfully installed alpha-1.0 beta-1.0 gamma-1.0" in lines
    again = subprocess.run(["bash", script], capture_output=True, text=True, timeout=60, check=False)
    assert again.stdout.splitlines()[-1] == "bootstrap: [3/3] .venv is up to date"


def test_bootstrap_shows_pips_error_when_the_install_fails(tmp_path: Path) -> None:
    script = _fake_checkout(tmp_path / "bad", pip_exit=1)
    failed = subprocess.run(["bash", script], capture_output=True, text=True, timeout=60, check=False)
    assert failed.returncode == 1
    assert "No matching distribution found for gamma" in failed.stderr
    assert "bootstrap: pip install failed" in failed.stderr
    assert not (tmp_path / "bad" / ".venv" / ".bootstrap-stamp").exists()
