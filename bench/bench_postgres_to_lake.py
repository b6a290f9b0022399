"""PostgreSQL -> lake change log rows/s, next to the best psycopg2 + wal2json decode-only run.

Loads 200,000 rows (11 columns: ints, numeric, text, timestamps, jsonb, bool, bytea, uuid) in
transactions of 1,000 rows into a throw-away database on the local stack, with two slots created
before the load: the source's own pgoutput slot and a wal2json slot. Neither is ever confirmed:
the source confirms only what `acknowledge` is given (and the bench acknowledges nothing), so every
round re-reads the same WAL - checked after every stream. Each round times

* ours to the lake: `PostgresSource.stream(..., until=<position after the load>)` into a
  `LakeWriter` on a fresh local lake: receive, pgoutput decode (binary values), typed Arrow,
  Parquet change-log files and commits (what `lakehouse sync` does, less the current-state merge);
* ours decode only: the same stream without the lake (to show where the time goes), and with text
  values (``binary_values = false``, what PostgreSQL before 14 gets); and pgoutput read only (the
  messages counted, nothing decoded: what the walsender can deliver at best);
* wal2json, decode only (no conversion to typed columns), until 200,000 inserts were counted, in
  each configuration a user might pick - format-version 1 (one JSON document per transaction) or 2
  (one per row), ``include-types`` off, numbers parsed exactly with
  ``json.loads(parse_float=Decimal)``. The baseline of the round is the faster of the two (see
  `WAL2JSON` for why orjson and the unparsed read are shown but not eligible).

Each figure comes with the walsender's CPU seconds (the server's exited backends, read from the
postmaster's /proc entry when the server is local): on a small machine the walsender and the
client share the cores.

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
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg2
import psycopg2.extras

from connectors.events import Batch
from connectors.lake.storage import Storage
from connectors.lake.writer import LakeWriter
from connectors.postgres import Lsn, PostgresSource, PostgresSourceConfig
from connectors.postgres.replication import ReplicationSession
from connectors.postgres.slot import released_slot_state
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


# wal2json configurations: (label, plugin options, parser, exact). Options left out are off by
# default (include-xids, include-timestamp, include-lsn, include-pk, pretty-print, ...). wal2json
# 2.5 sends numbers as bare JSON numbers (numeric-data-types-as-string came in 2.6), so an exact
# decode needs parse_float=Decimal; orjson is faster but reads them as floats (numeric(18,4)
# values lose digits), so it is shown but not eligible as the baseline.
_EXACT = json.JSONDecoder(parse_float=Decimal)
WAL2JSON: list[tuple[str, dict[str, str], Callable[[bytes], Any], bool]] = [
    ("v1 read only (not parsed)", {"format-version": "1", "include-types": "0"}, lambda p: None, False),
    (
        "v1 json+Decimal",
        {"format-version": "1", "include-types": "0"},
        lambda p: _EXACT.decode(p.decode()),
        True,
    ),
    (
        "v2 json+Decimal",
        {"format-version": "2", "include-types": "0"},
        lambda p: _EXACT.decode(p.decode()),
        True,
    ),
    ("v1 orjson (inexact numbers)", {"format-version": "1", "include-types": "0"}, orjson.loads, False),
]


def _wal2json(
    dsn: dict, slot: str, options: dict[str, str], parse: Callable[[bytes], Any]
) -> tuple[float, int]:
    conn = psycopg2.connect(connection_factory=psycopg2.extras.LogicalReplicationConnection, **dsn)
    cur = conn.cursor()
    started = time.perf_counter()
    cur.start_replication(slot_name=slot, decode=False, options=options)
    rows = 0
    version_1 = options["format-version"] == "1"
    while rows < ROWS:
        msg = cur.read_message()
        if msg is None:
            select.select([cur], [], [], 1.0)
            continue
        change = parse(msg.payload)
        if change is None:  # read only: count without parsing
            rows += msg.payload.count(b'"kind":"insert"')
        elif version_1:
            rows += sum(1 for c in change["change"] if c["kind"] == "insert")
        elif change["action"] == "I":
            rows += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed, rows


def _pgoutput_read_only(config: PostgresSourceConfig, since: Lsn) -> tuple[float, int]:
    """The walsender's ceiling: pgoutput binary messages read and counted, nothing decoded."""
    options = {"proto_version": "1", "publication_names": config.publication_name, "binary": "true"}
    started = time.perf_counter()
    session = ReplicationSession.start(config, config.slot_name, since.value, options)
    rows = 0
    try:
        while rows < ROWS:
            messages = session.read_available()
            if not messages:
                select.select([session], [], [], 1.0)
                continue
            rows += sum(1 for m in messages if m[0] == 73)  # 'I'
            if len(messages) < 64:
                time.sleep(0.001)  # as the stream does (connectors.postgres.stream.SMALL_BATCH)
    finally:
        session.close()
    return time.perf_counter() - started, rows


def _server_cpu(pid_file: Path) -> float | None:
    """CPU seconds of the local server's exited backends (the postmaster's reaped children, which
    include a stream's walsender once it has exited); None when the server is not local."""
    try:
        pid = int(pid_file.read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime + cstime
    except (OSError, ValueError, IndexError):
        return None


def _timed(
    run: Callable[[], tuple[float, int]], admin: Any, slot: str, pid_file: Path
) -> tuple[float, int, str]:
    """(seconds, rows, the walsender's CPU seconds as text) of one stream through `slot`."""
    before = _server_cpu(pid_file)
    seconds, rows = run()
    released_slot_state(admin, slot)  # its walsender has exited...
    time.sleep(0.1)  # ... and been reaped
    after = _server_cpu(pid_file)
    server = f"{after - before:.2f}s" if before is not None and after is not None else "n/a"
    return seconds, rows, server


def _line(label: str, rows: int, seconds: float, server_cpu: str) -> None:
    print(f"    {label:<40} {rows / seconds:>9,.0f} ({seconds:.2f}s, {server_cpu})")


def _confirmed(admin: psycopg2.extensions.connection, slot: str) -> str:
    with admin.cursor() as cur:
        cur.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        )
        return str(cur.fetchone()[0])


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
    text_source = PostgresSource(config.model_copy(update={"binary_values": False}))
    try:
        conn = psycopg2.connect(**cdc_dsn)
        conn.cursor().execute(DDL)
        conn.commit()
        final = [b for b in source.snapshot() if b.complete][0]  # creates our slot on the empty table
        since = final.end
        assert isinstance(since, Lsn)
        w2j = conn.cursor()
        w2j.execute("SELECT pg_create_logical_replication_slot('bench_w2j', 'wal2json')")
        conn.commit()
        started = time.perf_counter()
        _load(conn)
        print(f"loaded {ROWS:,} rows in {time.perf_counter() - started:.1f}s; {admin.server_version=}")
        until = source.current_position()
        slot = config.slot_name
        confirmed = _confirmed(admin, slot)
        pid_file = stack.service_dir("postgres") / "data" / "postmaster.pid"
        floors = dict(final.floors)
        for round_number in range(1, ROUNDS + 1):
            lake, n_lake, lake_cpu = _timed(
                lambda: _ours_to_lake(source, since, floors, until), admin, slot, pid_file
            )
            assert source.values_format == "binary", source.values_format
            ours, n_ours, ours_cpu = _timed(
                lambda: _ours(source, since, floors, until), admin, slot, pid_file
            )
            text, n_text, text_cpu = _timed(
                lambda: _ours(text_source, since, floors, until), admin, slot, pid_file
            )
            raw, n_raw, raw_cpu = _timed(lambda: _pgoutput_read_only(config, since), admin, slot, pid_file)
            # The source confirmed nothing it was not asked to: the next round reads the same WAL.
            assert _confirmed(admin, slot) == confirmed, (_confirmed(admin, slot), confirmed)
            assert n_lake == ROWS and n_ours == ROWS and n_text == ROWS and n_raw == ROWS, (
                n_lake,
                n_ours,
                n_text,
                n_raw,
            )
            print(f"round {round_number} (rows/s, seconds, the walsender's CPU seconds):")
            _line("ours to lake change log", n_lake, lake, lake_cpu)
            _line("ours decode only", n_ours, ours, ours_cpu)
            _line("ours decode only, text values", n_text, text, text_cpu)
            _line("pgoutput read only (not decoded)", n_raw, raw, raw_cpu)
            best = ("", 0.0)
            for label, options, parse, exact in WAL2JSON:
                base, n_base, base_cpu = _timed(
                    lambda options=options, parse=parse: _wal2json(cdc_dsn, "bench_w2j", options, parse),  # type: ignore[misc]
                    admin,
                    "bench_w2j",
                    pid_file,
                )
                assert n_base == ROWS, (label, n_base)
                _line(f"wal2json {label}", n_base, base, base_cpu)
                if exact and n_base / base > best[1]:
                    best = (label, n_base / base)
            print(
                f"    ratio ours to lake / best exact wal2json decode-only ({best[0]}): {n_lake / lake / best[1]:.2f}x",
                flush=True,
            )
        print(f"max RSS of this process: {_rss_mb():.0f} MB")
        conn.close()
    finally:
        source.close()
        text_source.close()
        admin.cursor().execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
            (name,),
        )
        admin.cursor().execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
