"""Driver errors -> the sink's kinds: retry passing faults, isolate bad records, stop on the rest."""

from __future__ import annotations

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from liberator import sqldb
from liberator.config import DatabaseTimeouts
from liberator.dbconnect import DEFAULT_TIMEOUTS
from liberator.errors import LiberatorError, TransientSourceError
from liberator.sink import FatalSinkError, TransientSinkError

# Lock conflicts between group members or with the application: the same batch succeeds when retried.
_RETRY = ("deadlock", "lock wait timeout", "could not serialize", "database is locked", "(1213,", "(1205,")
# Values the target refuses: one record's fault, found by applying the batch record by record.
_BAD_VALUE = (
    "(1264,",  # out of range
    "(1265,",  # data truncated
    "(1292,",  # incorrect datetime
    "(1366,",  # incorrect value
    "(1406,",  # data too long
    "(1048,",  # column cannot be null
    "(1452,",  # foreign key
    "invalid input",
    "out of range",
    "value too long",
)


def is_bad_value(exc: SQLAlchemyError) -> bool:
    if isinstance(exc, IntegrityError | DataError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _BAD_VALUE)


def classify(exc: Exception, url: str, what: str, timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS) -> LiberatorError:
    text = str(exc).lower()
    if any(marker in text for marker in _RETRY):
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return TransientSinkError(f"{what}: {sqldb.redact(url)}: {first}")
    kind = sqldb.classify(exc, url, what, timeouts)
    if isinstance(kind, TransientSourceError):
        return TransientSinkError(str(kind))
    return FatalSinkError(str(kind))
