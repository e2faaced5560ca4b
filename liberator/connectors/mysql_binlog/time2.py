"""MySQL's TIME2 binlog encoding (MySQL 5.6.4+, MariaDB with mysql56_temporal_format) -> a signed timedelta.

The value is a "packed" signed integer, ``(hours << 12 | minutes << 6 | seconds) << 24 | microseconds``, stored
offset so that bytes sort like values. Below zero, the stored integer part is one lower and the fraction is
complemented, so the fraction cannot be read on its own: mysql-replication 1.0.17 does and gets every negative
value with a fraction wrong (-00:00:00.5 comes out as -00:00:01 + 0.5 s). This is MySQL's own
``my_time_packed_from_binary`` and ``TIME_from_longlong_time_packed``; both the generated rows reader and the
library's decoding (patched in `patch_library`) use it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymysqlreplication.row_event import RowsEvent

_INT_OFFSET = 0x800000
_PACKED_OFFSET = 0x800000000000
_FRACTION_BYTES = (0, 1, 1, 2, 2, 3, 3)


def time2_size(fsp: int) -> int:
    """Bytes of a TIME(fsp) value in the binlog."""
    return 3 + _FRACTION_BYTES[fsp]


def decode_time2(data: bytes, at: int, fsp: int) -> dt.timedelta:
    """The TIME(fsp) value stored at `at` of `data`."""
    if fsp >= 5:
        packed = int.from_bytes(data[at : at + 6], "big") - _PACKED_OFFSET
    else:
        whole = int.from_bytes(data[at : at + 3], "big") - _INT_OFFSET
        fraction = 0
        if fsp:
            width = _FRACTION_BYTES[fsp]
            fraction = int.from_bytes(data[at + 3 : at + 3 + width], "big")
            if whole < 0 and fraction:  # stored one lower, the fraction complemented
                whole += 1
                fraction -= 1 << (8 * width)
            fraction *= 10000 if width == 1 else 100  # hundredths or ten-thousandths -> microseconds
        packed = (whole << 24) + fraction
    magnitude = abs(packed)
    hms = magnitude >> 24
    span = dt.timedelta(
        hours=(hms >> 12) & 1023, minutes=(hms >> 6) & 63, seconds=hms & 63, microseconds=magnitude & 0xFFFFFF
    )
    return -span if packed < 0 else span


def _read_time2(event: Any, column: Any) -> dt.timedelta:
    fsp = int(getattr(column, "fsp", 0) or 0)
    return decode_time2(bytes(event.packet.read(time2_size(fsp))), 0, fsp)


def patch_library() -> None:
    """Make mysql-replication decode TIME2 with `decode_time2` (its own reading is wrong below zero)."""
    RowsEvent._RowsEvent__read_time2 = _read_time2
