"""Correct TIME2, DATETIME2 and DATE decoding in mysql-replication 1.0.17.

* TIME2: a negative value with a fractional part decodes wrong (-10:00:00.250 comes back as
  -10:00:00.750) because the library negates the integer part and adds the stored fraction,
  while MySQL stores negative fractions in reverse order for binary sorting. This decoder
  follows the server's own ``my_time_packed_from_binary`` (mysys/my_time.c).
* DATETIME2 and DATE: a zero or out-of-range value ('0000-00-00', '2024-02-30') comes back as
  None, indistinguishable from NULL. These return `InvalidTemporal` with the stored text, so
  the row is quarantined with its value instead of silently losing it.

The layouts are in MySQL's "Date and Time Data Type Representation" internals page.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymysqlreplication.row_event import RowsEvent

from connectors.mysql.types import InvalidTemporal

TIMEF_INT_OFS = 0x800000
TIMEF_OFS = 0x800000 << 24
_FRAC_BITS = 24


def _read_time2(self: Any, column: Any) -> dt.timedelta:
    packet = self.packet
    fsp = column.fsp
    first = int.from_bytes(packet.read(3), "big")
    intpart = first - TIMEF_INT_OFS
    if fsp in (1, 2):
        frac = packet.read(1)[0]
        if intpart < 0 and frac:
            # Negative values store the fraction as (0x100 - frac) of the next integer value.
            intpart += 1
            frac -= 0x100
        packed = (intpart << _FRAC_BITS) + frac * 10_000
    elif fsp in (3, 4):
        frac = int.from_bytes(packet.read(2), "big")
        if intpart < 0 and frac:
            intpart += 1
            frac -= 0x10000
        packed = (intpart << _FRAC_BITS) + frac * 100
    elif fsp in (5, 6):
        packed = ((first << _FRAC_BITS) | int.from_bytes(packet.read(3), "big")) - TIMEF_OFS
    else:
        packed = intpart << _FRAC_BITS
    negative = packed < 0
    packed = -packed if negative else packed
    hms = packed >> _FRAC_BITS
    value = dt.timedelta(
        hours=(hms >> 12) % (1 << 10),
        minutes=(hms >> 6) % (1 << 6),
        seconds=hms % (1 << 6),
        microseconds=packed % (1 << _FRAC_BITS),
    )
    return -value if negative else value


def _read_datetime2(self: Any, column: Any) -> dt.datetime | InvalidTemporal:
    data = int.from_bytes(self.packet.read(5), "big")
    year, month = divmod((data >> 22) & ((1 << 17) - 1), 13)
    day, hour = (data >> 17) & 31, (data >> 12) & 31
    minute, second = (data >> 6) & 63, data & 63
    micros = self._RowsEvent__read_fsp(column)
    try:
        return dt.datetime(year, month, day, hour, minute, second, micros)
    except ValueError:
        text = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
        if column.fsp:
            text += f".{micros:06d}"[: column.fsp + 1]
        return InvalidTemporal(text)


def _read_date(self: Any) -> dt.date | InvalidTemporal:
    value = self.packet.read_uint24()
    year, month, day = (value >> 9) & 0x7FFF, (value >> 5) & 15, value & 31
    try:
        return dt.date(year, month, day)
    except ValueError:
        return InvalidTemporal(f"{year:04d}-{month:02d}-{day:02d}")


def apply() -> None:
    """Replace the library's decoders on RowsEvent (idempotent)."""
    RowsEvent._RowsEvent__read_time2 = _read_time2
    RowsEvent._RowsEvent__read_datetime2 = _read_datetime2
    RowsEvent._RowsEvent__read_date = _read_date
