"""PostgreSQL snapshots read in primary-key chunks: no session holds the xmin horizon for long, and
composite keys of several types chunk without a row read twice or missed."""

from __future__ import annotations

import threading
import time
from typing import Any

from connectors.postgres import PostgresSource
from tests.postgres_support import make_config

CHUNK_ROWS = 500


def test_no_session_holds_back_the_xmin_horizon_for_longer_than_a_chunk(pg_db: Any) -> None:
    """While a table is snapshotted slowly, each backend_xmin of our sessions is gone within a chunk.

    With one snapshot transaction for the whole table (the previous design), the reader's
    backend_xmin stayed the same from the first row to the last: here the snapshot takes over 5 s
    (the consumer sleeps between chunks), and no xmin of ours may be seen for more than 1 s.
    """
    admin = pg_db.admin_connect()
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE big (id bigint PRIMARY KEY, v text NOT NULL)")
        cur.execute("INSERT INTO big SELECT i, repeat('x', 50) FROM generate_series(1, 20000) i")
        cur.execute("CREATE TABLE churn (id int PRIMARY KEY, n int)")
        cur.execute("INSERT INTO churn VALUES (1, 0)")
    source = PostgresSource(make_config(pg_db, chunk_rows=CHUNK_ROWS, tables=("big",)))
    seen: dict[str, tuple[float, float]] = {}  # xmin -> (first seen, last seen)
    stop = threading.Event()

    def watch() -> None:
        conn = pg_db.admin_connect()
        with conn.cursor() as cur:
            while not stop.is_set():
                # Another transaction commits all the time, so a fresh snapshot gets a newer xmin.
                cur.execute("UPDATE churn SET n = n + 1 WHERE id = 1")
                cur.execute(
                    "SELECT backend_xmin::text FROM pg_stat_activity"
                    " WHERE datname = %s AND usename = %s AND backend_xmin IS NOT NULL",
                    (pg_db.name, pg_db.cdc_user),
                )
                now = time.monotonic()
                for (xmin,) in cur.fetchall():
                    first, _ = seen.get(xmin, (now, now))
                    seen[xmin] = (first, now)
                time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    rows = 0
    started = time.monotonic()
    try:
        for batch in source.snapshot():
            rows += batch.num_rows
            time.sleep(0.15)  # a slow consumer: the lake writing a chunk
    finally:
        stop.set()
        watcher.join()
        source.close()
    elapsed = time.monotonic() - started
    assert rows == 20000 and elapsed > 5
    assert seen, "the watcher saw the snapshot's reads"
    longest = max(last - first for first, last in seen.values())
    assert longest < 1.0, f"an xmin of ours stayed {longest:.1f} s: {seen}"


def test_composite_keys_of_several_types_chunk_exactly(pg_db: Any) -> None:
    admin = pg_db.admin_connect()
    with admin.cursor() as cur:
        cur.execute(
            "CREATE TABLE visits (clinic text, day date, seq numeric(20, 0), note text,"
            " PRIMARY KEY (clinic, day, seq))"
        )
        cur.execute(
            "INSERT INTO visits SELECT 'clinic ' || (i % 7) || ' é', date '2024-01-01' + (i % 11),"
            " 99999999999999999 + i, 'n' || i FROM generate_series(1, 3000) i"
        )
    source = PostgresSource(make_config(pg_db, chunk_rows=100, tables=("visits",)))
    try:
        batches = list(source.snapshot())
    finally:
        source.close()
    keys = [(r["clinic"], r["day"], r["seq"]) for b in batches for c in b.changes for r in c.data.to_pylist()]
    assert len(keys) == 3000 and len(set(keys)) == 3000
    assert max(b.num_rows for b in batches) <= 100 and len(batches) > 30
