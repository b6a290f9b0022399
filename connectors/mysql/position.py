"""MariaDB GTID positions on the server: where it is now, and whether it still has a position.

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
from connectors.mysql.offset import MariaGtidPosition
from connectors.source import PositionLostError

_GTID = re.compile(r"(\d+)-(\d+)-(\d+)")


def current_gtid_position(conn: pymysql.connections.Connection) -> MariaGtidPosition:
    """The server's binlog position now (``@@gtid_binlog_pos``: last GTID logged per domain)."""
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


def position_lost(config: MySQLSourceConfig, since: MariaGtidPosition, detail: str) -> PositionLostError:
    """The error for a stored position the server can no longer stream from."""
    return PositionLostError(
        f"{endpoint(config)}: the stored binlog position {since.serialize()!r} is no longer available on the "
        f"server ({detail}). The lake cannot be brought up to date from the binlog; take a new snapshot "
        f"with: lakehouse resnapshot --source {config.name}"
    )


def check_position_available(
    conn: pymysql.connections.Connection, config: MySQLSourceConfig, since: MariaGtidPosition
) -> None:
    """Raise PositionLostError unless the server can stream every transaction after `since`."""
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
            )
    for domain, seq in oldest_binlog_gtid_list(conn).items():
        if since.seq_for(domain) < seq:
            raise position_lost(
                config,
                since,
                f"the binlogs after it were purged: the oldest binlog starts after {domain}-*-{seq}",
            )
