"""Source positions: immutable values that round-trip through the offset store as JSON.

A connector defines its own frozen dataclass (binlog file/offset, GTID set, LSN, cursor values) deriving
from `Position`; the runtime never looks inside, it only stores what `to_json` returns and hands the
decoded value back to the connector on restart.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from abc import ABC, abstractmethod
from typing import Any, Self

JsonValue = Any  # what json.dumps accepts


class Position(ABC):
    """Where a source is; the value after an event means "everything up to here is published"."""

    @abstractmethod
    def to_json(self) -> dict[str, JsonValue]:
        """A JSON object from which `from_json` rebuilds an equal position."""

    @classmethod
    @abstractmethod
    def from_json(cls, data: dict[str, JsonValue]) -> Self:
        """Rebuild a position; raises ValueError naming what is wrong with `data`."""


def encode_scalar(value: object) -> JsonValue:
    """Tag a database scalar (a cursor or key value) so it decodes back to the same Python type."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"time": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"cannot store a {type(value).__name__} in a position")


def decode_scalar(value: JsonValue) -> object:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((tag, text),) = value.items()
        decoders: dict[str, Any] = {
            "float": float,
            "decimal": decimal.Decimal,
            "datetime": dt.datetime.fromisoformat,
            "date": dt.date.fromisoformat,
            "time": dt.time.fromisoformat,
            "uuid": uuid.UUID,
            "bytes": base64.b64decode,
        }
        if tag in decoders:
            return decoders[tag](text)
    raise ValueError(f"not a stored scalar: {value!r}")
