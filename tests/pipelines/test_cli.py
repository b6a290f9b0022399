"""The `lakehouse` command: clear errors that name the problem, and no secret in output or in the lake."""

from __future__ import annotations

import os
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
