"""The transactional outbox: routing rules shared by the outbox-table source and the CDC sources.

    router = OutboxRouter(OutboxRouting(), source_name="orders", registry=context.registry)
    events = router.route(row_mapping, position)   # one domain event, or one poison row (on_error)

See docs/outbox.md for the table shape, the routing and the payload modes.
"""

from liberator.outbox.router import (
    HEADER_AGGREGATE_TYPE,
    HEADER_ERROR,
    HEADER_EVENT_TYPE,
    HEADER_ID,
    KEY_SCHEMA,
    OutboxRouter,
)
from liberator.outbox.routing import OutboxColumns, OutboxRouting
from liberator.outbox.values import InvalidRow

__all__ = [
    "HEADER_AGGREGATE_TYPE",
    "HEADER_ERROR",
    "HEADER_EVENT_TYPE",
    "HEADER_ID",
    "KEY_SCHEMA",
    "InvalidRow",
    "OutboxColumns",
    "OutboxRouter",
    "OutboxRouting",
]
