"""Instants as time since the epoch, for event times: wall-clock (naive) datetimes are read as UTC.

Floor division of timedeltas is exact and fast; `datetime.timestamp()` goes through a float and, for naive
values, the local time zone.
"""

from __future__ import annotations

import datetime as dt

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EPOCH_NAIVE = dt.datetime(1970, 1, 1)
EPOCH_DATE = EPOCH.date()
MICROSECOND = dt.timedelta(microseconds=1)
MILLISECOND = dt.timedelta(milliseconds=1)


def since_epoch(value: object) -> dt.timedelta | None:
    """How long after the epoch a datetime, a date or ISO-8601 text (SQLite keeps timestamps as text) is;
    None for anything else."""
    if isinstance(value, dt.datetime):
        return value - (EPOCH_NAIVE if value.tzinfo is None else EPOCH)
    if isinstance(value, str):
        try:
            return since_epoch(dt.datetime.fromisoformat(value))
        except ValueError:
            return None
    if isinstance(value, dt.date):
        return value - EPOCH_DATE
    return None


def epoch_us(value: object) -> int | None:
    """Microseconds since the epoch (floored, before 1970 too); None: not a time."""
    since = since_epoch(value)
    return None if since is None else since // MICROSECOND


def epoch_ms(value: object) -> int | None:
    """Milliseconds since the epoch (floored, before 1970 too); None: not a time."""
    since = since_epoch(value)
    return None if since is None else since // MILLISECOND
