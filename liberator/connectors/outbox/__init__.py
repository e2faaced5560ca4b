"""The outbox-table source (`type: outbox`): domain events the application wrote in its own transaction."""

from liberator.connectors.outbox.source import OutboxSource

__all__ = ["OutboxSource"]
