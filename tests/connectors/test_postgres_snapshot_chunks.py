"""PostgreSQL snapshots read in primary-key chunks: no session holds the xmin horizon for long, and
composite keys of several types chunk without a row read twice or missed."""

from __future__ import annotations

from typing import Any

from connectors.postgres import PostgresSource
from tests.postgres_support import make_config

CHUNK_ROWS = 500


HELD_XMINS = (
    "SELECT pid, backend_xmin::text FROM pg_stat_activity"
    " WHERE datname = %s AND usename = %s AND backend_xmin IS NOT NULL"
)


def test_no_session_holds_back_the_xmin_horizon_between_chunks(pg_db: Any) -> None:
    """While the consumer works on a chunk, no session of the snapshot holds a snapshot (an xmin).

    With one snapshot transaction for the whole table (the previous design), the reader's
    backend_xmin stayed set from the first row to the last, blocking vacuum for the whole load.
    Each chunk is now one autocommit statement, so between chunks the horizon is free. The check
    runs while the generator is suspended, so a fast chunk query cannot slip between samples; a
    session of the same user that does hold a snapshot shows the check would see one.
    """
    admin = pg_db.admin_connect()
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE big (id bigint PRIMARY KEY, v text NOT NULL)")
        cur.execute("INSERT INTO big SELECT i, repeat('x', 50) FROM generate_series(1, 20000) i")
    source = PostgresSource(make_config(pg_db, chunk_rows=CHUNK_ROWS, tables=("big",)))

    def held() -> list[tuple[int, str]]:
        with admin.cursor() as cur:
            cur.execute(HELD_XMINS, (pg_db.name, pg_db.cdc_user))
            return cur.fetchall()

    # The control: a session of the snapshot's user inside a repeatable-read transaction.
    holder = pg_db.cdc_connect()
    holder.autocommit = False
    holder.set_session(isolation_level="REPEATABLE READ")
    with holder.cursor() as cur:
        cur.execute("SELECT count(*) FROM big")
    assert [pid for pid, _ in held()] == [holder.get_backend_pid()], "the check sees a held snapshot"
    holder.rollback()
    holder.close()

    rows = chunks = 0
    try:
        for batch in source.snapshot():
            rows += batch.num_rows
            chunks += 1
            assert held() == [], f"after chunk {chunks} ({rows} rows) a session of ours still holds an xmin"
    finally:
        source.close()
    assert rows == 20000 and chunks > 20000 // CHUNK_ROWS


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
