"""The outbox through the WAL: outbox-table inserts and logical messages become domain events.

Routing (topic from the aggregate type, key = aggregate id, headers, payload checks) is the outbox
source's own `OutboxRouter`, so both publish the same records. Inserts are read from the WAL in commit
order, so the application may delete its outbox rows right after inserting them (the WAL keeps them).
A logical message written with `pg_logical_emit_message(true, prefix, json)` in the application's
transaction carries one event as a JSON object of the outbox columns; its `id` defaults to the
message's LSN, which a replay repeats.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from liberator.capture import PoisonRow
from liberator.connectors.postgres_wal.config import PostgresWalConfig, WalOutboxConfig
from liberator.connectors.postgres_wal.pgoutput import UNCHANGED_TOAST, Message, Relation, TupleValue
from liberator.connectors.postgres_wal.position import lsn_text
from liberator.connectors.postgres_wal.tables import split_name
from liberator.connectors.postgres_wal.types import Parser, TypeCatalog
from liberator.errors import FatalSourceError
from liberator.events import ChangeEvent
from liberator.outbox import OutboxRouter
from liberator.registry.client import RegistryClient


class WalOutbox:
    def __init__(self, config: PostgresWalConfig, types: TypeCatalog, registry: RegistryClient | None) -> None:
        assert config.outbox is not None
        self.config: WalOutboxConfig = config.outbox
        self.types = types
        self.table = None if self.config.table is None else ".".join(split_name(self.config.table))
        self.router = OutboxRouter(
            self.config, config.name, registry, on_error=config.on_error, table=self.table or "outbox messages"
        )
        self._columns: dict[int, tuple[tuple[str, ...], tuple[Parser, ...]]] = {}
        self._names = [name for name in self.config.columns.model_dump().values() if name is not None]

    def relation(self, msg: Relation) -> bool:
        """Remember the outbox table's columns; True when the relation is the outbox table."""
        if f"{msg.namespace}.{msg.name}" != self.table:
            return False
        self.types.forget()
        parsers = tuple(
            self.types.column(c.type_oid, c.typmod, str(self.table), c.name, str(c.type_oid))[1] for c in msg.columns
        )
        self._columns[msg.relid] = (tuple(c.name for c in msg.columns), parsers)
        return True

    def is_outbox(self, relid: int) -> bool:
        return relid in self._columns

    def inserted(self, relid: int, values: list[TupleValue]) -> list[ChangeEvent | PoisonRow]:
        names, parsers = self._columns[relid]
        row: dict[str, Any] = {}
        for name, parse, value in zip(names, parsers, values, strict=True):
            if value is UNCHANGED_TOAST:  # pragma: no cover - an insert sends every value
                raise FatalSourceError(f"outbox table {self.table}: an insert without the value of {name}")
            row[name] = value if value is None or parse is None else parse(value)  # type: ignore[arg-type]
        return self.router.route(row, None)

    def message(self, msg: Message) -> Iterator[ChangeEvent | PoisonRow]:
        if self.config.message_prefix is None or msg.prefix != self.config.message_prefix:
            return
        cols = self.config.columns
        try:
            document = json.loads(msg.content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            document = None
        if isinstance(document, dict):
            row: dict[str, Any] = {name: document.get(name) for name in self._names}
        else:  # not an object: every column is missing, which the router reports as an invalid row
            row = dict.fromkeys(self._names)
        if row.get(cols.id) is None:
            row[cols.id] = lsn_text(msg.lsn)
        payload = row.get(cols.payload)
        if self.config.payload == "avro" and isinstance(payload, str):
            with contextlib.suppress(binascii.Error, ValueError):  # else left as text: the router says what it is
                row[cols.payload] = base64.b64decode(payload, validate=True)
        elif self.config.payload == "json" and payload is not None and not isinstance(payload, str):
            row[cols.payload] = json.dumps(payload)
        yield from self.router.route(row, None)
