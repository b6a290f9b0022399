"""MySQL binlog -> lake change log rows/s, next to mysql-replication's own decode-only rate, same binlog.

For each server asked for (``--server mariadb|mysql8|both``, default both: the local MariaDB and
the local MySQL 8-family server that stands in for Aurora MySQL 3), loads ROWS rows (the 11-column
table of the peer benchmark: BIGINT PK, INT, DECIMAL(12,2), ENUM, DATETIME(6), TIMESTAMP,
VARCHAR(64), TEXT with NULLs, TINYINT, DOUBLE, JSON) in transactions of 1,000 rows into a
throw-away database (dropped at the end, also on failure), then each round times

* ours to the lake: `MySQLSource.stream(since, until=<position after the load>)` into a
  `LakeWriter` on a fresh local lake (decode, typed Arrow, Parquet change-log files, commits),
  from the first connection to the last change log commit;
* baseline: mysql-replication's `BinLogStreamReader` over the same transactions, set up as a user
  after speed would: ``only_events=[WriteRowsEvent]`` (the library adds the TABLE_MAP and rotate
  events it needs itself), ``only_schemas``/``only_tables`` = the bench table, ``blocking=False``,
  ``freeze_schema=True`` (the documented faster mode; the table is not altered), logging off, and
  the server's own GTID start position (MariaDB ``is_mariadb=True, auto_position=<gtid pos>``;
  MySQL ``is_mariadb=False, auto_position=<gtid set>``). It touches every value of every row
  (decode only: no conversion, nothing written) and stops at the last loaded row. Its connections
  come from our connection factory (`binlog_connect`, same charset and TLS as ours) so that
  connection setup costs both sides the same; the decoding is the library's own.

The two run one after the other, in alternating order. Per server it prints each round, the
median rows/s of both and their ratio, and how many rows events our decoder left to the library
path (`fastrows.fallback_counts`, by reason; none is the expected case).

Run by hand with the stack up:
    .venv/bin/python bench/bench_mysql_to_lake.py [rows] [rounds] [--server mariadb|mysql8|both]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import random
import resource
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import pymysql

from connectors.events import Batch
from connectors.lake.storage import Storage
from connectors.lake.tenant_layout import TenantRouter
from connectors.lake.writer import LakeWriter
from connectors.mysql import MySQLSource
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.connection import binlog_connect
from connectors.mysql.fastrows import fallback_counts
from connectors.mysql.offset import BinlogPosition, MariaGtidPosition, MySQLGtidSet
from connectors.mysql.patches.dump_request import apply as apply_dump_request_patch
from connectors.tenancy import TenancyConfig, TenantTable
from devstack.settings import StackSettings, load_settings

PER_TRANSACTION = 1_000
SERVERS = {"mariadb": "mariadb", "mysql8": "mysql"}  # --server name -> MySQLSource flavour

DDL = """
CREATE TABLE bench (
  id BIGINT PRIMARY KEY, customer_id INT NOT NULL, amount DECIMAL(12,2),
  status ENUM('new','paid','shipped','cancelled'), created_at DATETIME(6), updated_at TIMESTAMP NULL,
  name VARCHAR(64), note TEXT, flag TINYINT, score DOUBLE, attrs JSON)
"""


@dataclass(frozen=True)
class Round:
    """One timed round of both readers on one server."""

    ours_seconds: float
    baseline_seconds: float
    rows: int

    @property
    def ours_rate(self) -> float:
        return self.rows / self.ours_seconds

    @property
    def baseline_rate(self) -> float:
        return self.rows / self.baseline_seconds

    @property
    def ratio(self) -> float:
        return self.baseline_seconds / self.ours_seconds


def _rows(start: int, n: int, rng: random.Random) -> list[tuple[object, ...]]:
    base = dt.datetime(2024, 1, 1)
    out: list[tuple[object, ...]] = []
    for i in range(start, start + n):
        out.append(
            (
                i,
                rng.randint(1, 10_000),
                Decimal(rng.randint(0, 10_000_00)) / 100,
                rng.choice(["new", "paid", "shipped", "cancelled"]),
                base + dt.timedelta(seconds=i, microseconds=i % 1_000_000),
                base + dt.timedelta(seconds=2 * i),
                f"customer {i}",
                None if i % 7 == 0 else f"note for row {i} " * 3,
                i % 2,
                rng.random(),
                json.dumps({"k": i, "tags": ["a", "b"], "v": rng.random()}),
            )
        )
    return out


def _binlog_position(source: MySQLSource) -> BinlogPosition:
    """The server's position now, as the binlog position type the source works with."""
    position = source.current_position()
    if not isinstance(position, MariaGtidPosition | MySQLGtidSet):
        raise TypeError(f"{source!r} returned {position.serialize()!r}, not a binlog GTID position")
    return position


def _ours_to_lake(
    source: MySQLSource, since: BinlogPosition, until: BinlogPosition, *, by_tenant: bool = False
) -> tuple[float, int]:
    """Binlog -> lake change log; `by_tenant`: the table declared tenant-owned by its `status`
    column (4 tenants), so each commit writes a file per tenant under `tenant=<id>/` (§25)."""
    with tempfile.TemporaryDirectory() as lake_dir:
        tenants = None
        if by_tenant:
            tenancy = TenancyConfig(tables={"bench.bench": TenantTable(column="status")})
            tenants = TenantRouter(tenancy, "bench")
        writer = LakeWriter(Storage(lake_dir), "bench", tenants=tenants)
        writer.write(Batch(start=None, end=since, snapshot=frozenset(source.tables())))
        started = time.perf_counter()
        rows = 0
        for batch in source.stream(since, {}, until=until):
            record = writer.write(batch)
            rows += record.rows if record is not None else 0
        return time.perf_counter() - started, rows


def _baseline(
    settings: dict[str, object], database: str, since: BinlogPosition, expected: int
) -> tuple[float, int]:
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import WriteRowsEvent

    is_mariadb = isinstance(since, MariaGtidPosition)
    if isinstance(since, MySQLGtidSet) and since.is_empty:
        # mysql-replication reads an empty auto_position as "from the end of the binlog".
        raise RuntimeError("the MySQL server has an empty gtid_executed; nothing to start the baseline from")
    apply_dump_request_patch()  # without it, non-blocking GTID mode loops on MariaDB (see PITFALLS)
    started = time.perf_counter()
    stream = BinLogStreamReader(
        connection_settings=settings,
        server_id=900_000 + random.randint(0, 99_999),
        is_mariadb=is_mariadb,
        auto_position=str(since),
        blocking=False,
        only_events=[WriteRowsEvent],
        only_schemas=[database],
        only_tables=["bench"],
        freeze_schema=True,
        enable_logging=False,
        pymysql_wrapper=functools.partial(binlog_connect, meter_source="bench"),
    )
    rows = 0
    try:
        for event in stream:
            for row in event.rows:
                for _value in row["values"].values():
                    pass
                rows += 1
            if rows >= expected:
                break  # the load is all read; later traffic of other databases is not ours to time
    finally:
        stream.close()
    return time.perf_counter() - started, rows


def _admin_connection(stack: StackSettings, port: int) -> pymysql.connections.Connection:
    return pymysql.connect(
        host=stack.host,
        port=port,
        user=stack.admin_user,
        password=stack.admin_password.get_secret_value(),
        charset="utf8mb4",
        autocommit=True,
    )


def _drop_database(stack: StackSettings, port: int, database: str) -> None:
    """Drop the throw-away database on a fresh connection (the load's may be broken or mid-transaction)."""
    conn = _admin_connection(stack, port)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        conn.close()


def _load(admin: pymysql.connections.Connection, rows: int) -> None:
    rng = random.Random(42)
    admin.autocommit(False)
    with admin.cursor() as cur:
        for start in range(0, rows, PER_TRANSACTION):
            cur.executemany(
                "INSERT INTO bench VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                _rows(start, min(PER_TRANSACTION, rows - start), rng),
            )
            admin.commit()
    admin.autocommit(True)


def run_server(stack: StackSettings, server: str, rows: int, rounds: int) -> list[Round]:
    """Load the workload into a throw-away database on `server` and time both readers `rounds` times."""
    port = stack.mariadb_port if server == "mariadb" else stack.mysql8_port
    database = f"bench_{uuid.uuid4().hex[:8]}"
    admin = _admin_connection(stack, port)
    config = MySQLSourceConfig(
        name="bench",
        host=stack.host,
        port=port,
        user=stack.cdc_user,
        password=stack.cdc_password,
        database=database,
        server_id=800_000 + random.randint(0, 99_999),
        flavor=SERVERS[server],
    )
    source = MySQLSource(config)
    results: list[Round] = []
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{database}`")
        admin.select_db(database)
        with admin.cursor() as cur:
            cur.execute(DDL)
        print(f"\n== {server}: {admin.get_server_info()} at {stack.host}:{port}, database {database}")
        since = _binlog_position(source)
        started = time.perf_counter()
        _load(admin, rows)
        print(f"loaded {rows:,} rows in {time.perf_counter() - started:.1f}s")
        until = _binlog_position(source)
        settings: dict[str, object] = {
            "host": stack.host,
            "port": port,
            "user": stack.cdc_user,
            "password": stack.cdc_password.get_secret_value(),
            "charset": "utf8mb4",
        }
        fallbacks_before = Counter(fallback_counts())
        for round_number in range(1, rounds + 1):
            if round_number % 2:
                ours, n_ours = _ours_to_lake(source, since, until)
                base, n_base = _baseline(settings, database, since, rows)
                tenanted, n_tenanted = _ours_to_lake(source, since, until, by_tenant=True)
            else:
                tenanted, n_tenanted = _ours_to_lake(source, since, until, by_tenant=True)
                base, n_base = _baseline(settings, database, since, rows)
                ours, n_ours = _ours_to_lake(source, since, until)
            if n_ours != rows or n_base != rows or n_tenanted != rows:
                raise RuntimeError(
                    f"expected {rows:,} rows each, ours read {n_ours:,} ({n_tenanted:,} by tenant), baseline {n_base:,}"
                )
            result = Round(ours, base, rows)
            results.append(result)
            print(
                f"round {round_number}: ours binlog -> lake change log {result.ours_rate:>9,.0f} rows/s ({ours:.2f}s)"
                f" | mysql-replication decode-only {result.baseline_rate:>9,.0f} rows/s ({base:.2f}s)"
                f" | ratio {result.ratio:.2f}x"
                f" | by tenant (4 tenants) {rows / tenanted:>9,.0f} rows/s ({tenanted:.2f}s, {ours / tenanted:.2f}x ours)"
            )
        fallbacks = Counter(fallback_counts()) - fallbacks_before
        print(
            "rows events decoded by the library path instead of ours: "
            + (", ".join(f"{n} x {reason}" for reason, n in fallbacks.most_common()) or "none")
        )
    finally:
        source.close()
        admin.close()
        _drop_database(stack, port, database)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=200_000, help="rows to load (default 200,000)")
    parser.add_argument("rounds", nargs="?", type=int, default=3, help="timed rounds per server (default 3)")
    parser.add_argument("--server", choices=["mariadb", "mysql8", "both"], default="both")
    args = parser.parse_args()
    stack = load_settings()
    servers = list(SERVERS) if args.server == "both" else [args.server]
    summary = {server: run_server(stack, server, args.rows, args.rounds) for server in servers}
    print(f"\nmedian of {args.rounds} rounds, {args.rows:,} rows:")
    for server, results in summary.items():
        print(
            f"{server:>8}: ours {statistics.median(r.ours_rate for r in results):>9,.0f} rows/s"
            f" | mysql-replication decode-only {statistics.median(r.baseline_rate for r in results):>9,.0f} rows/s"
            f" | ratio {statistics.median(r.ratio for r in results):.2f}x"
        )
    print(f"max RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
