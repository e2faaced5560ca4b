"""`liberator tail`: print each record of a topic as one JSON line, decoded through the registry."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import json
import sys
import time
import uuid
from typing import Any, TextIO

import fastavro
from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient

from liberator.avro.wire import unframe
from liberator.errors import LiberatorError
from liberator.kafkalog import with_kafka_logger
from liberator.redaction import remember_url
from liberator.registry.client import RegistryClient


def jsonable(value: Any) -> Any:
    """Decimals as strings (exact), times as ISO-8601, bytes as base64."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class RecordDecoder:
    """Decodes keys and values through liberator's registry client (credentials may be in the URL)."""

    def __init__(self, registry_url: str) -> None:
        remember_url(registry_url)
        self._registry = RegistryClient(registry_url, auth_setting="user:password@ in the registry URL")
        self._schemas: dict[int, Any] = {}

    def decode(self, message: Message) -> dict[str, Any]:
        topic = message.topic() or ""
        key = message.key()
        value = message.value()
        ts_type, ts = message.timestamp()
        raw_headers: list[tuple[str, bytes | None]] = list(message.headers() or [])  # type: ignore[arg-type]
        headers = {name: _header_text(raw) for name, raw in raw_headers}
        return {
            "topic": topic,
            "partition": message.partition(),
            "offset": message.offset(),
            "timestamp": dt.datetime.fromtimestamp(ts / 1000, dt.UTC).isoformat(timespec="milliseconds")
            if ts_type != 0 and ts >= 0
            else None,
            "headers": headers,
            "key": jsonable(self._decode(_as_bytes(key))),
            "value": jsonable(self._decode(_as_bytes(value))),
        }

    def _decode(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if len(data) < 5 or data[0] != 0:
            return {"undecodable_base64": base64.b64encode(data).decode("ascii")}
        schema_id, body = unframe(data)
        parsed = self._schemas.get(schema_id)
        if parsed is None:
            parsed = self._schemas[schema_id] = fastavro.parse_schema(self._registry.get_schema(schema_id))
        try:
            return fastavro.schemaless_reader(io.BytesIO(body), parsed, None)
        except Exception:  # fastavro raises many kinds on bytes that are not what the schema says
            return {"undecodable_base64": base64.b64encode(data).decode("ascii"), "schema_id": schema_id}


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def _header_text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode("ascii")


def tail(
    topic: str,
    bootstrap_servers: str,
    registry_url: str,
    from_beginning: bool = False,
    max_records: int | None = None,
    group: str | None = None,
    idle_timeout: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    decoder = RecordDecoder(registry_url)
    try:
        # Asked through an admin client, which is never polled, before any consumer exists: no librdkafka
        # line about the broker being down is printed, the one line below says it.
        AdminClient(with_kafka_logger({"bootstrap.servers": bootstrap_servers})).list_topics(timeout=10)
    except KafkaException as exc:
        raise LiberatorError(
            f"Kafka at {bootstrap_servers} did not answer ({exc.args[0].str()}); start it or fix --bootstrap-servers"
        ) from None
    consumer = Consumer(
        with_kafka_logger(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": group or f"liberator-tail-{uuid.uuid4().hex[:12]}",
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "enable.auto.commit": group is not None,
                "fetch.wait.max.ms": 50,
                "session.timeout.ms": 6000,
            }
        )
    )
    printed = 0
    last_record = time.monotonic()
    try:
        consumer.subscribe([topic])
        while max_records is None or printed < max_records:
            message = consumer.poll(0.2)
            if message is None:
                if idle_timeout is not None and time.monotonic() - last_record > idle_timeout:
                    break
                continue
            error = message.error()
            if error is not None:
                if error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise LiberatorError(f"reading {topic}: {error.str()}")
            out.write(json.dumps(decoder.decode(message), ensure_ascii=False) + "\n")
            out.flush()
            printed += 1
            last_record = time.monotonic()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return printed
