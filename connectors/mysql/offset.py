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
