"""MySQL 8 / Aurora MySQL 3 GTID-set positions against the real MySQL 8-family server.

A failover-like change of writer (transactions of a second server UUID), a position whose
binlogs were purged and a position ahead of the server: the first streams on without loss or a
false error, the other two are named errors that commit nothing and say what to run.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.offset import MySQLGtid, MySQLGtidSet
from connectors.mysql.position import position_error_1236
from connectors.source import PositionAheadError, PositionPurgedError
from pipelines.capture.runner import sync_source
from tests.conftest import TestDatabase
from tests.connectors.test_mysql_source import execute, make_source, rows_of, stream_all


def gtid_set(offset: Any) -> MySQLGtidSet:
    assert isinstance(offset, MySQLGtidSet), offset
    return offset


def test_a_new_writers_server_uuid_joins_the_position_without_loss(mysql8_db: TestDatabase) -> None:
    """Transactions of another server UUID (a promoted writer's) stream on from the old set."""
    execute(mysql8_db, "CREATE TABLE visits (id INT PRIMARY KEY, note VARCHAR(20))")
    source = make_source(mysql8_db)
    start = gtid_set(source.current_position())
    execute(mysql8_db, "INSERT INTO visits VALUES (1, 'old writer')")
    new_writer = str(uuid.uuid4())
    conn = mysql8_db.admin_connect()
    execute(
        mysql8_db,
        f"SET gtid_next = '{new_writer}:1'",
        "BEGIN",
        "INSERT INTO visits VALUES (2, 'new writer')",
        "COMMIT",
        f"SET gtid_next = '{new_writer}:2'",
        "BEGIN",
        "UPDATE visits SET note = 'new writer 2' WHERE id = 1",
        "COMMIT",
        "SET gtid_next = 'AUTOMATIC'",
        conn=conn,
    )
    batches = stream_all(source, start)
    assert [(r["id"], r["note"]) for r in rows_of(batches, "visits")] == [
        (1, "old writer"),
        (2, "new writer"),
        (1, "new writer 2"),
    ]
    end = gtid_set(batches[-1].end)
    assert end.contains(MySQLGtid(new_writer, 2)) and start < end
    # Resuming from a set holding both UUIDs returns only what came after, on either UUID.
    execute(mysql8_db, "INSERT INTO visits VALUES (3, 'after')")
    later = stream_all(source, end)
    assert [r["id"] for r in rows_of(later, "visits")] == [3]
    source.close()


def test_a_position_ahead_of_the_server_is_a_named_error(mysql8_db: TestDatabase) -> None:
    source = make_source(mysql8_db)
    now = gtid_set(source.current_position())
    ahead = now.advance(MySQLGtid(str(uuid.uuid4()), 7))
    with pytest.raises(PositionAheadError) as caught:
        next(iter(source.stream(ahead, {})))
    message = str(caught.value)
    assert "ahead of the server" in message and "restored from a backup" in message
    assert f"lakehouse resnapshot --source {source.name}" in message
    source.close()


def test_a_purged_position_is_a_named_error_and_commits_nothing(
    mysql8_db: TestDatabase, tmp_path: Any
) -> None:
    execute(mysql8_db, "CREATE TABLE claims (id INT PRIMARY KEY, amount DECIMAL(10, 2))")
    source = make_source(mysql8_db)
    lake = Lake(LakeConfig(root=str(tmp_path / "lake")))
    sync_source(lake, source, merge=False)  # snapshot: the lake holds the position of now
    committed = lake.writer(source.name).last_committed()
    execute(mysql8_db, "INSERT INTO claims VALUES (1, 10.50)")
    # The server purges the binlog holding that insert before the lake read it.
    conn = mysql8_db.admin_connect()
    with conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW BINARY LOGS")
        newest = cur.fetchall()[-1][0]
        cur.execute(f"PURGE BINARY LOGS TO '{newest}'")
    with pytest.raises(PositionPurgedError) as caught:
        sync_source(lake, source, merge=False)
    message = str(caught.value)
    assert "purged" in message and f"lakehouse resnapshot --source {source.name}" in message
    after = lake.writer(source.name).last_committed()
    assert after.seq == committed.seq and after.offset == committed.offset
    source.close()


def test_error_1236_is_mapped_to_the_named_errors() -> None:
    source_config = MySQLSourceConfig(name="m", host="127.0.0.1", user="cdc", password="x", database="d")
    since = MySQLGtidSet.parse(f"{uuid.uuid4()}:1-5")
    purged = position_error_1236(
        source_config,
        since,
        "Cannot replicate because the source purged required binary logs. Replicate the missing "
        "transactions from elsewhere, or provision a new replica from backup.",
    )
    assert isinstance(purged, PositionPurgedError) and "lakehouse resnapshot" in str(purged)
    ahead = position_error_1236(
        source_config,
        since,
        "Slave has more GTIDs than the master has, using the master's SERVER_UUID. This may "
        "indicate that the end of the binary log was truncated or that the last binary log file was lost",
    )
    assert isinstance(ahead, PositionAheadError)
