"""Latency in `stream` mode: source commit -> visible in the lake, p50/p95, under a steady workload.

For each source (MariaDB as Aurora MySQL, PostgreSQL as Aurora PostgreSQL) a writer thread
commits small transactions at a steady rate into a `pings` table and notes the wall time each
COMMIT returned. The pipeline's `stream_source` runs in another thread exactly as `lakehouse
stream` does. For every row we record two moments:

* baseline — when the source connector handed the decoded row to the pipeline (what a plain CDC
  decoder loop would see; no lake involved);
* ours — when the lake commit that contains it was created (readers can see it from then on).

Run by hand with the stack up:  .venv/bin/python bench/bench_latency.py [seconds] [tx_per_second]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg2
import pymysql

from connectors.events import Batch, TableId
from connectors.lake.commits import CommitRecord
from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from connectors.offsets import Offset
from connectors.postgres.config import PostgresSourceConfig
from devstack.settings import load_settings
from pipelines.capture.runner import stream_source
from pipelines.capture.sources import open_source

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
RATE = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
ROWS_PER_TX = 5


class TimedSource:
    """Wraps a source: notes when each row id is handed over by the connector."""

    def __init__(self, inner: Any, seen: dict[int, float]) -> None:
        self._inner = inner
        self._seen = seen
        self.pending: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def stream(
        self, since: Offset, floors: Mapping[TableId, Offset], until: Offset | None = None
    ) -> Iterator[Batch]:
        for batch in self._inner.stream(since, floors, until):
            now = time.time()
            for changes in batch.changes:
                ids = changes.data["id"].to_pylist()
                self.pending.extend(ids)
                for i in ids:
                    self._seen.setdefault(i, now)
            yield batch


def _percentiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    q = statistics.quantiles(values, n=100)
    return f"p50 {q[49]:.3f} s  p95 {q[94]:.3f} s  max {max(values):.3f} s  (n={len(values)})"


def run(kind: str) -> None:
    stack = load_settings()
    db = f"lat_{uuid.uuid4().hex[:8]}"
    admin_pw = stack.admin_password.get_secret_value()
    if kind == "mysql":
        admin = pymysql.connect(
            host=stack.host,
            port=stack.mariadb_port,
            user=stack.admin_user,
            password=admin_pw,
            autocommit=True,
        )
        admin.cursor().execute(f"CREATE DATABASE `{db}`")
        admin.select_db(db)
        admin.cursor().execute("CREATE TABLE pings (id BIGINT PRIMARY KEY, note VARCHAR(40))")
        config: Any = MySQLSourceConfig(
            name="lat", host=stack.host, port=stack.mariadb_port, user=stack.cdc_user, password=stack.cdc_password,
            database=db, tables=("pings",), batch_max_seconds=0.2,
        )  # fmt: skip
    else:
        root = psycopg2.connect(
            host=stack.host,
            port=stack.postgres_port,
            user=stack.admin_user,
            password=admin_pw,
            dbname="postgres",
        )
        root.autocommit = True
        root.cursor().execute(f'CREATE DATABASE "{db}" OWNER "{stack.cdc_user}"')
        root.close()
        admin = psycopg2.connect(host=stack.host, port=stack.postgres_port, user=stack.cdc_user,
                                 password=stack.cdc_password.get_secret_value(), dbname=db)  # fmt: skip
        admin.autocommit = True
        admin.cursor().execute("CREATE TABLE pings (id BIGINT PRIMARY KEY, note VARCHAR(40))")
        config = PostgresSourceConfig(
            name="lat", host=stack.host, port=stack.postgres_port, user=stack.cdc_user, password=stack.cdc_password,
            database=db, tables=("pings",), batch_max_seconds=0.2,
        )  # fmt: skip
    committed: dict[int, float] = {}
    decoded: dict[int, float] = {}
    visible: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as lake_dir:
        lake = Lake(LakeConfig(root=lake_dir, merge_every_seconds=5.0))
        source = TimedSource(open_source(config), decoded)

        def on_commit(record: CommitRecord) -> None:
            now = time.time()
            for i in source.pending:
                visible.setdefault(i, now)
            source.pending.clear()

        stop = threading.Event()
        streamer = threading.Thread(
            target=stream_source,
            args=(lake, source),
            kwargs={"stop": stop, "on_commit": on_commit, "merge_every_seconds": 5.0},
        )
        streamer.start()
        time.sleep(3)  # initial (empty) snapshot and connection
        next_id, interval = 1, 1.0 / RATE
        deadline = time.monotonic() + SECONDS
        next_at = time.monotonic()
        with admin.cursor() as cur:
            if kind == "mysql":
                admin.autocommit(False)
            else:
                admin.autocommit = False
            while time.monotonic() < deadline:
                ids = list(range(next_id, next_id + ROWS_PER_TX))
                next_id += ROWS_PER_TX
                cur.executemany("INSERT INTO pings VALUES (%s, %s)", [(i, "ping") for i in ids])
                admin.commit()
                now = time.time()
                for i in ids:
                    committed[i] = now
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
        time.sleep(4)
        stop.set()
        # Wake an idle stream so it sees the stop flag at its next heartbeat.
        with admin.cursor() as cur:
            cur.execute("INSERT INTO pings VALUES (%s, %s)", (10**12, "stop"))
            admin.commit()
        streamer.join(timeout=120)
        source.close()
    ours = [visible[i] - committed[i] for i in committed if i in visible]
    base = [decoded[i] - committed[i] for i in committed if i in decoded]
    print(f"{kind}: {len(committed)} rows in {SECONDS:.0f} s at {RATE:g} tx/s x {ROWS_PER_TX} rows")
    print(f"  baseline: source commit -> decoded by the connector: {_percentiles(base)}")
    print(f"  ours:     source commit -> committed in the lake:    {_percentiles(ours)}")
    missing = len(committed) - len(ours)
    if missing:
        print(f"  WARNING: {missing} rows never became visible")
    admin.close()
    _drop(kind, db)


def _drop(kind: str, db: str) -> None:
    """Remove the throw-away database (and, for PostgreSQL, the source's slot in it)."""
    stack = load_settings()
    admin_pw = stack.admin_password.get_secret_value()
    if kind == "mysql":
        conn = pymysql.connect(
            host=stack.host, port=stack.mariadb_port, user=stack.admin_user, password=admin_pw
        )
        conn.cursor().execute(f"DROP DATABASE `{db}`")
        conn.close()
        return
    conn = psycopg2.connect(
        host=stack.host, port=stack.postgres_port, user=stack.admin_user, password=admin_pw, dbname="postgres"
    )
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s", (db,)
    )
    cur.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
    conn.close()


if __name__ == "__main__":
    for k in ("mysql", "postgres"):
        run(k)
