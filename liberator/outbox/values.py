"""Outbox column values as drivers return them, turned into what a Kafka record needs."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
import uuid
from typing import Any

from liberator.instants import EPOCH, EPOCH_NAIVE, MILLISECOND

# Kafka's own rule for topic names.
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class InvalidRow(ValueError):
    """The row cannot be published as it is; the message says why (one line, no row contents)."""


def text_of(value: Any, what: str) -> str:
    """A key, type or id column as text: strings as they are, numbers and UUIDs printed, bytes as hex."""
    if value is None:
        raise InvalidRow(f"{what} is NULL")
    if isinstance(value, str):
        if not value:
            raise InvalidRow(f"{what} is empty")
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, bool):
        raise InvalidRow(f"{what} is a boolean")
    if isinstance(value, int | decimal.Decimal | uuid.UUID):
        return str(value)
    raise InvalidRow(f"{what} is a {type(value).__name__}, not text, a number or a UUID")


def check_topic(topic: str) -> str:
    if not _TOPIC.match(topic) or topic in (".", ".."):
        raise InvalidRow(f"{topic!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-'; <= 249)")
    return topic


def epoch_ms(value: Any, what: str) -> int:
    """occurred_at as epoch milliseconds: aware datetimes as the instant, naive ones as UTC wall time,
    ISO-8601 text (SQLite), or epoch numbers in seconds, milliseconds or microseconds (by magnitude)."""
    if value is None:
        raise InvalidRow(f"{what} is NULL")
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidRow(f"{what} {value!r} is not an ISO-8601 timestamp") from None
    if isinstance(value, dt.datetime):
        return (value - (EPOCH_NAIVE if value.tzinfo is None else EPOCH)) // MILLISECOND
    if isinstance(value, bool) or not isinstance(value, int | float | decimal.Decimal):
        raise InvalidRow(f"{what} is a {type(value).__name__}, not a timestamp or epoch number")
    number = float(value)
    if number < 0:
        raise InvalidRow(f"{what} {value} is before 1970")
    if number < 1e11:  # seconds until the year 5138
        return int(number * 1000)
    if number < 1e14:  # milliseconds
        return int(number)
    return int(number // 1000)  # microseconds


def payload_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if value is None:
        raise InvalidRow(f"{what} is NULL")
    raise InvalidRow(f"{what} is {type(value).__name__}, not bytes: an Avro payload needs a binary column")


def payload_json(value: Any, what: str) -> Any:
    """A JSON payload as the driver returns it: text, bytes (UTF-8) or already decoded."""
    if value is None:
        raise InvalidRow(f"{what} is NULL")
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRow(f"{what} is not UTF-8 text") from None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise InvalidRow(f"{what} is not valid JSON ({exc})") from None
    if isinstance(value, dict | list | int | float | bool):
        return value
    raise InvalidRow(f"{what} is a {type(value).__name__}, not JSON")


def header_pairs(value: Any, what: str) -> list[tuple[str, bytes]]:
    """The headers column: a JSON object whose values are strings (numbers and booleans are printed)."""
    if value is None:
        return []
    decoded = payload_json(value, what)
    if not isinstance(decoded, dict):
        raise InvalidRow(f"{what} is not a JSON object of header names to strings")
    pairs: list[tuple[str, bytes]] = []
    for name, item in decoded.items():
        if item is None:
            continue
        if isinstance(item, dict | list):
            raise InvalidRow(f"{what}: header {name!r} is not a string")
        text = item if isinstance(item, str) else json.dumps(item)
        pairs.append((str(name), text.encode("utf-8")))
    return pairs


def schema_id_of(value: Any, what: str) -> int:
    if value is None:
        raise InvalidRow(f"{what} is NULL")
    if isinstance(value, bool):
        raise InvalidRow(f"{what} is a boolean, not a schema id")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRow(f"{what} {value!r} is not a schema id") from None
    if not 0 <= number < 2**31:
        raise InvalidRow(f"{what} {number} is out of range")
    return number


def column_text(value: Any) -> str | None:
    """Any column value as text for a dead letter; bytes as base64 so nothing is lost."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)
