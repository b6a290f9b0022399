"""Binlog positions on the server: where it is now, and whether it can still stream from one.

MySQL 8 / Aurora MySQL 3 positions are GTID sets: the server can stream everything after `since`
when ``@@gtid_purged`` is a subset of it (nothing we lack was purged) and `since` is a subset of
``@@gtid_executed`` (we have nothing the server never had), both asked with ``GTID_SUBSET``.

MariaDB quietly accepts a start position in a replication domain it has never seen and then
streams from its oldest binlog (checked on 10.11), and a position older than the oldest binlog's
Gtid_list has lost the transactions in between. Both would lose or duplicate data silently, so
`check_position_available` refuses them before a dump starts; the dump's own error 1236 is
mapped too (`position_lost`).
"""

from __future__ import annotations

import re

import pymysql

from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.connection import endpoint, fetch_all, fetch_value
from connectors.mysql.offset import BinlogPosition, MariaGtidPosition, MySQLGtidSet
from connectors.source import PositionAheadError, PositionLostError, PositionPurgedError

_GTID = re.compile(r"(\d+)-(\d+)-(\d+)")


def current_gtid_position(conn: pymysql.connections.Connection, flavor: str = "mariadb") -> BinlogPosition:
    """The server's binlog position now: MariaDB ``@@gtid_binlog_pos`` (last GTID logged per
    domain), MySQL ``@@gtid_executed`` (every transaction the server has executed)."""
    if flavor == "mysql":
        return MySQLGtidSet.parse(str(fetch_value(conn, "SELECT @@GLOBAL.gtid_executed") or ""))
    return MariaGtidPosition.parse(str(fetch_value(conn, "SELECT @@GLOBAL.gtid_binlog_pos") or ""))


def max_seq_by_domain(text: str) -> dict[int, int]:
    """Highest sequence number per domain in a GTID list such as ``0-1-5,0-2-7,1-1-3``."""
    result: dict[int, int] = {}
    for domain, _server, seq in _GTID.findall(text):
        d = int(domain)
        result[d] = max(result.get(d, 0), int(seq))
    return result


def oldest_binlog_gtid_list(conn: pymysql.connections.Connection) -> dict[int, int]:
    """The GTID state at the start of the oldest binlog still on the server (per domain)."""
    logs = fetch_all(conn, "SHOW BINARY LOGS")
    if not logs:
        return {}
    name = str(logs[0][0]).replace("'", "")
    for row in fetch_all(conn, f"SHOW BINLOG EVENTS IN '{name}' LIMIT 10"):
        if row[2] == "Gtid_list":
            return max_seq_by_domain(str(row[5]))
    return {}


def position_lost(
    config: MySQLSourceConfig,
    since: BinlogPosition,
    detail: str,
    error: type[PositionLostError] = PositionLostError,
) -> PositionLostError:
    """The error for a stored position the server can no longer stream from."""
    return error(
        f"{endpoint(config)}: the stored binlog position {since.serialize()!r} is no longer available on the "
        f"server ({detail}). The lake cannot be brought up to date from the binlog; take a new snapshot "
        f"with: lakehouse resnapshot --source {config.name}"
    )


def position_error_1236(config: MySQLSourceConfig, since: BinlogPosition, message: str) -> PositionLostError:
    """Server error 1236 on a binlog dump, as the named error for what it says."""
    lowered = message.lower()
    if "purged" in lowered:
        error: type[PositionLostError] = PositionPurgedError
    elif "has more gtids" in lowered or "not executed" in lowered or "ahead" in lowered:
        error = PositionAheadError
    else:
        error = PositionLostError
    return position_lost(config, since, f"server error 1236: {message}", error)


def check_position_available(
    conn: pymysql.connections.Connection, config: MySQLSourceConfig, since: BinlogPosition
) -> None:
    """Raise PositionLostError unless the server can stream every transaction after `since`."""
    if isinstance(since, MySQLGtidSet):
        _check_gtid_set_available(conn, config, since)
        return
    state = max_seq_by_domain(str(fetch_value(conn, "SELECT @@GLOBAL.gtid_binlog_state") or ""))
    for gtid in since.gtids:
        if gtid.seq == 0:
            continue
        if gtid.domain not in state:
            raise position_lost(
                config,
                since,
                f"the server's binlogs have no transactions in replication domain {gtid.domain}",
            )
        if gtid.seq > state[gtid.domain]:
            raise position_lost(
                config,
                since,
                f"it is ahead of the server, whose last transaction in domain {gtid.domain} is "
                f"{gtid.domain}-*-{state[gtid.domain]}; was the server restored or replaced?",
                PositionAheadError,
            )
    for domain, seq in oldest_binlog_gtid_list(conn).items():
        if since.seq_for(domain) < seq:
            raise position_lost(
                config,
                since,
                f"the binlogs after it were purged: the oldest binlog starts after {domain}-*-{seq}",
                PositionPurgedError,
            )


def _check_gtid_set_available(
    conn: pymysql.connections.Connection, config: MySQLSourceConfig, since: MySQLGtidSet
) -> None:
    text = str(since)
    row = fetch_all(
        conn,
        "SELECT GTID_SUBTRACT(%s, @@GLOBAL.gtid_executed), GTID_SUBTRACT(@@GLOBAL.gtid_purged, %s)",
        (text, text),
    )[0]
    ahead, purged = (str(v or "").replace("\n", "") for v in row)
    if ahead:
        raise position_lost(
            config,
            since,
            f"it is ahead of the server: the server never executed {ahead}; was it restored from a "
            "backup or replaced by another cluster?",
            PositionAheadError,
        )
    if purged:
        raise position_lost(
            config,
            since,
            f"purged: the server purged binlogs holding {purged}, which the lake does not have",
            PositionPurgedError,
        )
