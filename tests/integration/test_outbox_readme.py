"""The README's outbox snippet runs as printed: one transaction, both rows or neither, and its event
comes out of the daemon."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.integration.test_outbox_support import AppDb, app_db, outbox_yaml, register_order_schema
from tests.support import DaemonThread, app_config, read_topic, wait_for

__all__ = ["app_db"]
README = Path(__file__).parents[2] / "README.md"


def readme_snippet() -> Any:
    text = README.read_text()
    section = text[text.index("## Outbox") :]
    section = section[: section.index("\n## ", 1)]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "the README's Outbox section has no python example"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    return namespace["place_order"]


def test_readme_snippet_writes_the_row_and_its_event_atomically(
    app_db: AppDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    place_order = readme_snippet()
    app_db.create_outbox()
    app_db.run("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer VARCHAR(50) NOT NULL, total NUMERIC(10, 2))")
    place_order(app_db.engine, 1, "ada", "12.50")
    with pytest.raises(sa.exc.IntegrityError):
        place_order(app_db.engine, 1, "bob", "1.00")  # the order fails: its event must not exist either
    assert app_db.count() == 1
    topic = f"{app_db.prefix}.order"
    register_order_schema(registry_url, topic)
    with DaemonThread(app_config(tmp_path, kafka_bootstrap, registry_url, outbox_yaml(app_db))):
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=1)
        wait_for(lambda: app_db.count() == 0, what="the published row to be deleted")
    assert [(r["key"], r["headers"]["event_type"], r["value"]) for r in records] == [
        ("1", "OrderPlaced", {"order_id": 1, "total": "12.50", "note": None})
    ]


def test_check_names_the_missing_table_and_the_unsupported_locking(tmp_path: Path) -> None:
    import threading

    from liberator.connectors.outbox.config import OutboxSourceConfig
    from liberator.runtime import build_source
    from liberator.source import SourceConfig

    def problems(**fields: Any) -> list[str]:
        config: SourceConfig = OutboxSourceConfig(
            name="ob", url=f"sqlite:///{tmp_path}/app.db", payload="avro", **fields
        )
        return build_source(config, "test", threading.Event()).check()

    (missing,) = problems()
    assert "no such table: outbox" in missing and "liberator outbox ddl --dialect" in missing
    AppDb(f"sqlite:///{tmp_path}/app.db", "sqlite").create_outbox(payload="avro")
    assert problems() == []
    (refused,) = problems(locking="skip_locked")
    assert (
        "locking: skip_locked needs PostgreSQL, MySQL 8 or MariaDB 10.6+" in refused
        and "use locking: leader" in refused
    )
