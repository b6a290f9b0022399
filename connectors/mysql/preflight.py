"""Pre-flight checks: the server settings, grants and tables that binlog CDC needs.

Every check adds a message that names the setting and how to change it; all failures are
reported together in one PreflightError, so one round of fixes is enough. MariaDB and the
MySQL 8 family (Aurora MySQL 3) differ in GTIDs, binlog features (partial JSON updates and
compressed transactions exist on MySQL only), binlog retention (Aurora keeps its own setting)
and privilege names (BINLOG MONITOR is MariaDB's).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

import pymysql

from connectors.events import TableId
from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.connection import endpoint, error_code, fetch_all, fetch_dicts, fetch_value
from connectors.mysql.schema import read_primary_key
from connectors.source import PreflightError

logger = logging.getLogger(__name__)

_VARIABLES = (
    "read_only",
    "innodb_read_only",
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "binlog_row_metadata",
    "gtid_mode",
    "enforce_gtid_consistency",
    "gtid_strict_mode",
    "gtid_binlog_pos",
    "binlog_expire_logs_seconds",
    "expire_logs_days",
    "binlog_row_value_options",  # MySQL 8.0.3+
    "binlog_transaction_compression",  # MySQL 8.0.20+
    "aurora_version",  # Aurora MySQL only
    "basedir",  # /rdsdbbin/... on RDS and Aurora
)
_AURORA = "on Aurora MySQL set it in the DB cluster parameter group and reboot the writer"
_GRANT = re.compile(r"^GRANT (.+?) ON (\S+) TO ", re.IGNORECASE)
# The privileges CDC needs on *.*, each with the names that grant it. MariaDB 10.5 renamed
# REPLICATION CLIENT to BINLOG MONITOR; both servers accept REPLICA for SLAVE.
_SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "mariadb": {
        "REPLICATION SLAVE": ("REPLICATION SLAVE", "REPLICATION REPLICA"),
        "REPLICATION CLIENT": ("REPLICATION CLIENT", "BINLOG MONITOR"),
    },
    "mysql": {
        "REPLICATION SLAVE": ("REPLICATION SLAVE", "REPLICATION REPLICA"),
        "REPLICATION CLIENT": ("REPLICATION CLIENT",),
    },
}
ER_SP_DOES_NOT_EXIST = 1305  # "PROCEDURE mysql.rds_show_configuration does not exist": not RDS/Aurora
AURORA_MAX_RETENTION_HOURS = 2160  # Aurora MySQL 2.11+ and 3: 'binlog retention hours' is at most 90 days


def run_preflight(
    conn: pymysql.connections.Connection, config: MySQLSourceConfig, flavor: str, tables: Sequence[str]
) -> None:
    """Raise PreflightError listing every setting, grant or table that stops CDC."""
    placeholders = ", ".join(["%s"] * len(_VARIABLES))
    variables = {
        str(name).lower(): str(value)
        for name, value in fetch_all(
            conn, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({placeholders})", _VARIABLES
        )
    }
    failures: list[str] = []
    failures += _writer_failures(variables, config)
    failures += _binlog_failures(variables)
    failures += _gtid_failures(variables, flavor)
    if flavor == "mysql":
        failures += _mysql_event_failures(variables)
    failures += _retention_failures(conn, variables, config, flavor)
    failures += _grant_failures(conn, config, flavor)
    failures += _table_failures(conn, config, tables)
    if failures:
        listing = "\n".join(f"  - {f}" for f in failures)
        raise PreflightError(f"{endpoint(config)} is not ready for binlog CDC:\n{listing}")


def _setting(name: str, actual: str, wanted: str) -> str:
    return f"{name} is {actual}; set {name}={wanted} in the server config (or SET GLOBAL {name}={wanted}); {_AURORA}"


def _writer_failures(v: dict[str, str], config: MySQLSourceConfig) -> list[str]:
    """A reader instance: an Aurora replica (innodb_read_only) or a read-only server."""
    if v.get("innodb_read_only", "OFF").upper() == "ON":
        return [
            f"{config.host} is a reader instance (innodb_read_only=ON: an Aurora replica has no binlog of "
            "its own); set `host` to the cluster endpoint (<cluster>.cluster-<id>.<region>.rds.amazonaws.com), "
            "which always points at the writer"
        ]
    if v.get("read_only", "OFF").upper() == "ON" and not config.allow_replica:
        return [
            f"{config.host} is read-only (read_only=ON: a replica, or a writer being failed over); set `host` "
            "to the cluster (writer) endpoint, or, for a self-managed replica that logs what it applies "
            "(log_replica_updates=ON, GTIDs on), set allow_replica = true"
        ]
    return []


def _binlog_failures(v: dict[str, str]) -> list[str]:
    failures = []
    if v.get("log_bin", "OFF").upper() != "ON":
        failures.append(
            "log_bin is OFF; start the server with log_bin=<basename> in its config (needs a restart); "
            "on Aurora MySQL binary logging starts once binlog_format is set in the DB cluster parameter group"
        )
    for name in ("binlog_format", "binlog_row_image"):
        wanted = "ROW" if name == "binlog_format" else "FULL"
        actual = v.get(name, "unknown")
        if actual.upper() != wanted:
            failures.append(_setting(name, actual, wanted))
    metadata = v.get("binlog_row_metadata")
    if metadata is None:
        failures.append(
            "the server has no binlog_row_metadata setting (needs MariaDB 10.5+ or MySQL 8.0.14+); without "
            "column names in the binlog, schema changes cannot be followed"
        )
    elif metadata.upper() != "FULL":
        failures.append(_setting("binlog_row_metadata", metadata, "FULL"))
    return failures


def _gtid_failures(v: dict[str, str], flavor: str) -> list[str]:
    if flavor == "mariadb":
        if "gtid_binlog_pos" not in v:
            return ["the server reports no gtid_binlog_pos; MariaDB 10.0+ is needed for GTID positions"]
        if v.get("gtid_strict_mode", "OFF").upper() != "ON":
            logger.warning(
                "gtid_strict_mode is OFF; setting gtid_strict_mode=ON (server config or SET GLOBAL) is advisable "
                "so sequence numbers only grow within a replication domain"
            )
        return []
    failures = []
    for name in ("gtid_mode", "enforce_gtid_consistency"):
        actual = v.get(name, "OFF")
        if actual.upper() != "ON":
            failures.append(_setting(name, actual, "ON"))
    return failures


def _mysql_event_failures(v: dict[str, str]) -> list[str]:
    """MySQL 8 binlog features that write row changes in a form the decoder cannot read.

    mysql-replication 1.0.17 gives a partial JSON update's after-image as a diff (JsonDiff), not
    the document, and has no reader for TRANSACTION_PAYLOAD events (compressed transactions):
    the stream stops at either (binlog.py), so they are refused up front.
    """
    failures = []
    if "PARTIAL_JSON" in v.get("binlog_row_value_options", "").upper():
        failures.append(
            "binlog_row_value_options is PARTIAL_JSON: updates of JSON columns are then logged as partial diffs, "
            "not documents, and cannot be decoded; set binlog_row_value_options='' (empty) in the server config "
            f"(or SET GLOBAL binlog_row_value_options=''); {_AURORA}"
        )
    if v.get("binlog_transaction_compression", "OFF").upper() == "ON":
        failures.append(
            "binlog_transaction_compression is ON: transactions are then logged as compressed payloads, which "
            "mysql-replication cannot read; set binlog_transaction_compression=OFF in the server config (or SET "
            f"GLOBAL binlog_transaction_compression=OFF, which applies to new sessions); {_AURORA}"
        )
    return failures


def _retention_hours(v: dict[str, str]) -> tuple[float | None, str]:
    """How long the server keeps binlogs by its variables (None: forever), and the setting that says so."""
    seconds = float(v.get("binlog_expire_logs_seconds") or 0)
    days = float(v.get("expire_logs_days") or 0)
    if seconds > 0:
        return seconds / 3600, f"binlog_expire_logs_seconds={int(seconds)}"
    if days > 0:
        return days * 24, f"expire_logs_days={days:g}"
    return None, "binlog_expire_logs_seconds=0"


def _aurora_retention(conn: pymysql.connections.Connection, v: dict[str, str]) -> str | None:
    """Aurora's ``'binlog retention hours'`` ('NULL' when unset), or None on a server without it.

    On Aurora MySQL (and RDS) this setting, not binlog_expire_logs_seconds, decides when binlogs
    are purged ("Setting and showing binary log configuration", Aurora User Guide). MySQL checks
    the EXECUTE privilege before it looks the procedure up, so an account without it is refused
    whether the procedure exists or not: that error is raised on Aurora / RDS (known by their
    variables) and means "not Aurora" elsewhere.
    """
    try:
        rows = fetch_dicts(conn, "CALL mysql.rds_show_configuration")
    except pymysql.err.MySQLError as exc:
        if error_code(exc) == ER_SP_DOES_NOT_EXIST or not _is_rds(v):
            logger.debug("no Aurora binlog retention setting (%s); using binlog_expire_logs_seconds", exc)
            return None
        raise
    for row in rows:
        if str(row.get("name", "")).lower() == "binlog retention hours":
            value = row.get("value")
            return "NULL" if value is None else str(value)
    return None


def _retention_failures(
    conn: pymysql.connections.Connection, v: dict[str, str], config: MySQLSourceConfig, flavor: str
) -> list[str]:
    wanted = config.min_binlog_retention_hours
    if flavor == "mysql":
        try:
            aurora = _aurora_retention(conn, v)
        except pymysql.err.MySQLError as exc:
            name, _, host = _current_user(conn).rpartition("@")
            return [
                f"the binlog retention could not be read with CALL mysql.rds_show_configuration ({exc.args[-1]}); "
                f"as an admin run: GRANT EXECUTE ON PROCEDURE mysql.rds_show_configuration TO '{name}'@'{host}'"
            ]
        if aurora is not None:
            return _aurora_retention_failures(aurora, wanted)
    hours, setting = _retention_hours(v)
    if wanted == 0 or hours is None or hours >= wanted:
        return []
    seconds = int(wanted * 3600 + 0.999)
    return [
        f"binlogs are kept for {hours:g} h ({setting}) but min_binlog_retention_hours is {wanted:g}; set "
        f"binlog_expire_logs_seconds={seconds} in the server config (or SET GLOBAL binlog_expire_logs_seconds="
        f"{seconds}), so a stopped pipeline can resume before its position is purged"
    ]


def _aurora_retention_failures(value: str, wanted: float) -> list[str]:
    """Aurora's 'binlog retention hours' against min_binlog_retention_hours; NULL is always refused."""
    suggested = math.ceil(wanted) if wanted else 24  # Aurora refuses 0
    fix = f"as the master user run CALL mysql.rds_set_configuration('binlog retention hours', {suggested})"
    if suggested > AURORA_MAX_RETENTION_HOURS:
        fix = (
            f"Aurora keeps binlogs for at most {AURORA_MAX_RETENTION_HOURS} h: lower min_binlog_retention_hours and "
            f"run CALL mysql.rds_set_configuration('binlog retention hours', {AURORA_MAX_RETENTION_HOURS})"
        )
    if value.upper() == "NULL":
        # Aurora's default: binlogs are purged lazily ("usually not longer than a day"), with no guarantee.
        return [
            "Aurora's 'binlog retention hours' is NULL, so binlogs are purged as soon as Aurora gets to it and a "
            f"stopped pipeline loses its position; {fix}"
        ]
    try:
        kept = float(value)
    except ValueError:
        return [f"Aurora's 'binlog retention hours' is {value!r}, not a number of hours; {fix}"]
    if kept >= wanted:
        return []
    return [
        f"binlogs are kept for {kept:g} h (Aurora's 'binlog retention hours'={value}) but min_binlog_retention_hours "
        f"is {wanted:g}; {fix}, so a stopped pipeline can resume before its position is purged"
    ]


def _is_rds(v: dict[str, str]) -> bool:
    """Whether the server is Aurora MySQL or RDS (``aurora_version`` exists; RDS's install directory)."""
    return "aurora_version" in v or v.get("basedir", "").startswith("/rdsdbbin/")


def _current_user(conn: pymysql.connections.Connection) -> str:
    """``user@host`` of the account the server matched (CURRENT_USER())."""
    return str(fetch_value(conn, "SELECT CURRENT_USER()"))


def _grant_failures(
    conn: pymysql.connections.Connection, config: MySQLSourceConfig, flavor: str
) -> list[str]:
    on_all: set[str] = set()
    on_db: set[str] = set()
    db_patterns = {f"`{config.database}`.*", f"{config.database}.*"}
    for (line,) in fetch_all(conn, "SHOW GRANTS FOR CURRENT_USER()"):
        # Only the privilege list and the object are parsed: the line also holds the password hash.
        match = _GRANT.match(str(line))
        if not match:
            continue
        privileges = {p.strip().upper() for p in match.group(1).split(",")}
        target = match.group(2)
        if target == "*.*":
            on_all |= privileges
        elif target in db_patterns:
            on_db |= privileges
    if "ALL PRIVILEGES" in on_all or "ALL" in on_all:
        return []
    synonyms = _SYNONYMS["mysql" if flavor == "mysql" else "mariadb"]
    missing = [p for p, names in synonyms.items() if not on_all.intersection(names)]
    if not ({"SELECT", "ALL PRIVILEGES", "ALL"} & (on_all | on_db)):
        missing.append(f"SELECT on {config.database}")
    if not missing:
        return []
    user = _current_user(conn)
    name, _, host = user.rpartition("@")
    grants = ", ".join(p for p in ("REPLICATION SLAVE", "REPLICATION CLIENT") if p in missing)
    fixes = []
    if grants:
        fixes.append(f"GRANT {grants} ON *.* TO '{name}'@'{host}'")
    if any(p.startswith("SELECT") for p in missing):
        fixes.append(f"GRANT SELECT ON `{config.database}`.* TO '{name}'@'{host}'")
    return [f"the CDC user {user} lacks {', '.join(missing)}; as an admin run: {'; '.join(fixes)}"]


def _table_failures(
    conn: pymysql.connections.Connection, config: MySQLSourceConfig, tables: Sequence[str]
) -> list[str]:
    existing = {
        str(name): str(kind)
        for name, kind in fetch_all(
            conn,
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            (config.database,),
        )
    }
    failures = []
    for name in tables:
        kind = existing.get(name)
        if kind is None:
            failures.append(
                f"table {config.database}.{name} does not exist; fix `tables` in the source config"
            )
        elif kind != "BASE TABLE":
            failures.append(
                f"{config.database}.{name} is a {kind.lower()}, not a table; views have no binlog events"
            )
        elif not read_primary_key(conn, TableId(config.name, config.database, name)):
            failures.append(
                f"table {config.database}.{name} has no primary key; add one "
                f"(ALTER TABLE {config.database}.{name} ADD PRIMARY KEY (...)) or leave it out of `tables`"
            )
    return failures
