"""Bytes read from a source are counted as the kernel counts them on the same TCP connection.

What crossing from a database to us costs follows the bytes on the wire, so the counts of
`connectors.usage.METER` are compared with Linux's own count of bytes received on the socket
(``TCP_INFO``'s ``tcpi_bytes_received``): for a MariaDB binlog connection from its handshake on,
and for a PostgreSQL logical replication session over a burst of changes.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import sys
import time
from typing import Any

import pytest

from connectors.mysql.config import MySQLSourceConfig
from connectors.mysql.connection import binlog_connect, binlog_connection_settings
from connectors.postgres.replication import ReplicationSession
from connectors.usage import METER
from tests.postgres_support import make_config

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO is Linux's")

TCPI_BYTES_RECEIVED = 128  # offset in struct tcp_info (Linux 4.1+), after tcpi_bytes_acked


def tcp_bytes_received(fd: int) -> int:
    sock = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)  # a dup: closing it keeps `fd`
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    finally:
        sock.close()
    return int(struct.unpack_from("Q", info, TCPI_BYTES_RECEIVED)[0])


def received(source: str, service: str) -> int:
    return sum(
        v
        for (svc, _op, table), v in METER.snapshot().bytes_received.items()
        if (svc, table) == (service, source)
    )


def test_a_binlog_connection_counts_what_its_socket_received(mysql_db: Any) -> None:
    config = MySQLSourceConfig(
        name=f"bytes_{mysql_db.name}",
        host=mysql_db.host,
        port=mysql_db.port,
        user=mysql_db.cdc_user,
        password=mysql_db.cdc_password,
        database=mysql_db.name,
    )
    before = received(config.name, "mysql")
    conn = binlog_connect(meter_source=config.name, config=config, **binlog_connection_settings(config))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT REPEAT('x', 300000), 1")
            assert len(cur.fetchone()[0]) == 300_000
        conn.flush_meter()
        on_the_wire = tcp_bytes_received(conn._sock.fileno())
        tls = isinstance(conn._sock, ssl.SSLSocket)
    finally:
        conn.close()
    counted = received(config.name, "mysql") - before
    if tls:  # TLS records carry more bytes than the plaintext PyMySQL reads
        assert on_the_wire > counted > 300_000
    else:
        assert counted == on_the_wire > 300_000


def _drain(session: ReplicationSession, quiet_seconds: float = 1.0) -> int:
    """Read until nothing arrives for `quiet_seconds`; the number of data messages read."""
    messages = 0
    while True:
        got = session.read_available()
        messages += len(got)
        if not got and not select.select([session.fileno()], [], [], quiet_seconds)[0]:
            return messages


def test_a_replication_session_counts_what_its_socket_received(pg_db: Any) -> None:
    admin = pg_db.admin_connect()
    slot = f"bytes_{pg_db.name}"
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        cur.execute("ALTER TABLE notes OWNER TO cdc")
        cur.execute("CREATE PUBLICATION bytes_pub FOR TABLE notes")
        cur.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    # Plain TCP: the count is the payload, which TLS records would outgrow (the stack serves TLS).
    config = make_config(pg_db, tls={"mode": "disable"})
    session = ReplicationSession.start(
        config, slot, 0, {"proto_version": "1", "publication_names": "bytes_pub"}
    )
    try:
        _drain(session)
        before, wire_before = received(config.name, "postgres"), tcp_bytes_received(session.fileno())
        with admin.cursor() as cur:
            for i in range(40):
                cur.execute("INSERT INTO notes SELECT g, repeat('n', 500) FROM generate_series(%s, %s) g",
                            (i * 100, i * 100 + 99))  # fmt: skip
        deadline = time.monotonic() + 30
        messages = 0
        while messages < 40 * 100 and time.monotonic() < deadline:
            messages += _drain(session, quiet_seconds=0.2)
        assert messages >= 40 * 100  # an insert per row, plus begins, commits and relations
        # Compared when quiet: a message (a keepalive) may land between a read and the kernel's count.
        for _ in range(3):
            _drain(session)
            counted = received(config.name, "postgres") - before
            on_the_wire = tcp_bytes_received(session.fileno()) - wire_before
            if counted == on_the_wire:
                break
    finally:
        session.close()
        with admin.cursor() as cur:
            cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    assert counted == on_the_wire > 40 * 100 * 500
