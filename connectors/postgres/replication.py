"""One replication session read and answered through libpq, so that only the lake confirms the slot.

psycopg2's own message loop (``ReplicationCursor.read_message``, 2.8+ up to 2.9.x) confirms
positions nobody asked it to. In ``pq_read_replication_message`` (psycopg/pqpath.c), a primary
keepalive sets the flush position it reports to the keepalive's ``wal_end`` whenever
``explicitly_flushed_lsn >= last_msg_data_start`` - that is, whenever every data message seen so
far was confirmed through ``send_feedback(flush_lsn=...)``, *and* before the first data message
(both start at 0). The raised position then goes to the server with the next status update: at
once when the keepalive asks for a reply, after ``status_interval`` (10 s) by itself, or with any
``send_feedback`` call. A consumer that stops (or is killed) before recording that position finds
the slot confirmed past its own position on restart, indistinguishable from lost data.

So psycopg2 only opens the connection and sends START_REPLICATION here; the CopyBoth messages are
read and written with libpq's own functions (``PQgetCopyData``/``PQputCopyData``, through the
``pgconn_ptr`` psycopg2 exposes for this purpose). The flush position this session ever sends is
the last one `confirm` was given - the caller passes only lake-committed positions - so the server
can never hold a confirmed position the lake has not committed. Keepalives only update `wal_end`,
and a keepalive that asks for a reply gets the last confirmed position again.

Standby status update and keepalive layouts: "Streaming Replication Protocol" in the PostgreSQL
documentation (chapter 55.4 in PostgreSQL 15).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
import time
from collections.abc import Mapping
from typing import Any

import psycopg2
import psycopg2._psycopg

from connectors.postgres.config import PostgresSourceConfig
from connectors.postgres.connection import close_quietly, connect
from connectors.usage import METER

# XLogData: 'w', dataStart, walEnd, sendTime (8 bytes each), then the payload (pgoutput's message).
_XLOG_HEADER = 25
# Each CopyData message on the wire: 'd' and its int32 length, then what PQgetCopyData returns.
_COPY_DATA_FRAMING = 5
_KEEPALIVE = ord("k")  # Primary keepalive: 'k', walEnd, sendTime, replyRequested
_KEEPALIVE_MESSAGE = struct.Struct(">qq?")
_STATUS_UPDATE = struct.Struct(">cqqqq?")  # 'r', write, flush, apply, client clock, replyRequested
PG_EPOCH_OFFSET_SECONDS = 946_684_800  # 2000-01-01 in Unix time: the protocol's clock starts there
# A walsender drops a client it has not heard from for wal_sender_timeout (60 s by default); status
# updates go out at least this often while the session is read.
STATUS_INTERVAL_SECONDS = 10.0


_VOID, _INT, _CHARS = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
# The libpq functions used here, as (argument types, result type) (libpq-fe.h).
_LIBPQ_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "PQgetCopyData": ([_VOID, _VOID, _INT], _INT),
    "PQputCopyData": ([_VOID, _CHARS, _INT], _INT),
    "PQflush": ([_VOID], _INT),
    "PQconsumeInput": ([_VOID], _INT),
    "PQfreemem": ([_VOID], None),
    "PQerrorMessage": ([_VOID], _CHARS),
    "PQgetResult": ([_VOID], _VOID),
    "PQresultErrorMessage": ([_VOID], _CHARS),
    "PQclear": ([_VOID], None),
}


def _load_libpq() -> Any:
    """The libpq psycopg2 itself is linked with (psycopg2-binary bundles its own copy)."""
    try:
        lib = ctypes.CDLL(psycopg2._psycopg.__file__)
        lib.PQgetCopyData  # noqa: B018 - resolves through _psycopg's own dependencies
    except (OSError, AttributeError):
        name = ctypes.util.find_library("pq")
        if name is None:
            raise ImportError("libpq not found (neither through psycopg2 nor on the library path)") from None
        lib = ctypes.CDLL(name)
    for name, (argtypes, restype) in _LIBPQ_SIGNATURES.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, restype
    return lib


_libpq: Any = None


def _lib() -> Any:
    global _libpq
    if _libpq is None:
        _libpq = _load_libpq()
    return _libpq


class ReplicationSession:
    """A started logical replication session: pgoutput messages in, standby status updates out.

    Use `start`; `read_available` returns the message payloads that arrived (wait on the session
    with ``select`` when there are none). Not thread-safe: one reader, and `confirm` from the same
    thread (the pipeline acknowledges between two reads).
    """

    def __init__(self, conn: Any, cursor: Any) -> None:
        self._conn = conn
        self._cursor = cursor  # the replication cursor, kept while its COPY runs
        self._lib = _lib()
        self._pgconn = conn.pgconn_ptr
        self._buffer: Any = ctypes.POINTER(ctypes.c_char)()  # slicing it copies bytes out
        self._buffer_ref = ctypes.byref(self._buffer)
        self.meter_source = ""  # the source's name: bytes read are counted to it (connectors.usage)
        self.confirmed = 0  # the flush position sent with every status update (0: none yet)
        self.wal_end = 0  # the walsender's position, from its keepalives
        self._last_status = time.monotonic()

    @classmethod
    def start(
        cls, config: PostgresSourceConfig, slot: str, start_lsn: int, options: Mapping[str, str]
    ) -> ReplicationSession:
        """Connect and START_REPLICATION; psycopg2 errors from the command propagate unchanged."""
        conn = connect(config, replication=True)
        try:
            cursor = conn.cursor()
            cursor.start_replication(slot_name=slot, decode=False, start_lsn=start_lsn, options=dict(options))
        except BaseException:
            close_quietly(conn)
            raise
        session = cls(conn, cursor)
        session.meter_source = config.name
        return session

    def fileno(self) -> int:
        return int(self._conn.fileno())

    def read_available(self, limit: int = 10_000) -> list[bytes]:
        """The XLogData payloads libpq has (or can read without waiting), at most `limit`; [] when
        none arrived (wait on the session with ``select`` then).

        Keepalives are consumed here: they update `wal_end`, and one that asks for a reply is
        answered with the last confirmed position (never with its own ``wal_end``).
        """
        get, free = self._lib.PQgetCopyData, self._lib.PQfreemem
        pgconn, buffer, buffer_ref = self._pgconn, self._buffer, self._buffer_ref
        payloads: list[bytes] = []
        append = payloads.append
        count = received = 0
        consumed = False  # libpq read the socket and no complete message came of it yet
        while count < limit:
            size = get(pgconn, buffer_ref, 1)
            if size > 0:
                received += size + _COPY_DATA_FRAMING
                consumed = False
                if buffer[0] == b"w":
                    append(buffer[_XLOG_HEADER:size])
                    free(buffer)
                    count += 1
                else:
                    message = buffer[:size]
                    free(buffer)
                    self._on_other_message(message)
            elif size == 0:
                # Nothing complete buffered: read what the socket has (never waiting), again for as
                # long as that brings messages, so that a busy stream is read in large batches.
                if consumed:
                    break
                if not self._lib.PQconsumeInput(pgconn):
                    raise psycopg2.OperationalError(self._error())
                consumed = True
            elif size == -1:  # the server ended the COPY: its result says why
                raise psycopg2.OperationalError(
                    self._result_error() or "replication stream ended by the server"
                )
            else:
                raise psycopg2.OperationalError(self._error())
        if received:
            METER.record("postgres", "replication", self.meter_source or "-", received=received)
        if not payloads and time.monotonic() - self._last_status >= STATUS_INTERVAL_SECONDS:
            self._send_status(reply=False)
        return payloads

    def _on_other_message(self, message: bytes) -> None:
        if message[0] != _KEEPALIVE:
            raise psycopg2.OperationalError(f"unexpected replication message type {chr(message[0])!r}")
        wal_end, _clock, reply = _KEEPALIVE_MESSAGE.unpack_from(message, 1)
        if wal_end > self.wal_end:
            self.wal_end = wal_end
        if reply:
            self._send_status(reply=False)

    def confirm(self, lsn: int) -> None:
        """Confirm `lsn` (everything before it is in the lake) to the server, now."""
        if lsn > self.confirmed:
            self.confirmed = lsn
        self._send_status(reply=False)

    def request_keepalive(self) -> None:
        """Ask the server for a keepalive (it reports its current position as ``wal_end``)."""
        self._send_status(reply=True)

    def close(self) -> None:
        close_quietly(self._conn)

    # --- helpers ---------------------------------------------------------------------------------

    def _send_status(self, *, reply: bool) -> None:
        # write = flush = the confirmed position; apply unset (0), as pg_recvlogical does.
        micros = int((time.time() - PG_EPOCH_OFFSET_SECONDS) * 1_000_000)
        message = _STATUS_UPDATE.pack(b"r", self.confirmed, self.confirmed, 0, micros, reply)
        lib = self._lib
        if lib.PQputCopyData(self._pgconn, message, len(message)) != 1 or lib.PQflush(self._pgconn) != 0:
            raise psycopg2.OperationalError(self._error())
        self._last_status = time.monotonic()

    def _error(self) -> str:
        text = self._lib.PQerrorMessage(self._pgconn)
        return (text or b"").decode("utf-8", "replace").strip() or "replication connection failed"

    def _result_error(self) -> str:
        lib = self._lib
        messages = []
        result = lib.PQgetResult(self._pgconn)
        while result:
            text = lib.PQresultErrorMessage(result)
            if text:
                messages.append(text.decode("utf-8", "replace").strip())
            lib.PQclear(result)
            result = lib.PQgetResult(self._pgconn)
        return "; ".join(m for m in messages if m)
