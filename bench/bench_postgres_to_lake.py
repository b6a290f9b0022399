"""PostgreSQL -> lake change log rows/s, next to psycopg2 + wal2json decode-only over the same WAL.

Loads 200,000 rows (11 columns: ints, numeric, text, timestamps, jsonb, bool, bytea, uuid) in
transactions of 1,000 rows into a throw-away database on the local stack, with two slots created
before the load: the source's own pgoutput slot and a wal2json slot. Neither is ever confirmed, so
every round re-reads the same WAL. Each round times

* ours to the lake: `PostgresSource.stream(..., until=<position after the load>)` into a
  `LakeWriter` on a fresh local lake: receive, pgoutput decode, typed Arrow, Parquet change-log
  files and commits (what `lakehouse sync` does, less the current-state merge);
* ours decode only: the same stream without the lake (to show where the time goes);
* baseline: psycopg2 + wal2json format-version 2, one ``json.loads(parse_float=Decimal)`` per row
  (decode only: no conversion to typed columns), until 200,000 inserts were counted.

Run by hand with the stack up:  .venv/bin/python bench/bench_postgres_to_lake.py [rows] [rounds]
"""

from __future__ import annotations

import json
import os
import resource
import select
import sys
import tempfile
import time
import uuid
from decimal import Decimal

import psycopg2
import psycopg2.extras

from connectors.events import Batch
from connectors.lake.storage import Storage
from connectors.lake.writer import LakeWriter
from connectors.postgres import Lsn, PostgresSource, PostgresSourceConfig
from devstack.settings import load_settings

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
PER_TRANSACTION = 1_000

DDL = """
CREATE TABLE bench (
    id bigint PRIMARY KEY,
    qty integer,
    small smallint,
    amount numeric(18,4),
    name text,
    created timestamp(6),
    updated timestamptz,
    payload jsonb,
    active boolean,
    blob bytea,
    ref uuid
)
"""
INSERT = "INSERT INTO bench VALUES %s"
ROW_TEMPLATE = (
    "(%s, %s, %s, %s, %s, '2024-03-10 12:34:56.123456'::timestamp + %s * interval '1 second',"
    " now(), %s::jsonb, %s, %s, gen_random_uuid())"
)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(conn: psycopg2.extensions.connection) -> None:
    with conn.cursor() as cur:
        for start in range(0, ROWS, PER_TRANSACTION):
            rows = [
                (
                    i,
                    i % 100_000,
                    i % 30_000,
                    Decimal(i) / 7 if i % 3 else Decimal("12345678901234.5678"),
                    f"name {i} äöü",
                    i,
                    json.dumps({"i": i, "tag": "ö", "list": [1, 2, 3]}),
                    i % 2 == 0,
                    os.urandom(16),
                )
                for i in range(start, min(start + PER_TRANSACTION, ROWS))
            ]
            psycopg2.extras.execute_values(
                cur, INSERT, rows, template=ROW_TEMPLATE, page_size=PER_TRANSACTION
            )
            conn.commit()


def _ours(source: PostgresSource, since: Lsn, floors: dict, until: Lsn) -> tuple[float, int]:
    started = time.perf_counter()
    rows = 0
    for batch in source.stream(since, floors, until=until):
        rows += batch.num_rows
    return time.perf_counter() - started, rows


def _ours_to_lake(source: PostgresSource, since: Lsn, floors: dict, until: Lsn) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as lake_dir:
        writer = LakeWriter(Storage(lake_dir), "bench")
        # Seed the lake with the position the stream starts from (an empty snapshot commit).
        writer.write(Batch(start=None, end=since, snapshot=frozenset(source.tables())))
        started = time.perf_counter()
        rows = 0
        for batch in source.stream(since, floors, until=until):
            record = writer.write(batch)
            rows += record.rows if record is not None else 0
        return time.perf_counter() - started, rows


def _wal2json(dsn: dict, slot: str) -> tuple[float, int]:
    conn = psycopg2.connect(connection_factory=psycopg2.extras.LogicalReplicationConnection, **dsn)
    cur = conn.cursor()
    decoder = json.JSONDecoder(parse_float=Decimal)
    started = time.perf_counter()
    cur.start_replication(
        slot_name=slot,
        decode=False,
        options={"format-version": "2", "include-lsn": "1", "include-pk": "1", "include-types": "1"},
    )
    rows = 0
    while rows < ROWS:
        msg = cur.read_message()
        if msg is None:
            select.select([cur], [], [], 1.0)
            continue
        change = decoder.decode(msg.payload.decode())
        if change["action"] == "I":
            rows += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed, rows


def main() -> None:
    stack = load_settings()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin_dsn = {
        "host": stack.host,
        "port": stack.postgres_port,
        "user": stack.admin_user,
        "password": stack.admin_password.get_secret_value(),
    }
    admin = psycopg2.connect(dbname="postgres", **admin_dsn)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}" OWNER "{stack.cdc_user}"')
    cdc_dsn = {
        "host": stack.host,
        "port": stack.postgres_port,
        "user": stack.cdc_user,
        "password": stack.cdc_password.get_secret_value(),
        "dbname": name,
    }
    config = PostgresSourceConfig(
        name="bench",
        host=stack.host,
        port=stack.postgres_port,
        user=stack.cdc_user,
        password=stack.cdc_password,
        database=name,
        timezone="America/St_Johns",
    )
    source = PostgresSource(config)
    try:
        conn = psycopg2.connect(**cdc_dsn)
        conn.cursor().execute(DDL)
        conn.commit()
        final = [b for b in source.snapshot() if b.complete][0]  # creates our slot on the empty table
        w2j = conn.cursor()
        w2j.execute("SELECT pg_create_logical_replication_slot('bench_w2j', 'wal2json')")
        conn.commit()
        started = time.perf_counter()
        _load(conn)
        print(f"loaded {ROWS:,} rows in {time.perf_counter() - started:.1f}s")
        until = source.current_position()
        for round_number in range(1, ROUNDS + 1):
            lake, n_lake = _ours_to_lake(source, final.end, dict(final.floors), until)
            ours, n_ours = _ours(source, final.end, dict(final.floors), until)
            base, n_base = _wal2json(cdc_dsn, "bench_w2j")
            print(
                f"round {round_number}: ours to lake change log {n_lake / lake:>9,.0f} rows/s ({lake:.2f}s)"
                f" | ours decode only {n_ours / ours:>9,.0f} rows/s"
                f" | psycopg2+wal2json decode-only {n_base / base:>9,.0f} rows/s ({base:.2f}s)"
                f" | ratio to lake/baseline {base / lake:.2f}x"
            )
            assert n_lake == ROWS and n_ours == ROWS and n_base == ROWS, (n_lake, n_ours, n_base)
        print(f"max RSS of this process: {_rss_mb():.0f} MB")
        conn.close()
    finally:
        source.close()
        admin.cursor().execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
            (name,),
        )
        admin.cursor().execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
