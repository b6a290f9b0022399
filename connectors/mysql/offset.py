"""MySQL / MariaDB binlog positions as GTID sets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from connectors.offsets import OffsetError, register_offset_kind

_MARIADB_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


@dataclass(frozen=True, slots=True)
class MariaGtid:
    """One MariaDB GTID ``domain-server-seq``."""

    domain: int
    server: int
    seq: int

    @classmethod
    def parse(cls, text: str) -> MariaGtid:
        m = _MARIADB_GTID.match(text.strip())
        if not m:
            raise OffsetError(f"not a MariaDB GTID: {text!r} (expected domain-server-seq)")
        return cls(int(m[1]), int(m[2]), int(m[3]))

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"


@dataclass(frozen=True, slots=True)
class MariaGtidPosition:
    """A MariaDB replication position: the last applied GTID per replication domain.

    This is exactly the value MariaDB's ``gtid_slave_pos`` / ``@slave_connect_state`` takes, so it
    resumes a binlog dump with no gap and no duplicate. Ordering compares sequence numbers domain by
    domain (MariaDB's strict mode keeps them increasing within a domain).
    """

    gtids: tuple[MariaGtid, ...] = field(default=())
    kind: str = "mariadb-gtid"

    @classmethod
    def parse(cls, text: str) -> MariaGtidPosition:
        parts = [p for p in text.replace(" ", "").split(",") if p]
        gtids = sorted((MariaGtid.parse(p) for p in parts), key=lambda g: g.domain)
        domains = [g.domain for g in gtids]
        if len(set(domains)) != len(domains):
            raise OffsetError(f"MariaDB GTID position {text!r} names a domain twice")
        return cls(tuple(gtids))

    def serialize(self) -> str:
        return f"{self.kind}:{self}"

    def __str__(self) -> str:
        return ",".join(str(g) for g in self.gtids)

    def seq_for(self, domain: int) -> int:
        for g in self.gtids:
            if g.domain == domain:
                return g.seq
        return 0

    def contains(self, gtid: MariaGtid) -> bool:
        """Whether the transaction `gtid` is at or before this position."""
        return gtid.seq <= self.seq_for(gtid.domain)

    def advance(self, gtid: MariaGtid) -> MariaGtidPosition:
        """The position after applying `gtid`."""
        others = [g for g in self.gtids if g.domain != gtid.domain]
        return MariaGtidPosition(tuple(sorted([*others, gtid], key=lambda g: g.domain)))

    def __le__(self, other: object) -> bool:
        if not isinstance(other, MariaGtidPosition):
            return NotImplemented
        return all(other.seq_for(g.domain) >= g.seq for g in self.gtids)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, MariaGtidPosition):
            return NotImplemented
        return self <= other and self != other


register_offset_kind("mariadb-gtid", MariaGtidPosition.parse)


# -- MySQL 8 / Aurora MySQL 3 -----------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TAG = re.compile(r"^[a-z_][a-z0-9_]{0,31}$")


@dataclass(frozen=True, slots=True)
class MySQLGtid:
    """One MySQL GTID ``source:txno``; `source` is the server UUID (or ``uuid:tag`` on 8.4+)."""

    source: str
    txno: int

    @classmethod
    def parse(cls, text: str) -> MySQLGtid:
        source, sep, txno = text.strip().lower().rpartition(":")
        if not sep or not txno.isdigit() or not _UUID.match(source.partition(":")[0]):
            raise OffsetError(f"not a MySQL GTID: {text!r} (expected server_uuid:number)")
        return cls(source, int(txno))

    def __str__(self) -> str:
        return f"{self.source}:{self.txno}"


@dataclass(frozen=True, slots=True)
class MySQLGtidSet:
    """A MySQL GTID set, e.g. ``3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:11-18,...``.

    This is the value of ``@@gtid_executed`` and what a binlog dump with ``auto_position`` takes
    (MySQL 8 / Aurora MySQL 3). Unlike MariaDB's per-domain position it is a set: ordering is set
    inclusion, and `contains` asks whether one transaction is in it. MySQL 8.4 tagged GTIDs
    (``uuid:tag:1-5``) are kept per (uuid, tag). Normalised on parse: sources sorted, intervals
    merged, so equal sets serialise identically.
    """

    intervals: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()
    kind: str = "mysql-gtid"

    @classmethod
    def parse(cls, text: str) -> MySQLGtidSet:
        found: dict[str, list[tuple[int, int]]] = {}
        for part in (p.strip() for p in text.replace("\n", "").split(",")):
            if not part:
                continue
            pieces = part.split(":")
            uuid = pieces[0].strip().lower()
            if not _UUID.match(uuid):
                raise OffsetError(f"not a MySQL GTID set: {part!r} does not start with a server UUID")
            source = uuid
            for piece in pieces[1:]:
                piece = piece.strip()
                if _TAG.match(piece):
                    source = f"{uuid}:{piece}"
                    continue
                lo, sep, hi = piece.partition("-")
                try:
                    start, end = int(lo), int(hi) if sep else int(lo)
                except ValueError:
                    raise OffsetError(f"not a MySQL GTID set: bad interval {piece!r} in {part!r}") from None
                if start < 1 or end < start:
                    raise OffsetError(
                        f"not a MySQL GTID set: empty or invalid interval {piece!r} in {part!r}"
                    )
                found.setdefault(source, []).append((start, end))
        return cls(tuple((s, _merge(found[s])) for s in sorted(found)))

    def serialize(self) -> str:
        return f"{self.kind}:{self}"

    def __str__(self) -> str:
        return ",".join(
            f"{source}:" + ":".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ranges)
            for source, ranges in self.intervals
        )

    def _ranges(self, source: str) -> tuple[tuple[int, int], ...]:
        for s, ranges in self.intervals:
            if s == source:
                return ranges
        return ()

    def contains(self, gtid: MySQLGtid) -> bool:
        """Whether transaction `gtid` is in the set (the same question `MariaGtidPosition` answers)."""
        return any(a <= gtid.txno <= b for a, b in self._ranges(gtid.source.lower()))

    def advance(self, gtid: MySQLGtid) -> MySQLGtidSet:
        """The set after also executing `gtid`.

        A GTID of a server UUID the set has not seen yet (a new writer after a failover) simply
        adds that UUID: nothing is ordered across UUIDs, so nothing is lost or skipped.
        """
        source = gtid.source.lower()
        merged = dict(self.intervals)
        merged[source] = _merge([*merged.get(source, ()), (gtid.txno, gtid.txno)])
        return MySQLGtidSet(tuple(sorted(merged.items())))

    @property
    def is_empty(self) -> bool:
        return not self.intervals

    def __le__(self, other: object) -> bool:
        if not isinstance(other, MySQLGtidSet):
            return NotImplemented
        return all(
            any(c <= a and b <= d for c, d in other._ranges(source))
            for source, ranges in self.intervals
            for a, b in ranges
        )

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, MySQLGtidSet):
            return NotImplemented
        return self <= other and self != other


def _merge(ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Sorted, non-overlapping, non-adjacent intervals (1-3 and 4-6 become 1-6)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


register_offset_kind("mysql-gtid", MySQLGtidSet.parse)


# What the binlog reader works with, whichever the server's flavour.
Gtid = MariaGtid | MySQLGtid
BinlogPosition = MariaGtidPosition | MySQLGtidSet


def contains(position: BinlogPosition, gtid: Gtid) -> bool:
    """Whether `position` contains the transaction `gtid` (both of one server flavour)."""
    if isinstance(position, MySQLGtidSet) and isinstance(gtid, MySQLGtid):
        return position.contains(gtid)
    if isinstance(position, MariaGtidPosition) and isinstance(gtid, MariaGtid):
        return position.contains(gtid)
    raise OffsetError(f"GTID {gtid} and position {position.serialize()} are of different server flavours")


def advance(position: BinlogPosition, gtid: Gtid) -> BinlogPosition:
    """The position after also applying the transaction `gtid` (both of one server flavour)."""
    if isinstance(position, MySQLGtidSet) and isinstance(gtid, MySQLGtid):
        return position.advance(gtid)
    if isinstance(position, MariaGtidPosition) and isinstance(gtid, MariaGtid):
        return position.advance(gtid)
    raise OffsetError(f"GTID {gtid} and position {position.serialize()} are of different server flavours")
