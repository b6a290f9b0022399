"""PostgreSQL WAL positions."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from connectors.offsets import OffsetError, register_offset_kind


@functools.total_ordering
@dataclass(frozen=True, slots=True)
class Lsn:
    """A PostgreSQL log sequence number; for a commit it is the commit's *end* LSN.

    The end LSN is what `send_feedback(flush_lsn=...)` must confirm: confirming the commit's start
    LSN re-delivers the transaction (measured, see docs/decisions).
    """

    value: int
    kind: str = "pg-lsn"

    @classmethod
    def parse(cls, text: str) -> Lsn:
        hi, sep, lo = text.strip().partition("/")
        try:
            if not sep:
                raise ValueError
            return cls((int(hi, 16) << 32) | int(lo, 16))
        except ValueError:
            raise OffsetError(f"not a PostgreSQL LSN: {text!r} (expected X/Y in hex)") from None

    def __str__(self) -> str:
        return f"{self.value >> 32:X}/{self.value & 0xFFFFFFFF:X}"

    def serialize(self) -> str:
        return f"{self.kind}:{self}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Lsn):
            return NotImplemented
        return self.value < other.value


register_offset_kind("pg-lsn", Lsn.parse)
