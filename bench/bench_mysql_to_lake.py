"""MySQL binlog -> lake change log rows/s, next to mysql-replication's own decode-only rate, same binlog.

Loads ROWS rows (the 11-column table of the peer benchmark: BIGINT PK, INT, DECIMAL(12,2), ENUM,
DATETIME(6), TIMESTAMP, VARCHAR(64), TEXT with NULLs, TINYINT, DOUBLE, JSON) in transactions of
1,000 rows into a throw-away database on the local MariaDB, then each round times

* ours to the lake: `MySQLSource.stream(since, until=<position after the load>)` into a
  `LakeWriter` on a fresh local lake (decode, typed Arrow, Parquet change-log files, commits);
* baseline: `BinLogStreamReader` from the same GTID position, non-blocking, row events of the
  table only, touching every value of every row (decode only, no conversion, nothing written).

Run by hand with the stack up:  .venv/bin/python bench/bench_mysql_to_lake.py [rows] [rounds]
"""

from __future__ import annotations

import datetime as dt
import json
import random
import resource
import sys
import tempfile
import time
import uuid
from decimal import Decimal

import pymysql

from connectors.events import Batch
from connectors.lake.storage import Storage
from connectors.lake.writer import LakeWriter
from connectors.mysql import MySQLSource
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.offset import MariaGtidPosition
from connectors.mysql.patches.dump_request import apply as apply_dump_request_patch
from devstack.settings import load_settings

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
PER_TRANSACTION = 1_000

DDL = """
CREATE TABLE bench (
  id BIGINT PRIMARY KEY, customer_id INT NOT NULL, amount DECIMAL(12,2),
  status ENUM('new','paid','shipped','cancelled'), created_at DATETIME(6), updated_at TIMESTAMP NULL,
  name VARCHAR(64), note TEXT, flag TINYINT, score DOUBLE, attrs JSON)
"""


def _rows(start: int, n: int, rng: random.Random) -> list[tuple[object, ...]]:
    base = dt.datetime(2024, 1, 1)
    out = []
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


def _ours_to_lake(
    source: MySQLSource, since: MariaGtidPosition, until: MariaGtidPosition
) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as lake_dir:
        writer = LakeWriter(Storage(lake_dir), "bench")
        writer.write(Batch(start=None, end=since, snapshot=frozenset(source.tables())))
        started = time.perf_counter()
        rows = 0
        for batch in source.stream(since, {}, until=until):
            record = writer.write(batch)
            rows += record.rows if record is not None else 0
        return time.perf_counter() - started, rows


def _baseline(settings: dict[str, object], database: str, since: MariaGtidPosition) -> tuple[float, int]:
    from pymysqlreplication import BinLogStreamReader
    from pymysqlreplication.row_event import WriteRowsEvent

    apply_dump_request_patch()  # without it, non-blocking GTID mode loops on MariaDB (see PITFALLS)
    started = time.perf_counter()
    stream = BinLogStreamReader(
        connection_settings=settings,
        server_id=900_000 + random.randint(0, 99_999),
        is_mariadb=True,
        auto_position=str(since),
        blocking=False,
        only_events=[WriteRowsEvent],
        only_schemas=[database],
        only_tables=["bench"],
        enable_logging=False,
    )
    rows = 0
    for event in stream:
        for row in event.rows:
            for _value in row["values"].values():
                pass
            rows += 1
    stream.close()
    return time.perf_counter() - started, rows


def main() -> None:
    stack = load_settings()
    database = f"bench_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(
        host=stack.host,
        port=stack.mariadb_port,
        user=stack.admin_user,
        password=stack.admin_password.get_secret_value(),
        charset="utf8mb4",
        autocommit=True,
    )
    admin.cursor().execute(f"CREATE DATABASE `{database}`")
    admin.select_db(database)
    config = MySQLSourceConfig(
        name="bench",
        host=stack.host,
        port=stack.mariadb_port,
        user=stack.cdc_user,
        password=stack.cdc_password,
        database=database,
        server_id=800_000 + random.randint(0, 99_999),
    )
    source = MySQLSource(config)
    try:
        admin.cursor().execute(DDL)
        since = source.current_position()
        rng = random.Random(42)
        started = time.perf_counter()
        admin.autocommit(False)
        with admin.cursor() as cur:
            for start in range(0, ROWS, PER_TRANSACTION):
                cur.executemany(
                    "INSERT INTO bench VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    _rows(start, PER_TRANSACTION, rng),
                )
                admin.commit()
        print(f"loaded {ROWS:,} rows in {time.perf_counter() - started:.1f}s")
        until = source.current_position()
        settings = {
            "host": stack.host,
            "port": stack.mariadb_port,
            "user": stack.cdc_user,
            "passwd": stack.cdc_password.get_secret_value(),
        }
        for round_number in range(1, ROUNDS + 1):
            lake, n_lake = _ours_to_lake(source, since, until)
            base, n_base = _baseline(settings, database, since)
            print(
                f"round {round_number}: ours binlog -> lake change log {n_lake / lake:>9,.0f} rows/s ({lake:.2f}s)"
                f" | mysql-replication decode-only {n_base / base:>9,.0f} rows/s ({base:.2f}s)"
                f" | ratio {base / lake:.2f}x"
            )
            assert n_lake == ROWS and n_base == ROWS, (n_lake, n_base)
        print(f"max RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        source.close()
        admin.autocommit(True)
        admin.cursor().execute(f"DROP DATABASE `{database}`")
        admin.close()


if __name__ == "__main__":
    main()
