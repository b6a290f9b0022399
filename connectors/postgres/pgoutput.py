"""A small decoder for the pgoutput logical replication protocol (version 1) messages.

Message layouts follow "Logical Replication Message Formats" in the PostgreSQL documentation
(chapter 55.9 in PostgreSQL 15). This module parses the messages around the rows (Begin, Commit,
Relation, Truncate, ...); the rows' TupleData, the hot path, is read by
`connectors.postgres.tuples`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from connectors.postgres.catalog import RelationColumn
from connectors.source import SourceError

# Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC).
PG_EPOCH_OFFSET_MICROS = 946_684_800_000_000

BEGIN = ord("B")
COMMIT = ord("C")
ORIGIN = ord("O")
RELATION = ord("R")
TYPE = ord("Y")
INSERT = ord("I")
UPDATE = ord("U")
DELETE = ord("D")
TRUNCATE = ord("T")
MESSAGE = ord("M")

NEW_TUPLE = ord("N")
KEY_TUPLE = ord("K")
OLD_TUPLE = ord("O")

_BEGIN = struct.Struct(">qqI")  # final_lsn, commit timestamp, xid
_COMMIT = struct.Struct(">bqqq")  # flags, commit_lsn, end_lsn, commit timestamp
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")
_RELATION_COLUMN_TAIL = struct.Struct(">Ii")  # type OID, typmod


class PgoutputError(SourceError):
    """A pgoutput message could not be decoded (protocol mismatch or a corrupt stream)."""


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int  # LSN of the commit record (its start)
    commit_micros: int  # Unix epoch microseconds, UTC
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    commit_lsn: int  # start of the commit record
    end_lsn: int  # end of the commit record: the position to confirm once the lake has it
    commit_micros: int


@dataclass(frozen=True, slots=True)
class Relation:
    relid: int
    namespace: str
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True, slots=True)
class Truncate:
    relids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


def parse_begin(data: bytes) -> Begin:
    final_lsn, ts, xid = _BEGIN.unpack_from(data, 1)
    return Begin(final_lsn, ts + PG_EPOCH_OFFSET_MICROS, xid)


def parse_commit(data: bytes) -> Commit:
    _flags, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(data, 1)
    return Commit(commit_lsn, end_lsn, ts + PG_EPOCH_OFFSET_MICROS)


def _cstring(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(0, pos)
    return data[pos:end].decode("utf-8"), end + 1


def parse_relation(data: bytes) -> Relation:
    (relid,) = _UINT32.unpack_from(data, 1)
    namespace, pos = _cstring(data, 5)
    name, pos = _cstring(data, pos)
    identity = chr(data[pos])
    (ncols,) = _INT16.unpack_from(data, pos + 1)
    pos += 3
    columns = []
    for _ in range(ncols):
        flags = data[pos]
        column, pos = _cstring(data, pos + 1)
        type_oid, typmod = _RELATION_COLUMN_TAIL.unpack_from(data, pos)
        pos += 8
        columns.append(RelationColumn(column, type_oid, typmod, bool(flags & 1)))
    # pgoutput sends an empty namespace for pg_catalog.
    return Relation(relid, namespace or "pg_catalog", name, identity, tuple(columns))


def parse_type(data: bytes) -> tuple[int, str, str]:
    """A Type message: (type OID, namespace, name) of a non-built-in type used by a relation."""
    (oid,) = _UINT32.unpack_from(data, 1)
    namespace, pos = _cstring(data, 5)
    name, _ = _cstring(data, pos)
    return oid, namespace, name


def parse_truncate(data: bytes) -> Truncate:
    (count,) = _UINT32.unpack_from(data, 1)
    options = data[5]
    relids = struct.unpack_from(f">{count}I", data, 6)
    return Truncate(tuple(relids), bool(options & 1), bool(options & 2))


def relation_id(data: bytes) -> int:
    """The relation OID of an Insert, Update or Delete message."""
    return int(_UINT32.unpack_from(data, 1)[0])
