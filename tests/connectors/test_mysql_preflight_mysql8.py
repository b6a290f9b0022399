"""Pre-flight on the MySQL 8-family server (as Aurora MySQL 3): what differs from MariaDB.

Partial JSON updates and compressed transactions are refused with the setting to change;
Aurora's own binlog retention (``CALL mysql.rds_show_configuration``, played by a stand-in
procedure) wins over binlog_expire_logs_seconds and NULL is refused; grants are checked with
MySQL's privilege names (BINLOG MONITOR is MariaDB's), privileges held through a role included.

The server is shared with other tests: global settings are changed for as short a time as
possible and always restored, and users, grants and the stand-in procedure are written with
``sql_log_bin=0`` (nothing reaches the binlog other tests read) and always dropped. The stand-in
answers only this test's own CDC user; anyone else is told it does not exist, as on a plain MySQL.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.mysql import preflight
from connectors.mysql.connection import connect
from connectors.source import PreflightError
from tests.conftest import TestDatabase
from tests.connectors.test_mysql_source import execute, make_source, query

STAND_IN = "mysql.rds_show_configuration"
CDC_GRANTS = "GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {user}"


@contextlib.contextmanager
def temporary_user(db: TestDatabase, *grants: str) -> Iterator[tuple[str, str]]:
    """A throw-away account ``(user, password)`` with `grants` (``{user}`` is filled in), dropped afterwards."""
    user, password = f"pf_{secrets.token_hex(4)}", secrets.token_hex(12)
    admin = db.admin_connect()
    execute(db, "SET SESSION sql_log_bin = 0", conn=admin)
    try:
        execute(db, f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'", conn=admin)
        execute(db, *(g.format(user=f"'{user}'@'%'") for g in grants), conn=admin)
        yield user, password
    finally:
        execute(db, f"DROP USER IF EXISTS '{user}'@'%'", conn=admin)


@contextlib.contextmanager
def aurora_configuration(db: TestDatabase, user: str, *, executable: bool = True) -> Iterator[None]:
    """A stand-in for Aurora's ``mysql.rds_show_configuration`` that `user` can call.

    It returns the rows of table ``rds_configuration`` in the test database (so a test changes
    the retention with an UPDATE). Other callers get error 1305, as if it did not exist; the
    stack's CDC user may call it too, so a concurrent pre-flight as that user sees no difference.
    """
    execute(
        db,
        "CREATE TABLE rds_configuration (name VARCHAR(64) PRIMARY KEY, value VARCHAR(64), description TEXT)",
    )
    execute(
        db,
        "INSERT INTO rds_configuration VALUES ('binlog retention hours', NULL, 'binlog retention hours specifies"
        " the duration in hours before binary logs are automatically deleted.'), ('target delay', '0', 'x')",
    )
    admin = db.admin_connect()
    execute(db, "SET SESSION sql_log_bin = 0", conn=admin)
    callers = [f"'{db.cdc_user}'@'%'"]
    if executable:
        callers.append(f"'{user}'@'%'")
    try:
        execute(
            db,
            f"""CREATE PROCEDURE {STAND_IN}()
            BEGIN
              IF USER() LIKE '{user}@%' THEN
                SELECT name, value, description FROM `{db.name}`.rds_configuration ORDER BY name;
              ELSE
                SIGNAL SQLSTATE '42000' SET MYSQL_ERRNO = 1305,
                  MESSAGE_TEXT = 'PROCEDURE {STAND_IN} does not exist';
              END IF;
            END""",
            *(f"GRANT EXECUTE ON PROCEDURE {STAND_IN} TO {caller}" for caller in callers),
            conn=admin,
        )
        yield
    finally:
        for caller in callers:
            with contextlib.suppress(Exception):  # not granted if CREATE failed
                execute(db, f"REVOKE EXECUTE ON PROCEDURE {STAND_IN} FROM {caller}", conn=admin)
        execute(db, f"DROP PROCEDURE IF EXISTS {STAND_IN}", conn=admin)
        execute(db, "DROP TABLE rds_configuration")


def preflight_failures(db: TestDatabase, **overrides: Any) -> list[str]:
    """The problems pre-flight lists (one per line of its single PreflightError); [] if it passes."""
    try:
        make_source(db, tables=("t",), **overrides).preflight()
    except PreflightError as exc:
        return [line[4:] for line in str(exc).splitlines() if line.startswith("  - ")]
    return []


def test_partial_json_and_compressed_transactions_are_refused(mysql8_db: TestDatabase) -> None:
    execute(mysql8_db, "CREATE TABLE t (id INT PRIMARY KEY, doc JSON)")
    admin = mysql8_db.admin_connect()
    options, compression = query(
        mysql8_db, "SELECT @@GLOBAL.binlog_row_value_options, @@GLOBAL.binlog_transaction_compression"
    )[0]
    try:
        # Global and shared with other tests: keep the window short and always restore it.
        execute(
            mysql8_db,
            "SET GLOBAL binlog_row_value_options = 'PARTIAL_JSON'",
            "SET GLOBAL binlog_transaction_compression = ON",
            conn=admin,
        )
        failures = preflight_failures(mysql8_db)
    finally:
        execute(
            mysql8_db,
            f"SET GLOBAL binlog_row_value_options = '{options}'",
            f"SET GLOBAL binlog_transaction_compression = {int(compression)}",
            conn=admin,
        )
    assert len(failures) == 2, failures
    partial, compressed = failures
    assert partial.startswith("binlog_row_value_options is PARTIAL_JSON")
    assert "set binlog_row_value_options='' (empty) in the server config" in partial
    assert "SET GLOBAL binlog_row_value_options=''" in partial and "DB cluster parameter group" in partial
    assert compressed.startswith("binlog_transaction_compression is ON")
    assert "set binlog_transaction_compression=OFF in the server config" in compressed
    assert "DB cluster parameter group" in compressed
    assert query(mysql8_db, "SELECT @@GLOBAL.binlog_transaction_compression")[0][0] == 0
    assert preflight_failures(mysql8_db) == []


def test_aurora_binlog_retention_comes_from_rds_show_configuration(mysql8_db: TestDatabase) -> None:
    execute(mysql8_db, "CREATE TABLE t (id INT PRIMARY KEY)")
    # The server itself keeps binlogs long enough (binlog_expire_logs_seconds), so every
    # refusal below comes from Aurora's setting.
    expire_hours = int(query(mysql8_db, "SELECT @@GLOBAL.binlog_expire_logs_seconds")[0][0]) / 3600
    assert expire_hours >= 100
    with temporary_user(mysql8_db, CDC_GRANTS) as (user, password), aurora_configuration(mysql8_db, user):

        def failures(**overrides: Any) -> list[str]:
            return preflight_failures(mysql8_db, user=user, password=password, **overrides)

        def retention(value: str) -> None:
            execute(
                mysql8_db,
                f"UPDATE rds_configuration SET value = {value} WHERE name = 'binlog retention hours'",
            )

        # NULL (Aurora's default) purges lazily: refused even when no minimum is asked for.
        null = "Aurora's 'binlog retention hours' is NULL"
        fix = "CALL mysql.rds_set_configuration('binlog retention hours', {})"
        (unset,) = failures()
        assert null in unset and fix.format(24) in unset
        assert failures(min_binlog_retention_hours=0) == [unset]
        retention("'12'")
        (short,) = failures()
        assert "binlogs are kept for 12 h (Aurora's 'binlog retention hours'=12)" in short
        assert "min_binlog_retention_hours is 24" in short and fix.format(24) in short
        retention("'48'")
        assert failures() == []
        assert fix.format(100) in failures(min_binlog_retention_hours=99.5)[0]
        assert "at most 2160 h" in failures(min_binlog_retention_hours=5000)[0]

    # MySQL refuses CALL without EXECUTE before it looks the procedure up, so on a plain MySQL
    # (no aurora_version) that means "not Aurora"; on Aurora the retention cannot be read and
    # the GRANT is named.
    with temporary_user(mysql8_db, CDC_GRANTS) as (user, password):
        with aurora_configuration(mysql8_db, user, executable=False):
            assert preflight_failures(mysql8_db, user=user, password=password) == []
            config = make_source(mysql8_db, user=user, password=password).config
            aurora = {"binlog_expire_logs_seconds": str(int(expire_hours * 3600)), "aurora_version": "3.08.0"}
            conn = connect(config)
            try:
                (denied,) = preflight._retention_failures(conn, aurora, config, "mysql")
            finally:
                conn.close()
        assert "could not be read with CALL mysql.rds_show_configuration (execute command denied" in denied
        assert f"GRANT EXECUTE ON PROCEDURE mysql.rds_show_configuration TO '{user}'@'%'" in denied
    assert preflight_failures(mysql8_db) == []


def test_grants_are_checked_with_mysql_privilege_names(mysql8_db: TestDatabase) -> None:
    execute(mysql8_db, "CREATE TABLE t (id INT PRIMARY KEY)")
    with temporary_user(
        mysql8_db,
        "GRANT REPLICATION SLAVE ON *.* TO {user}",
        f"GRANT SELECT ON `{mysql8_db.name}`.* TO {{user}}",
    ) as (user, password):
        (missing,) = preflight_failures(mysql8_db, user=user, password=password)
    assert f"the CDC user {user}@% lacks REPLICATION CLIENT;" in missing
    assert f"GRANT REPLICATION CLIENT ON *.* TO '{user}'@'%'" in missing
    assert "BINLOG MONITOR" not in missing and "SELECT" not in missing

    # Privileges held through a default role count (Aurora MySQL 3 grants through roles).
    role = f"pf_role_{secrets.token_hex(4)}"
    admin = mysql8_db.admin_connect()
    execute(
        mysql8_db,
        "SET SESSION sql_log_bin = 0",
        f"CREATE ROLE '{role}'",
        f"GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{role}'",
        conn=admin,
    )
    try:
        with temporary_user(
            mysql8_db, f"GRANT '{role}' TO {{user}}", f"SET DEFAULT ROLE '{role}' TO {{user}}"
        ) as (
            user,
            password,
        ):
            assert preflight_failures(mysql8_db, user=user, password=password) == []
    finally:
        execute(mysql8_db, f"DROP ROLE IF EXISTS '{role}'", conn=admin)


@pytest.mark.parametrize("setting", ["binlog_row_value_options", "binlog_transaction_compression"])
def test_mariadb_has_no_such_settings(mysql_db: TestDatabase, setting: str) -> None:
    # The MySQL-only checks stay off MariaDB, whose pre-flight is unchanged.
    assert query(mysql_db, f"SHOW GLOBAL VARIABLES LIKE '{setting}'") == []
    execute(mysql_db, "CREATE TABLE t (id INT PRIMARY KEY)")
    assert preflight_failures(mysql_db) == []
