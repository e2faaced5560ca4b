"""Helpers for the binlog source tests (no tests here): configs, a source driven in-process, topic reads."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from liberator.events import ChangeEvent, Checkpoint
from liberator.source import Source
from liberator.testbed import MySQLInstance

_server_ids = itertools.count(1000 + uuid.uuid4().int % 100_000)


def next_server_id() -> int:
    return next(_server_ids)


def source_yaml(server: MySQLInstance, tables: str, prefix: str, extra: str = "", name: str = "cdc") -> str:
    url = server.url(driver=None)
    return (
        f"  - name: {name}\n    type: mysql_binlog\n    url: {url}\n    tables: {tables}\n"
        f"    server_id: {next_server_id()}\n    heartbeat: 200ms\n"
        f'    topic: "{prefix}.{{schema}}.{{table}}"\n{extra}'
    )


def make_source(server: MySQLInstance, tables: list[str], **options: Any) -> tuple[Source, threading.Event]:
    from connectors.mysql_binlog import MySQLBinlogSource
    from connectors.mysql_binlog.config import MySQLBinlogConfig

    config = MySQLBinlogConfig(
        name="cdc",
        url=server.url(driver=None),
        tables=tables,
        server_id=next_server_id(),
        heartbeat=options.pop("heartbeat", 0.2),
        **options,
    )
    import logging

    from liberator.source import SourceContext

    stop = threading.Event()
    return MySQLBinlogSource(config, SourceContext("test", stop, logging.getLogger("test.cdc"))), stop


def collect(items: Iterator[Any], stop: threading.Event, until: Any, limit: int = 100_000) -> list[Any]:
    """Items from a source's read() until `until(items)` holds (then stop is set and the rest drained)."""
    out: list[Any] = []
    for item in items:
        out.append(item)
        if until(out) or len(out) >= limit:
            stop.set()
            break
    return out


def changes(items: list[Any]) -> list[ChangeEvent]:
    return [i for i in items if isinstance(i, ChangeEvent)]


def checkpoints(items: list[Any]) -> list[Checkpoint]:
    return [i for i in items if isinstance(i, Checkpoint)]
