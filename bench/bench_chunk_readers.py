"""Snapshot chunk reads into Arrow: raw read rate, the current readers and the Arrow readers, same run.

Same table as bench/bench_snapshot.py (ROWS rows, 11 columns, generated server-side on MariaDB,
MySQL 9.7 and PostgreSQL). For each server, after one untimed warm-up read:

* raw: `bench_snapshot.baseline` (MySQL/MariaDB `mysql --quick --batch`, PostgreSQL COPY binary
  to a null sink through psql and psycopg2, the faster);
* current: every chunk of `chunk_rows` rows read and converted to Arrow as the snapshot does now
  (MySQL `_TableReader._read_range`: PyMySQL + `RowConverter.for_snapshot`; PostgreSQL
  `_read_chunks`: raw output text + `ChangeBuffer`);
* arrow: the same chunks through `connectors.mysql.arrow_reader` (connectorx) and
  `connectors.postgres.arrow_reader` (ADBC).

Each reader runs in a child process (rows/s timed around the chunk loop, peak RSS from wait4).
Chunks are dropped as read: this measures reading, not writing (pyarrow writes these rows to
Parquet at about 1.7M rows/s, PITFALLS.md).

Run by hand with the stack up (and the machine otherwise quiet):
    .venv/bin/python bench/bench_chunk_readers.py [--rows 2000000] [--chunk-rows 100000]
        [--only mariadb,mysql8,postgres] [--reuse DATABASE]
`--reuse` reads an existing database holding the loaded table (as the CDC user) instead of
creating and loading a throw-away one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_snapshot import KINDS, TABLE, Target, baseline, databases, load  # noqa: E402

from devstack.settings import load_settings  # noqa: E402

READERS = ("current", "arrow")


def child(spec: dict[str, Any]) -> None:
    """Read the whole table in chunks with one reader; print rows, chunks, fast chunks, seconds."""
    from connectors.events import TableId

    stack = load_settings()
    common: dict[str, Any] = {
        "name": "bench_chunks", "host": stack.host, "port": spec["port"], "user": stack.cdc_user,
        "password": stack.cdc_password, "database": spec["database"], "tables": (TABLE,),
    }  # fmt: skip
    chunk_rows = spec["chunk_rows"]
    rows = chunks = fast = 0
    position, micros = "bench", 1_700_000_000_000_000
    if spec["kind"] == "postgres":
        from connectors.postgres import arrow_reader
        from connectors.postgres.catalog import Catalog
        from connectors.postgres.config import PostgresSourceConfig
        from connectors.postgres.connection import connect
        from connectors.postgres.snapshot import _read_chunks

        config = PostgresSourceConfig(**common).model_copy(update={"chunk_rows": chunk_rows})
        conn = connect(config)
        catalog = Catalog(conn, config.timezone)
        layout = catalog.describe(TableId(config.name, "public", TABLE))
        started = time.perf_counter()
        if spec["reader"] == "current":
            iterator: Any = _read_chunks(config, conn, catalog, layout, position, micros, None)
        else:
            arrow_conn = arrow_reader.connect_arrow(config)
            plan = arrow_reader.plan_chunk_reads(layout)
            iterator = arrow_reader.read_table_chunks(
                arrow_conn, conn, catalog, plan, chunk_rows, position, micros
            )
        for chunk in iterator:
            rows += chunk.changes.num_rows + len(chunk.quarantined)
            chunks += 1
            fast += bool(getattr(chunk, "fast", False))
        seconds = time.perf_counter() - started
    else:
        import datetime as dt

        import pymysql.cursors

        from connectors.mysql import arrow_reader
        from connectors.mysql.config import MySQLSourceConfig
        from connectors.mysql.connection import connect
        from connectors.mysql.schema import read_table_definition
        from connectors.mysql.snapshot import KeyRange, _TableReader

        flavor = "mariadb" if spec["kind"] == "mariadb" else "mysql"
        config = MySQLSourceConfig(**common, flavor=flavor).model_copy(update={"chunk_rows": chunk_rows})
        conn = connect(config, cursorclass=pymysql.cursors.SSCursor)
        definition = read_table_definition(conn, TableId(config.name, config.database, TABLE))
        ts = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        started = time.perf_counter()
        if spec["reader"] == "current":
            reader = _TableReader(config, definition, position, ts)
            iterator = reader._read_range(conn, KeyRange(None, None), None)
        else:
            plan = arrow_reader.plan_chunk_reads(definition, config.timezone)
            url = arrow_reader.connectorx_url(config)
            iterator = arrow_reader.read_table_chunks(
                url, plan, chunk_rows, position_text=position, snapshot_ts=ts, reference_conn=conn
            )
        for chunk in iterator:
            rows += chunk.changes.num_rows + len(chunk.quarantined)
            chunks += 1
            fast += bool(getattr(chunk, "fast", False))
        seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "chunks": chunks, "fast": fast, "seconds": seconds}))


def run_child(target: Target, reader: str, chunk_rows: int) -> tuple[dict[str, Any], float]:
    """`child` in a fresh interpreter; its result and its peak RSS in MB (wait4)."""
    spec = {
        "kind": target.kind, "port": target.port, "database": target.database, "reader": reader,
        "chunk_rows": chunk_rows,
    }  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(spec)], cwd=REPO, env=env, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        err.seek(0)
        output, errors = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{reader} ({target.kind}) failed:\n{errors[-4000:]}")
    return json.loads(output.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--only", default=",".join(KINDS), help="comma-separated: mariadb,mysql8,postgres")
    parser.add_argument("--reuse", help="an existing database holding the loaded table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    kinds = [k for k in args.only.split(",") if k]
    stack = load_settings()
    ports = {"mariadb": stack.mariadb_port, "mysql8": stack.mysql8_port, "postgres": stack.postgres_port}
    name = args.reuse or f"bench_chunks_{uuid.uuid4().hex[:8]}"
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as exit_stack:
        admins = {} if args.reuse else exit_stack.enter_context(databases(stack, kinds, name))
        for kind in kinds:
            target = Target(kind, ports[kind], name)
            if not args.reuse:
                started = time.perf_counter()
                load(kind, admins[kind], stack, args.rows)
                print(
                    f"{kind}: loaded {args.rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True
                )
            raw, note = baseline(stack, target, args.rows)
            row: dict[str, Any] = {"kind": kind, "raw": raw, "note": note}
            for reader in READERS:
                run_child(target, reader, args.chunk_rows)  # warm-up (caches, imports)
                done, rss = run_child(target, reader, args.chunk_rows)
                if done["rows"] != args.rows:
                    raise RuntimeError(f"{reader} ({kind}) read {done['rows']:,} rows, not {args.rows:,}")
                row[reader] = args.rows / done["seconds"]
                row[f"{reader}_rss"] = rss
                row[f"{reader}_fast"] = f"{done['fast']}/{done['chunks']}"
                print(f"{kind}: {reader}: {done['seconds']:.2f} s, peak RSS {rss:.0f} MB", flush=True)
            results.append(row)
    print(
        f"\n{args.rows:,}-row, 11-column table read in chunks of {args.chunk_rows:,} rows into Arrow, rows/s:"
    )
    print(
        f"{'database':10} {'raw':>10} {'current':>10} {'arrow':>10} {'cur/raw':>8} {'arrow/raw':>9}"
        f" {'arrow/cur':>9} {'RSS cur MB':>10} {'RSS arrow MB':>12} {'fast chunks':>11}"
    )
    for r in results:
        print(
            f"{r['kind']:10} {r['raw']:>10,.0f} {r['current']:>10,.0f} {r['arrow']:>10,.0f}"
            f" {r['current'] / r['raw']:>8.2f} {r['arrow'] / r['raw']:>9.2f} {r['arrow'] / r['current']:>9.2f}"
            f" {r['current_rss']:>10.0f} {r['arrow_rss']:>12.0f} {r['arrow_fast']:>11}"
        )
    for r in results:
        print(f"  raw {r['kind']}: {r['note']}")


if __name__ == "__main__":
    main()
