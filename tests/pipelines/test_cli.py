"""The `lakehouse` command: clear errors that name the problem, and no secret in output or in the lake."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def lakehouse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_config(
    path: Path, db: Any, lake: Path, password_var: str = "T_PW", port: int | None = None
) -> Path:
    path.write_text(
        f"""
[lake]
root = "{lake}"

[[sources]]
name = "cli_mysql"
kind = "mysql"
host = "{db.host}"
port = {port or db.port}
user = "{db.cdc_user}"
password = "${{{password_var}}}"
database = "{db.name}"
tables = ["people"]

[sources.retry]
attempts = 2
initial_seconds = 0.1
max_seconds = 0.2
"""
    )
    return path


def test_a_bad_config_names_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[[sources]]\nname = "Bad Name"\nkind = "mysql"\nport = 70000\nuser = "u"\ndatabase = "d"\nbogus = 1\n'
    )
    out = lakehouse("--config", str(cfg), "sync", "--once")
    assert out.returncode == 2
    assert "sources[0].mysql.name" in out.stderr and "lower_snake_case" in out.stderr
    assert "sources[0].mysql.port" in out.stderr
    assert "sources[0].mysql.bogus" in out.stderr


def test_a_missing_environment_variable_is_named(tmp_path: Path, mysql_db: Any) -> None:
    cfg = write_config(tmp_path / "c.toml", mysql_db, tmp_path / "lake", password_var="NOT_SET_ANYWHERE")
    out = lakehouse(
        "--config",
        str(cfg),
        "sync",
        "--once",
    )
    assert out.returncode == 2 and "NOT_SET_ANYWHERE is not set" in out.stderr


def test_wrong_password_and_unreachable_source_fail_clearly_without_the_secret(
    tmp_path: Path, mysql_db: Any
) -> None:
    secret = "Sup3r-Secret-Value-123"
    cfg = write_config(tmp_path / "c.toml", mysql_db, tmp_path / "lake")
    out = lakehouse("--config", str(cfg), "sync", "--once", env={"T_PW": secret})
    assert out.returncode == 2
    assert f"{mysql_db.host}:{mysql_db.port}" in out.stderr
    assert secret not in out.stderr + out.stdout
    unreachable = write_config(tmp_path / "u.toml", mysql_db, tmp_path / "lake", port=1)
    out = lakehouse("--config", str(unreachable), "sync", "--once", env={"T_PW": secret})
    assert out.returncode == 2 and "127.0.0.1:1" in out.stderr
    assert secret not in out.stderr + out.stdout


def test_sync_then_show_and_no_secret_in_the_lake(tmp_path: Path, mysql_db: Any) -> None:
    conn = mysql_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(40))")
        cur.execute("INSERT INTO people VALUES (1, 'Zoë'), (2, 'Søren')")
    conn.commit()
    lake = tmp_path / "lake"
    cfg = write_config(tmp_path / "c.toml", mysql_db, lake)
    password = mysql_db.cdc_password.get_secret_value()
    out = lakehouse("--config", str(cfg), "sync", "--once", env={"T_PW": password})
    assert out.returncode == 0, out.stderr
    shown = lakehouse("--config", str(cfg), "show", "--sample", "2", env={"T_PW": password})
    assert shown.returncode == 0, shown.stderr
    assert f"{mysql_db.name.lower()}__people" in shown.stdout and "Søren" in shown.stdout
    for output in (out.stdout, out.stderr, shown.stdout, shown.stderr):
        assert password not in output
    for path in lake.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def test_a_lost_position_is_a_clear_error_naming_the_resnapshot_command(tmp_path: Path, pg_db: Any) -> None:
    conn = pg_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(40))")
        cur.execute("INSERT INTO people VALUES (1, 'Zoë')")
    cfg = tmp_path / "pg.toml"
    cfg.write_text(
        f"""
[lake]
root = "{tmp_path / "lake"}"

[[sources]]
name = "cli_pg"
kind = "postgres"
host = "{pg_db.host}"
port = {pg_db.port}
user = "{pg_db.cdc_user}"
password = "${{T_PW}}"
database = "{pg_db.name}"
tables = ["people"]
"""
    )
    env = {"T_PW": pg_db.cdc_password.get_secret_value()}
    assert lakehouse("--config", str(cfg), "sync", "--once", env=env).returncode == 0
    with conn.cursor() as cur:  # someone drops our slot: the server forgets our position
        cur.execute("SELECT pg_drop_replication_slot('lakehouse_cli_pg')")
        cur.execute("INSERT INTO people VALUES (2, 'Søren')")
    lost = lakehouse("--config", str(cfg), "sync", "--once", env=env)
    assert lost.returncode == 2
    assert "lakehouse resnapshot --source cli_pg" in lost.stderr
    # Never a silent restart from now: the lake did not move, and the row is not there yet.
    again = lakehouse("--config", str(cfg), "sync", "--once", env=env)
    assert again.returncode == 2
    fixed = lakehouse("--config", str(cfg), "resnapshot", "--source", "cli_pg", env=env)
    assert fixed.returncode == 0, fixed.stderr
    shown = lakehouse("--config", str(cfg), "show", "--sample", "5", env=env)
    assert "Søren" in shown.stdout


def test_show_prints_values_positions_and_source_rows_as_an_analyst_reads_them(
    tmp_path: Path, mysql_db: Any
) -> None:
    """`show --sample`: no Python reprs, a readable position, and the source's own row count (issue 13)."""
    conn = mysql_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(40), amount DECIMAL(10, 2),"
            " seen DATETIME, photo BLOB, bio TEXT)"
        )
        cur.execute(
            "INSERT INTO people VALUES (1, 'Zoë', 2, '2024-05-01 12:30:00', %s, %s), (2, 'Søren', NULL, NULL, NULL, 'x')",
            (bytes(range(200)), "lorem ipsum " * 50),
        )
    conn.commit()
    cfg = write_config(tmp_path / "c.toml", mysql_db, tmp_path / "lake")
    env = {"T_PW": mysql_db.cdc_password.get_secret_value()}
    assert lakehouse("--config", str(cfg), "sync", "--once", env=env).returncode == 0
    with conn.cursor() as cur:
        cur.execute("INSERT INTO people (id, name) VALUES (3, 'not captured yet')")
    conn.commit()
    shown = lakehouse("--config", str(cfg), "show", "--sample", "2", env={**env, "COLUMNS": "300"})
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    for repr_piece in ("Decimal(", "datetime.", "ZoneInfo", "b'", "\\x", "{'"):
        assert repr_piece not in out, out
    assert "2.00" in out and "2024-05-01 12:30:00+00:00" in out and "NULL" in out
    assert "0x0001020304050607… (200 bytes)" in out
    assert "lorem ipsum lorem ipsum" in out and "lorem ipsum " * 4 not in out
    assert re.search(r"^cli_mysql: commit \d+ at GTID 0-1-\d+ \(", out, re.MULTILINE), out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{mysql_db.name.lower()}__people"))
    assert lines[at - 2].endswith("current rows  merged to  source rows")
    cells = lines[at].split()
    assert cells[5] == "2" and cells[-1] == "3"  # current rows (as of the sync), source rows (now)
    quiet = lakehouse("--config", str(cfg), "show", "--no-source-rows", env=env)
    assert quiet.returncode == 0 and "source rows" not in quiet.stdout


def test_show_sums_the_usage_and_cost_of_runs_on_an_s3_lake(
    tmp_path: Path, mysql_db: Any, moto_endpoint: str, aws_client_kwargs: dict[str, str]
) -> None:
    import boto3

    conn = mysql_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(40))")
        cur.execute("INSERT INTO people VALUES (1, 'Zoë'), (2, 'Søren')")
    conn.commit()
    bucket = f"lake-{os.urandom(4).hex()}"
    boto3.client("s3", **aws_client_kwargs).create_bucket(Bucket=bucket)
    cfg = write_config(tmp_path / "c.toml", mysql_db, Path("unused"))
    text = cfg.read_text().replace(
        'root = "unused"',
        f'root = "s3://{bucket}/lake"\ncatalog_uri = "sqlite:///{tmp_path}/catalog.db"\n'
        f'[lake.s3]\nendpoint_url = "{moto_endpoint}"\naccess_key_id = "testing"\nsecret_access_key = "testing"',
    )
    # The lake in another Region than the worker: its bytes are priced as cross-Region transfer.
    text += '\n[costs]\nworker = {region = "eu-west-1"}\nendpoints = {lake = {region = "us-east-1"}}\n'
    cfg.write_text(text)
    env = {"T_PW": mysql_db.cdc_password.get_secret_value()}
    for _ in range(2):
        out = lakehouse("--config", str(cfg), "sync", "--once", env=env)
        assert out.returncode == 0, out.stderr
    assert "S3 requests" in out.stdout
    shown = lakehouse("--config", str(cfg), "show", "--no-source-rows", env=env)
    assert shown.returncode == 0, shown.stderr
    usage = shown.stdout.split("usage of the last 7 days", 1)[1]
    table = f"cli_mysql.{mysql_db.name.lower()}__people"
    [line] = [row for row in usage.splitlines() if row.strip().startswith(table)]
    name, runs, requests, sent, _received, _glue, cost = line.split()
    assert name == table and runs == "2" and int(requests) > 0 and float(sent) > 0 and float(cost) > 0
    [source_line] = [row for row in usage.splitlines() if row.split() and row.split()[0] == "cli_mysql"]
    assert int(source_line.split()[2]) > 0  # its commit log, staging and usage records
    listed = boto3.client("s3", **aws_client_kwargs).list_objects_v2(
        Bucket=bucket, Prefix="lake/_usage/cli_mysql/"
    )
    assert listed["KeyCount"] == 2
