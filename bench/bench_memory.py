"""Peak memory while a one-million-row transaction streams into the lake, next to a decode-only loop.

For each source a throw-away database gets a table, an initial `lakehouse sync --once` (empty
snapshot), then ONE transaction inserting ROWS rows. Then two child processes run one after the
other over the same transaction, and their peak RSS is read from `wait4` (what `/usr/bin/time -v`
reports):

* ours, streaming — `lakehouse sync --once --no-merge`: decode, stage Parquet in chunks, commit;
* ours, merging — `lakehouse merge` afterwards: the same million rows into current state;
* baseline — the plain decode loop of the library: mysql-replication over the binlog (MySQL), or
  psycopg2 + wal2json (PostgreSQL, from a slot created before the insert).

Run by hand with the stack up:  .venv/bin/python bench/bench_memory.py [rows]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import psycopg2
import pymysql

from devstack.settings import load_settings

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
REPO = Path(__file__).resolve().parents[1]

MYSQL_BASELINE = """
import sys
from connectors.mysql.patches.dump_request import apply
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent
apply()
host, port, user, pw, db, since = sys.argv[1:7]
stream = BinLogStreamReader(connection_settings=dict(host=host, port=int(port), user=user, passwd=pw),
    server_id=987654, is_mariadb=True, auto_position=since, blocking=False, only_events=[WriteRowsEvent],
    only_schemas=[db], only_tables=["big"], enable_logging=False)
n = 0
for ev in stream:
    for row in ev.rows:
        for v in row["values"].values():
            pass
        n += 1
print(n)
"""

PG_BASELINE = """
import json, select, sys
from decimal import Decimal
import psycopg2, psycopg2.extras
host, port, user, pw, db, rows = sys.argv[1:7]
conn = psycopg2.connect(host=host, port=int(port), user=user, password=pw, dbname=db,
                        connection_factory=psycopg2.extras.LogicalReplicationConnection)
cur = conn.cursor()
cur.start_replication(slot_name="mem_w2j", decode=False, options={"format-version": "2"})
dec = json.JSONDecoder(parse_float=Decimal)
n = 0
while n < int(rows):
    msg = cur.read_message()
    if msg is None:
        select.select([cur], [], [], 1.0)
        continue
    if dec.decode(msg.payload.decode())["action"] == "I":
        n += 1
print(n)
"""


def _child_peak_mb(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{args[:4]} failed: {err.decode()[-2000:]}")
    return usage.ru_maxrss / 1024, out.decode().strip()


def _config(path: Path, kind: str, port: int, database: str, lake: Path, user: str) -> None:
    extra = 'schema = "public"' if kind == "postgres" else ""
    path.write_text(
        textwrap.dedent(
            f"""
            [lake]
            root = "{lake}"
            [[sources]]
            name = "mem_{kind}"
            kind = "{kind}"
            host = "127.0.0.1"
            port = {port}
            user = "{user}"
            password = "${{MEM_PW}}"
            database = "{database}"
            tables = ["big"]
            {extra}
            """
        )
    )


def run(kind: str) -> None:
    stack = load_settings()
    database = f"mem_{uuid.uuid4().hex[:8]}"
    admin_pw = stack.admin_password.get_secret_value()
    cdc_pw = stack.cdc_password.get_secret_value()
    env = {**os.environ, "MEM_PW": cdc_pw, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "lakehouse.toml"
        port = stack.mariadb_port if kind == "mysql" else stack.postgres_port
        _config(config, kind, port, database, Path(tmp) / "lake", stack.cdc_user)
        sync = [sys.executable, "-m", "pipelines.cli", "--config", str(config), "sync", "--once"]
        if kind == "mysql":
            conn = pymysql.connect(host=stack.host, port=port, user=stack.admin_user, password=admin_pw, autocommit=True)
            cur = conn.cursor()
            cur.execute(f"CREATE DATABASE `{database}`")
            conn.select_db(database)  # the SEQUENCE engine's seq_1_to_N tables resolve in the current database
            cur.execute(f"CREATE TABLE `{database}`.big (id BIGINT PRIMARY KEY, n INT, note VARCHAR(64), amount DECIMAL(12,2))")
            _child_peak_mb(sync, env)  # initial snapshot of the empty table
            cur.execute("SELECT @@gtid_binlog_pos")
            since = cur.fetchone()[0]
            cur.execute(
                f"INSERT INTO `{database}`.big SELECT seq, seq % 1000, CONCAT('row ', seq), seq / 100 FROM seq_1_to_{ROWS}"
            )
            baseline_cmd = [sys.executable, "-c", MYSQL_BASELINE, stack.host, str(port), stack.cdc_user, cdc_pw, database, since]
        else:
            root = psycopg2.connect(host=stack.host, port=port, user=stack.admin_user, password=admin_pw, dbname="postgres")
            root.autocommit = True
            root.cursor().execute(f'CREATE DATABASE "{database}" OWNER "{stack.cdc_user}"')
            conn = psycopg2.connect(host=stack.host, port=port, user=stack.cdc_user, password=cdc_pw, dbname=database)
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute("CREATE TABLE big (id BIGINT PRIMARY KEY, n INT, note VARCHAR(64), amount NUMERIC(12,2))")
            _child_peak_mb(sync, env)
            cur.execute("SELECT pg_create_logical_replication_slot('mem_w2j', 'wal2json')")
            cur.execute(
                f"INSERT INTO big SELECT g, g % 1000, 'row ' || g, g / 100.0 FROM generate_series(1, {ROWS}) g"
            )
            baseline_cmd = [sys.executable, "-c", PG_BASELINE, stack.host, str(port), stack.cdc_user, cdc_pw, database, str(ROWS)]
        ours_mb, _ = _child_peak_mb([*sync, "--no-merge"], env)
        merge_mb, _ = _child_peak_mb([*sync[:-2], "merge"], env)
        base_mb, counted = _child_peak_mb(baseline_cmd, env)
        assert int(counted) == ROWS, counted
        print(f"{kind}: one {ROWS:,}-row transaction: ours streaming into the change log peak RSS {ours_mb:.0f} MB"
              f" | baseline decode-only loop {base_mb:.0f} MB | ours merging it into current state {merge_mb:.0f} MB")  # fmt: skip
        if kind == "mysql":
            cur.execute(f"DROP DATABASE `{database}`")
        else:
            cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()")
            conn.close()
            root.cursor().execute(f'DROP DATABASE "{database}" WITH (FORCE)')
            root.close()


if __name__ == "__main__":
    for k in ("mysql", "postgres"):
        run(k)
