"""The outbox through the binlog: rows inserted into the outbox table become domain events.

Routing (topic from the aggregate type, key = aggregate id, headers, payload checks) is the outbox source's
own `OutboxRouter`, so both publish the same records. Inserts are read from the binlog in commit order, so
the application may delete its outbox rows right after inserting them (the binlog keeps the insert); the
updates and deletes of outbox rows are not events and are ignored.
"""

from __future__ import annotations

from typing import Any

from liberator.capture import PoisonRow
from liberator.connectors.mysql_binlog.config import BinlogOutboxConfig, MySQLBinlogConfig
from liberator.connectors.mysql_binlog.types import Normalize, normalizer, specs_from_table_map
from liberator.errors import FatalSourceError, SchemaError
from liberator.events import ChangeEvent
from liberator.outbox import OutboxRouter
from liberator.registry.client import RegistryClient


class BinlogOutbox:
    """Recognises the outbox table's TableMapEvents and turns its inserted rows into domain events."""

    def __init__(self, config: MySQLBinlogConfig, registry: RegistryClient | None) -> None:
        assert config.outbox is not None
        self.config: BinlogOutboxConfig = config.outbox
        self.table = self.config.table
        self.router = OutboxRouter(self.config, config.name, registry, on_error=config.on_error, table=self.table)
        self._fixes: dict[int, tuple[tuple[str, Normalize], ...]] = {}  # by binlog table id

    def table_map(self, event: Any) -> bool:
        """Remember how to read the outbox table's rows; True when the event maps the outbox table."""
        if f"{event.schema}.{event.table}" != self.table:
            self._fixes.pop(event.table_id, None)  # table ids are reused after a table is reopened
            return False
        try:
            specs, _key = specs_from_table_map(event)
        except SchemaError as exc:
            raise FatalSourceError(f"outbox table {self.table} {exc}; use the documented outbox columns") from None
        # Same value rules as row changes: TIMESTAMP as a UTC instant, zero dates as NULL, JSON as text.
        self._fixes[event.table_id] = tuple((s.name, fix) for s in specs if (fix := normalizer(s)) is not None)
        return True

    def is_outbox(self, table_id: int) -> bool:
        return table_id in self._fixes

    def inserted(self, table_id: int, values: dict[str, Any]) -> list[ChangeEvent | PoisonRow]:
        row = dict(values)
        for name, fix in self._fixes[table_id]:
            if row.get(name) is not None:
                row[name] = fix(row[name])
        return self.router.route(row, None)
