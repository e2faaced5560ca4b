"""TRUNCATE of captured tables, by the source's `truncate:` policy: warn, fail, or publish op 't' events."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from liberator.capture.changes import Op, RowChange, Txn
from liberator.capture.tables import CapturedTable
from liberator.errors import FatalSourceError


def truncate_changes(
    policy: str, source: str, tables: Sequence[CapturedTable], txn: Txn, where: str, log: logging.Logger
) -> list[RowChange]:
    """The changes to publish for a TRUNCATE of `tables` (in the statement's order) read at `where`.

    `publish`: one keyless op 't' change per table, as Debezium does. `warn`: none, and a warning. `fail`:
    stop the source, naming the choices.
    """
    if not tables:
        return []
    if policy == "publish":
        return [RowChange(table, Op.truncate, txn) for table in tables]
    names = ", ".join(t.name for t in tables)
    line = (
        f"TRUNCATE of {names} at {where}: the deleted rows cannot be published one by one; "
        "consumers keep them until they re-read the table"
    )
    if policy == "fail":
        raise FatalSourceError(
            f"source {source}: {line}; set `truncate: warn` to go on, `truncate: publish` to publish it, "
            "or reset the offsets to snapshot again"
        )
    log.warning("%s", line)
    return []
