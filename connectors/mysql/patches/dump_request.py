"""Fix the length of MariaDB's COM_BINLOG_DUMP request in mysql-replication 1.0.17.

The library's ``__set_mariadb_settings`` declares a 14-byte payload but sends 15 (an empty
file name written as 4 zero bytes). One stray byte stays unread on the server; when a
non-blocking dump reaches the end of the binlog the server closes the socket with unread data,
the kernel answers with a RST, the client loses the tail of the stream (error 2013) and the
library reconnects from its first ``auto_position``, replaying everything in a loop. Found in
this project's feasibility study (docs: feasibility-db.md §1); blocking dumps never end, so they
do not show it. The request layout is documented at https://mariadb.com/kb/en/com_binlog_dump/.
"""

from __future__ import annotations

import struct
from typing import Any

from pymysql.constants.COMMAND import COM_BINLOG_DUMP
from pymysqlreplication import binlogstream

BINLOG_DUMP_NON_BLOCK = 0x01
BINLOG_SEND_ANNOTATE_ROWS_EVENT = 0x02


def _mariadb_dump_request(self: Any) -> bytes:
    """Same session settings as the library, then a request whose length matches its payload."""
    cur = self._stream_connection.cursor()
    if self.auto_position is not None:
        cur.execute("SET @slave_connect_state = %s", (self.auto_position,))
    cur.execute("SET @slave_gtid_strict_mode=1")
    cur.execute("SET @slave_gtid_ignore_duplicates=0")
    cur.close()
    flags = 0
    if self._BinLogStreamReader__annotate_rows_event:
        flags |= BINLOG_SEND_ANNOTATE_ROWS_EVENT
    if not self._BinLogStreamReader__blocking:
        flags |= BINLOG_DUMP_NON_BLOCK
    # command, binlog position 4 (start of file), flags, our server id, empty file name (0 bytes)
    payload = bytes([COM_BINLOG_DUMP]) + struct.pack("<IHI", 4, flags, self._BinLogStreamReader__server_id)
    # The library writes the 3-byte length and the sequence id (0) as one little-endian int.
    return struct.pack("<i", len(payload)) + payload


def apply() -> None:
    """Replace the library's request builder (idempotent)."""
    binlogstream.BinLogStreamReader._BinLogStreamReader__set_mariadb_settings = _mariadb_dump_request
