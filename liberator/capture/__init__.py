"""The capture core: what every source shares between reading its database and publishing to Kafka.

Connectors decode their log or queries into `RowChange`s of `CapturedTable`s (from a `Catalogue`), grouped
in `ChangeBatch`es with the position after them; the core turns them into records (`Eventifier`): keys,
change or state envelopes, tombstones, truncates. docs/new-connector.md shows how a connector uses it.
"""

from liberator.capture.changes import BatchItem, ChangeBatch, Op, RowChange, Txn
from liberator.capture.datums import datum_events
from liberator.capture.eventify import DatumCodec, Eventifier, Record, TableCodec
from liberator.capture.rowerrors import PoisonRow
from liberator.capture.tables import CapturedTable, CaptureSettings, Catalogue, render_topic
from liberator.capture.truncate import truncate_changes

__all__ = [
    "BatchItem",
    "CaptureSettings",
    "CapturedTable",
    "Catalogue",
    "ChangeBatch",
    "DatumCodec",
    "Eventifier",
    "Op",
    "PoisonRow",
    "Record",
    "RowChange",
    "TableCodec",
    "Txn",
    "datum_events",
    "render_topic",
    "truncate_changes",
]
