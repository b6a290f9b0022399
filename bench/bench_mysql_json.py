"""MySQL 8 binary JSON: rows/s of the fast decoder next to mysql-replication's decoding, same binlog.

Loads ROWS JSON-heavy rows (BIGINT key; a JSON document of ~560 bytes, 12 members and ~40
values: nested objects and arrays, strings with unicode, integers, doubles, a DECIMAL and a
DATE; a small JSON array) in transactions of 1,000 rows into a throw-away database on the
stack's MySQL 9.7 server, then each round reads the same binlog range three times and times only
the decoding of its rows events (the server writes ~8 KB events, ~12 of these rows each):

* fast path: `rows.decode_rows_event` (the fast decoder, JSON printed by connectors.mysql
  .json_binary) and the Arrow conversion, one `convert_run` per transaction, as the source does;
* library path: the same events decoded by mysql-replication with the JSON bytes handed to
  json_binary (`rows.library_decoding()`), Arrow conversion included (the fallback's rate);
* baseline: mysql-replication's own decoding, touching every value of every row (dicts with
  bytes keys, no text, no conversion).

Run by hand with the stack up:  .venv/bin/python bench/bench_mysql_json.py [rows] [rounds]
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import XidEvent
from pymysqlreplication.row_event import TableMapEvent, WriteRowsEvent

from connectors.events import TableId
from connectors.mysql import rows
from connectors.mysql.binlog import CapturedTables
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.fastrows import fallback_counts
from connectors.mysql.rows import RowImages
from devstack.settings import load_settings

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
PER_TRANSACTION = 1_000
DDL = "CREATE TABLE bench (id BIGINT PRIMARY KEY, doc JSON NOT NULL, tags JSON)"
WORDS = ["alpha", "beta", "gamma", "délta", "𠮷田", "😀", "line\nbreak", 'quote"d']


def _document(i: int, rng: random.Random) -> str:
    return json.dumps(
        {
            "id": i,
            "customer": {"id": rng.randint(1, 10**6), "name": f"customer {i}", "tier": rng.choice(WORDS)},
            "items": [
                {
                    "sku": f"SKU-{rng.randint(1, 99999):05d}",
                    "qty": rng.randint(1, 5),
                    "price": round(rng.random() * 100, 2),
                }
                for _ in range(rng.randint(1, 4))
            ],
            "total": rng.random() * 1000,
            "big": rng.randint(-(2**63), 2**63 - 1),
            "flags": [True, False, None],
            "note": " ".join(rng.choices(WORDS, k=8)),
            "ratio": rng.random(),
            "counts": [rng.randint(-40000, 70000) for _ in range(6)],
            "nested": {"a": {"b": {"c": [1, 2.5, "three"]}}},
        },
        ensure_ascii=False,
    )


def _load(admin: pymysql.connections.Connection) -> None:
    """ROWS rows in transactions of PER_TRANSACTION, each one multi-row INSERT (events of many rows).

    The documents are staged as text first: a DATE and a DECIMAL set into a document with
    JSON_SET become opaque values, which a plain multi-row VALUES list cannot express.
    """
    rng = random.Random(42)
    day = dt.date(2024, 1, 1)
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE staging (id BIGINT PRIMARY KEY, doc JSON, day DATE, amount DECIMAL(12,2))")
        admin.autocommit(False)
        for start in range(0, ROWS, PER_TRANSACTION):
            cur.executemany(
                "INSERT INTO staging VALUES (%s, %s, %s, %s)",
                [
                    (i, _document(i, rng), day + dt.timedelta(days=i % 3650), f"{i}.{i % 100:02d}")
                    for i in range(start, start + PER_TRANSACTION)
                ],
            )
            cur.execute(
                "INSERT INTO bench SELECT id, JSON_SET(doc, '$.when', day, '$.amount', amount), JSON_ARRAY('x', id)"
                " FROM staging WHERE id BETWEEN %s AND %s",
                (start, start + PER_TRANSACTION - 1),
            )
            admin.commit()
    admin.autocommit(True)


def _reader(settings: dict[str, Any], database: str, since: str) -> BinLogStreamReader:
    return BinLogStreamReader(
        connection_settings=settings,
        server_id=900_000 + random.randint(0, 99_999),
        auto_position=since,
        blocking=False,
        only_events=[TableMapEvent, WriteRowsEvent, XidEvent],
        only_schemas=[database],
        only_tables=["bench"],
        enable_logging=False,
    )


def _timed_pass(
    settings: dict[str, Any], config: MySQLSourceConfig, control: Any, since: str, decode: Callable[..., int]
) -> tuple[float, int]:
    """Seconds spent in `decode` over every rows event of the range, and the rows it decoded."""
    captured = CapturedTables(config, [TableId(config.name, config.database, "bench")], control)
    stream = _reader(settings, config.database, since)
    spent, n = 0.0, 0
    pending: list[Any] = []  # the fast path's events of the current transaction
    for event in stream:
        if isinstance(event, TableMapEvent):
            captured.on_table_map(event)
            continue
        table = captured.for_rows(event) if isinstance(event, WriteRowsEvent) else None
        if table is None and not isinstance(event, XidEvent):
            continue
        started = time.perf_counter()
        n += decode(event, table, pending)
        spent += time.perf_counter() - started
    stream.close()
    return spent, n


def _fast(event: Any, table: Any, pending: list[tuple[Any, RowImages]]) -> int:
    if table is not None:
        decoded = rows.decode_rows_event(event, table)
        assert isinstance(decoded, RowImages), "the fast path fell back"
        pending.append((table, decoded))
        return 0
    converted = 0
    if pending:  # the transaction's end: its events converted together
        for _first, _end, part in rows.convert_run(pending[0][0], [p for _, p in pending]):
            assert not part.rejected
            converted += part.num_rows
        pending.clear()
    return converted


def _library(event: Any, table: Any, pending: list[Any]) -> int:
    if table is None:
        return 0
    with rows.library_decoding():
        decoded = rows.decode_rows_event(event, table)
    assert not isinstance(decoded, RowImages) and not decoded.rejected
    return decoded.num_rows


def _baseline(event: Any, table: Any, pending: list[Any]) -> int:
    if table is None:
        return 0
    n = 0
    for row in event.rows:
        for _value in row["values"].values():
            pass
        n += 1
    return n


def main() -> None:
    stack = load_settings()
    database = f"bench_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(
        host=stack.host,
        port=stack.mysql8_port,
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
        port=stack.mysql8_port,
        user=stack.cdc_user,
        password=stack.cdc_password,
        database=database,
        flavor="mysql",
    )
    settings = {
        "host": stack.host,
        "port": stack.mysql8_port,
        "user": stack.cdc_user,
        "passwd": stack.cdc_password.get_secret_value(),
    }
    try:
        admin.cursor().execute(DDL)
        with admin.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.gtid_executed")
            since = str(cur.fetchone()[0]).replace("\n", "")
        started = time.perf_counter()
        _load(admin)
        print(f"loaded {ROWS:,} rows in {time.perf_counter() - started:.1f}s")
        fallbacks = sum(fallback_counts().values())
        for round_number in range(1, ROUNDS + 1):
            figures = []
            for name, decode in (("fast path", _fast), ("library path", _library), ("baseline", _baseline)):
                seconds, n = _timed_pass(settings, config, admin, since, decode)
                assert n == ROWS, (name, n)
                figures.append((name, n / seconds, seconds))
            (_, fast, _), (_, library, _), (_, base, _) = figures
            print(
                f"round {round_number}: fast path {fast:>9,.0f} rows/s | library path (mysql-replication + json_binary)"
                f" {library:>8,.0f} rows/s | mysql-replication decode-only {base:>8,.0f} rows/s"
                f" | fast/baseline {fast / base:.1f}x"
            )
        assert sum(fallback_counts().values()) == fallbacks, fallback_counts()
    finally:
        admin.autocommit(True)
        admin.cursor().execute(f"DROP DATABASE `{database}`")
        admin.close()


if __name__ == "__main__":
    main()
