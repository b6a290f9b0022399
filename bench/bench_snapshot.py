"""Initial snapshot -> lake change log rows/s on MariaDB, MySQL 9.7 and PostgreSQL, next to each
server's raw read rate, same table, same run.

Each database gets a throw-away database with one 11-column table of ROWS rows, generated
server-side (`INSERT ... SELECT` from MariaDB's seq_1_to_N, a recursive CTE on MySQL,
generate_series on PostgreSQL): BIGINT key, INT, BIGINT, DECIMAL(12,2), DOUBLE, VARCHAR(40),
VARCHAR(200), DATETIME(6) / TIMESTAMP(6), DATE, BOOL, TEXT (NULL in every 7th row); the same
logical columns and values on each server. After one untimed read to warm the caches:

* baseline, the raw read rate with the C clients, all rows to a null sink, as the CDC user:
  MySQL/MariaDB `mysql --no-defaults --quick --batch -e 'SELECT * FROM t' > /dev/null`
  (MariaDB: /usr/bin/mariadb; MySQL 9.7: the stack's sid client under sid's loader);
  PostgreSQL `COPY (SELECT * FROM t) TO STDOUT (FORMAT binary)`, both as psql `\\copy ... to
  '/dev/null'` and psycopg2 `copy_expert` into a discarding file object: the faster is the baseline.
  TLS as each client negotiates by default, as our source does (MySQL 9.7: TLS; MariaDB and the
  local PostgreSQL: none).
* ours: `pipelines.capture.runner.sync_source(lake, source, merge=False)` on a fresh local lake, the source
  opened from its config with `open_source` (snapshot, Parquet change-log files, commits, the
  empty catch-up stream), in a child process, timed around `sync_source`; peak RSS of the child
  from `wait4`. Three times: with `snapshot_reader = "arrow"` (the default: chunks read straight into
  Arrow by connectorx / the ADBC driver) with one reader and with `snapshot_readers = 2` (chunk
  ends planned ahead, two chunks read at once), and `"driver"` (PyMySQL / psycopg2, the reader
  every snapshot used before) with one reader, all in key-ordered chunks committed in order. `--snapshot-only` times
  sync_source's snapshot phase alone (preflight, every snapshot batch written and acknowledged),
  without the catch-up stream: on a shared stack where a test purges the MySQL binlogs
  (tests/connectors/test_mysql8_positions.py) that stream fails, correctly, with
  PositionPurgedError after the whole snapshot.

Run by hand with the stack up (and the machine otherwise quiet):
    .venv/bin/python bench/bench_snapshot.py [--rows 2000000] [--only mariadb,mysql8,postgres]
                                             [--snapshot-only] [--profile]
`--profile` runs ours (arrow) under cProfile and prints its top functions (slows it down).
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg2  # noqa: E402
import pymysql  # noqa: E402
from world_databases import world_databases  # noqa: E402

from devstack.mysql8 import MySQL8Service  # noqa: E402
from devstack.settings import StackSettings, load_settings  # noqa: E402
from pipelines.world.setup import create_mysql_database  # noqa: E402

KINDS = ("mariadb", "mysql8", "postgres")
TABLE = "snap_bench"

MYSQL_DDL = f"""
CREATE TABLE {TABLE} (
  id BIGINT PRIMARY KEY, qty INT NOT NULL, big BIGINT, amount DECIMAL(12,2), score DOUBLE,
  code VARCHAR(40), label VARCHAR(200), created_at DATETIME(6), day DATE, flag BOOL, note TEXT)
"""
# One expression per column, over the row number `n`; SHA2 of an integer hashes its decimal text
# (MD5() is gone from MySQL 9), as sha256(n::text) does, so the three servers hold the same values.
MYSQL_VALUES = """
  n, n % 100000, n * 2654435761, (n % 10000000) / 100, n / 7e0, CONCAT('code-', n),
  CONCAT(LEFT(SHA2(n, 256), 32), ' ', LEFT(SHA2(n + 1, 256), 32)),
  TIMESTAMPADD(MICROSECOND, n * 1000001, '2024-01-01 00:00:00'),
  DATE_ADD('2020-01-01', INTERVAL n % 3000 DAY), n % 2 = 0,
  IF(n % 7 = 0, NULL, CONCAT('note for row ', n, ': ', REPEAT('lorem ipsum ', 1 + n % 8)))
"""
PG_DDL = f"""
CREATE TABLE {TABLE} (
  id BIGINT PRIMARY KEY, qty INTEGER NOT NULL, big BIGINT, amount NUMERIC(12,2), score DOUBLE PRECISION,
  code VARCHAR(40), label VARCHAR(200), created_at TIMESTAMP(6), day DATE, flag BOOLEAN, note TEXT)
"""
PG_VALUES = """
  n, n % 100000, n * 2654435761, (n % 10000000) / 100.0, n::float8 / 7, 'code-' || n,
  left(encode(sha256(n::text::bytea), 'hex'), 32) || ' '
    || left(encode(sha256((n + 1)::text::bytea), 'hex'), 32),
  timestamp '2024-01-01' + n * interval '1.000001 second',
  date '2020-01-01' + (n % 3000)::int, n % 2 = 0,
  CASE WHEN n % 7 = 0 THEN NULL
    ELSE 'note for row ' || n || ': ' || repeat('lorem ipsum ', (1 + n % 8)::int) END
"""


@dataclass
class Figures:
    """One database's results."""

    kind: str
    baseline: float = 0.0  # rows/s
    baseline_note: str = ""
    ours: dict[str, float] = field(default_factory=dict)  # variant label -> rows/s
    rss_mb: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- throw-away databases


@dataclass
class Target:
    """A loaded table on one server: how to reach it as the CDC user."""

    kind: str
    port: int
    database: str


@contextlib.contextmanager
def databases(stack: StackSettings, kinds: list[str], name: str) -> Iterator[dict[str, Any]]:
    """Admin connections into a fresh database `name` on each server of `kinds`; dropped afterwards.

    MariaDB and PostgreSQL come from `world_databases`, MySQL 9.7 from the same setup helper.
    """
    with contextlib.ExitStack() as stack_exit:
        admins: dict[str, Any] = {}
        if "mariadb" in kinds or "postgres" in kinds:
            world = stack_exit.enter_context(world_databases(name))
            admins["mariadb"], admins["postgres"] = world.mysql, world.postgres
        if "mysql8" in kinds:
            my8 = pymysql.connect(
                host=stack.host, port=stack.mysql8_port, user=stack.admin_user,
                password=stack.admin_password.get_secret_value(), charset="utf8mb4", autocommit=True,
            )  # fmt: skip

            def drop_mysql8() -> None:
                with my8.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                my8.close()

            stack_exit.callback(drop_mysql8)
            create_mysql_database(my8, name)
            my8.select_db(name)
            admins["mysql8"] = my8
        if "postgres" in admins:
            # The source's slot lives in this database; DROP DATABASE refuses while it exists.
            stack_exit.callback(_drop_slots, admins["postgres"])
        yield admins


def _drop_slots(pg: Any) -> None:
    pg.rollback()
    with pg.cursor() as cur:
        cur.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE database = current_database()"
        )
    pg.commit()


def load(kind: str, admin: Any, stack: StackSettings, rows: int) -> None:
    """Create and fill the table server-side; the CDC user must be able to snapshot it."""
    if kind == "postgres":
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(PG_DDL)
            cur.execute(
                f"INSERT INTO {TABLE} SELECT {PG_VALUES} FROM generate_series(1::bigint, {rows}) AS n"
            )
            # The source creates its publication: that needs the table's ownership and CREATE here.
            cur.execute(f'ALTER TABLE {TABLE} OWNER TO "{stack.cdc_user}"')
            cur.execute(f'GRANT CREATE ON DATABASE "{admin.info.dbname}" TO "{stack.cdc_user}"')
            cur.execute(f"VACUUM (FREEZE, ANALYZE) {TABLE}")  # hint bits set now, not by the first reader
        admin.autocommit = False
        return
    with admin.cursor() as cur:
        cur.execute(MYSQL_DDL)
        if kind == "mariadb":
            source = f"(SELECT seq AS n FROM seq_1_to_{rows}) AS s"
        else:
            cur.execute(f"SET SESSION cte_max_recursion_depth = {rows + 1}")
            source = (
                "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s"
                f" WHERE n < {rows}) SELECT n FROM s) AS s"
            )
        cur.execute(f"INSERT INTO {TABLE} SELECT {MYSQL_VALUES} FROM {source}")
        cur.execute(f"ANALYZE TABLE {TABLE}")  # exact TABLE_ROWS: the readers split the key space by it
        cur.fetchall()


# ---------------------------------------------------------------- baseline


class _NullSink:
    def write(self, data: Any) -> int:
        return len(data)


def _mysql_client(stack: StackSettings, kind: str) -> list[str]:
    if kind == "mariadb":
        return ["/usr/bin/mariadb"]
    service = MySQL8Service(stack)  # sid's binaries run under sid's loader (see devstack/mysql8.py)
    return [str(service.loader), "--library-path", str(service.lib_dir), str(service.client)]


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - started


def baseline(stack: StackSettings, target: Target, rows: int) -> tuple[float, str]:
    """Rows/s of the raw read (and which reader gave it), after one untimed warm-up read."""
    pw = stack.cdc_password.get_secret_value()
    query = f"SELECT * FROM {TABLE}"
    if target.kind != "postgres":
        command = [
            *_mysql_client(stack, target.kind), "--no-defaults", f"--host={stack.host}",
            f"--port={target.port}", f"--user={stack.cdc_user}", f"--database={target.database}",
            "--quick", "--batch", "-e", query,
        ]  # fmt: skip
        env = {**os.environ, "MYSQL_PWD": pw}
        _timed(command, env)
        return rows / _timed(command, env), "mysql --quick --batch"
    psql = [
        "psql", "-X", "-q", f"--host={stack.host}", f"--port={target.port}", f"--username={stack.cdc_user}",
        f"--dbname={target.database}", "-c", f"\\copy ({query}) to '/dev/null' (format binary)",
    ]  # fmt: skip
    env = {**os.environ, "PGPASSWORD": pw}
    _timed(psql, env)
    psql_seconds = _timed(psql, env)
    conn = psycopg2.connect(
        host=stack.host, port=target.port, user=stack.cdc_user, password=pw, dbname=target.database
    )
    try:
        with conn.cursor() as cur:
            started = time.perf_counter()
            cur.copy_expert(f"COPY ({query}) TO STDOUT (FORMAT binary)", _NullSink())
            copy_seconds = time.perf_counter() - started
    finally:
        conn.close()
    note = f"psql \\copy {rows / psql_seconds:,.0f} | psycopg2 copy_expert {rows / copy_seconds:,.0f}"
    return rows / min(psql_seconds, copy_seconds), note


# ---------------------------------------------------------------- ours, in a child process


# Each chunk read straight into Arrow (the default) by one and by two readers, and through the
# drivers (PyMySQL / psycopg2 text: the single-cursor reader every snapshot used before), all with
# chunk commits: (label, snapshot_reader, snapshot_readers).
VARIANTS = (("arrow", "arrow", 1), ("arrow x2", "arrow", 2), ("driver", "driver", 1))


def child(spec: dict[str, Any]) -> None:
    """Run one snapshot into a fresh lake and print what it did as JSON (the parent's child mode)."""
    import logging

    from connectors.lake.config import LakeConfig
    from connectors.lake.lake import Lake
    from connectors.mysql.config import MySQLSourceConfig
    from connectors.postgres.config import PostgresSourceConfig
    from pipelines.capture.runner import sync_source
    from pipelines.capture.sources import open_source

    logging.basicConfig(level=logging.WARNING)
    stack = load_settings()
    common: dict[str, Any] = {
        "name": spec["name"], "host": stack.host, "port": spec["port"], "user": stack.cdc_user,
        "password": stack.cdc_password, "database": spec["database"], "tables": (TABLE,),
        "snapshot_reader": spec["reader"], "snapshot_readers": spec["readers"],
    }  # fmt: skip
    config: MySQLSourceConfig | PostgresSourceConfig
    if spec["kind"] == "postgres":
        config = PostgresSourceConfig(**common)
    else:
        config = MySQLSourceConfig(**common, flavor="mariadb" if spec["kind"] == "mariadb" else "mysql")
    with tempfile.TemporaryDirectory(prefix="bench_snapshot_") as tmp:
        lake = Lake(LakeConfig(root=str(Path(tmp) / "lake")))
        source = open_source(config)
        profiler = None
        if spec.get("profile"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        try:
            started = time.perf_counter()
            if spec["snapshot_only"]:
                rows, commits = _snapshot_only(lake, source)
            else:
                report = sync_source(lake, source, merge=False)
                rows, commits = report.rows, report.commits
            seconds = time.perf_counter() - started
        finally:
            source.close()
        if profiler is not None:
            import io
            import pstats

            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(10)
            stats.sort_stats("cumulative").print_stats(15)
            print(out.getvalue(), file=sys.stderr)
        lake_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 2**20
    print(json.dumps({"rows": rows, "commits": commits, "seconds": seconds, "lake_mb": lake_mb}))


def _snapshot_only(lake: Any, source: Any) -> tuple[int, int]:
    """`sync_source`'s first phase on an empty lake: preflight, the snapshot's first commit and
    every chunk committed as the runner does; no catch-up stream afterwards."""
    from pipelines.capture.runner import SyncReport, _finish_chunks, _initial_snapshot

    source.preflight()
    writer = lake.writer(source.name)
    report = SyncReport(source.name)
    _initial_snapshot(writer, source, report, None)
    _finish_chunks(writer, source, report, None)
    return report.rows, report.commits


def ours(
    target: Target, reader: str, readers: int, tag: str, *, profile: bool, snapshot_only: bool
) -> tuple[dict[str, Any], float]:
    """Run `child` in a fresh interpreter; its result and its peak RSS in MB (wait4, as time -v)."""
    spec = {
        "kind": target.kind, "port": target.port, "database": target.database, "reader": reader,
        "readers": readers, "name": f"snap_{tag}_{target.kind}_{reader}{readers}", "profile": profile,
        "snapshot_only": snapshot_only,
    }  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Output into files, not pipes: Popen.communicate would reap the child before wait4 could.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            cwd=REPO, env=env, stdout=out, stderr=None if profile else err,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        output, errors = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"ours ({target.kind}, {reader} reader) failed:\n{errors[-4000:]}")
    return json.loads(output.strip().splitlines()[-1]), usage.ru_maxrss / 1024


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--only", default=",".join(KINDS), help="comma-separated: mariadb,mysql8,postgres")
    parser.add_argument("--profile", action="store_true", help="cProfile ours (arrow) in the child")
    parser.add_argument(
        "--snapshot-only",
        action="store_true",
        help="time the snapshot phase of sync_source only, without the catch-up stream after it",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    kinds = [k for k in args.only.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown database(s) {sorted(unknown)}; choose from {', '.join(KINDS)}")
    stack = load_settings()
    ports = {"mariadb": stack.mariadb_port, "mysql8": stack.mysql8_port, "postgres": stack.postgres_port}
    tag = uuid.uuid4().hex[:8]
    name = f"bench_snap_{tag}"
    results: list[Figures] = []
    with databases(stack, kinds, name) as admins:
        for kind in kinds:
            target = Target(kind, ports[kind], name)
            started = time.perf_counter()
            load(kind, admins[kind], stack, args.rows)
            print(f"{kind}: loaded {args.rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
            figures = Figures(kind)
            figures.baseline, figures.baseline_note = baseline(stack, target, args.rows)
            for label, reader, readers in VARIANTS:
                done, rss = ours(
                    target,
                    reader,
                    readers,
                    tag,
                    profile=args.profile and label == "arrow",
                    snapshot_only=args.snapshot_only,
                )
                if done["rows"] != args.rows:
                    raise RuntimeError(
                        f"ours ({kind}, {label}) wrote {done['rows']:,} rows, not {args.rows:,}"
                    )
                figures.ours[label] = args.rows / done["seconds"]
                figures.rss_mb[label] = rss
                print(
                    f"{kind}: ours, {label}: {done['seconds']:.1f} s, {done['commits']} commits,"
                    f" lake {done['lake_mb']:.0f} MB, peak RSS {rss:.0f} MB",
                    flush=True,
                )
            results.append(figures)
    print_table(results, args.rows, "snapshot phase only" if args.snapshot_only else "sync_source")


def print_table(results: list[Figures], rows: int, mode: str) -> None:
    def rate(value: float | None) -> str:
        return f"{value:>12,.0f}" if value else f"{'n/a':>12}"

    def ratio(value: float | None, base: float) -> str:
        return f"{value / base:>5.2f}" if value else f"{'n/a':>5}"

    print(f"\nsnapshot of a {rows:,}-row, 11-column table into the lake's change log ({mode}), rows/s:")
    labels = [label for label, _, _ in VARIANTS]
    print(
        f"{'database':10} {'baseline':>12}" + "".join(f" {label:>12}" for label in labels)
        + "".join(f" {label + '/base':>14}" for label in labels)
        + f" {'x2/arrow':>8} {'arrow/drv':>9}" + "".join(f" {'RSS ' + label:>13}" for label in labels)
    )  # fmt: skip
    for f in results:
        arrow, two, driver = (f.ours.get(label) for label in labels)
        print(
            f"{f.kind:10} {rate(f.baseline)}" + "".join(f" {rate(f.ours.get(label))}" for label in labels)
            + "".join(f" {ratio(f.ours.get(label), f.baseline):>14}" for label in labels)
            + f" {ratio(two, arrow or 0) if arrow else 'n/a':>8} {ratio(arrow, driver or 0) if driver else 'n/a':>9}"
            + "".join(f" {f.rss_mb.get(label, 0):>13.0f}" for label in labels)
        )  # fmt: skip
    for f in results:
        print(f"  baseline {f.kind}: {f.baseline_note}")


if __name__ == "__main__":
    main()
