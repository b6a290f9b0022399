"""Typed source offsets.

Each source has its own offset type (MySQL GTID position, PostgreSQL LSN, DynamoDB shard positions).
An offset orders itself against others of its type and serialises to a short string that starts
with its kind, e.g. ``mariadb-gtid:0-1-42`` or ``pg-lsn:0/16B3748``. The lake stores only that
string, next to the data it covers; the source parses it back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class Offset(Protocol):
    """A position in a source's change stream."""

    @property
    def kind(self) -> str:
        """The offset's kind, the prefix of its serialised form (read-only: offsets are frozen)."""
        ...

    def serialize(self) -> str:
        """A short string ``<kind>:<value>`` that `parse_offset` turns back into an equal offset."""
        ...

    def __le__(self, other: object) -> bool: ...


class OffsetError(ValueError):
    """A stored offset string cannot be parsed."""


_PARSERS: dict[str, Callable[[str], Offset]] = {}


def register_offset_kind(kind: str, parse: Callable[[str], Offset]) -> None:
    """Make `parse_offset` understand offsets whose string starts with ``kind:``."""
    _PARSERS[kind] = parse


def parse_offset(text: str) -> Offset:
    """Parse a serialised offset of any registered kind."""
    kind, sep, value = text.partition(":")
    if not sep:
        raise OffsetError(f"offset {text!r} has no '<kind>:' prefix")
    try:
        parse = _PARSERS[kind]
    except KeyError:
        raise OffsetError(f"offset {text!r} has unknown kind {kind!r}; known: {sorted(_PARSERS)}") from None
    return parse(value)
