"""A column's type changing under the query source on PostgreSQL, after psycopg has prepared its page query.

psycopg prepares a statement server-side once it ran five times; a later `ALTER COLUMN ... TYPE` makes the
server refuse that plan ("cached plan must not change result type", SQLSTATE 0A000). The source must re-read
the table's shape and carry on when the change is compatible (a new schema version, events continue), or stop
with the registry's refusal when it is not -- never with the driver's error.
"""

from __future__ import annotations

from pathlib import Path

from liberator.registry.client import RegistryClient
from tests.integration.legacy_db import LegacyDb
from tests.support import DaemonThread, app_config, read_topic

WARM_UP = 8  # rows written one poll apart: the page query runs past psycopg's prepare threshold (5)


def _config(legacy: LegacyDb, tmp_path: Path, kafka_bootstrap: str, registry_url: str) -> Path:
    source = (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{schema}}.{{table}}"\n'
        f"    type: query\n    url: {legacy.url}\n    tables: [orders]\n"
        "    cursor: [updated_at, id]\n    poll_interval: 50ms\n    safety_delay: 0s\n    schema_refresh: 1h\n"
    )
    return app_config(tmp_path, kafka_bootstrap, registry_url, source)


def _warm_up(legacy: LegacyDb, kafka_bootstrap: str, registry_url: str, topic: str) -> None:
    """Each row is read by its own poll, so the page query has been executed (and prepared) by the end."""
    for i in range(1, WARM_UP + 1):
        legacy.insert_order(i)
        read_topic(kafka_bootstrap, registry_url, topic, expect=i)


def test_a_compatible_widening_registers_a_new_version_and_events_continue(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy = LegacyDb(pg_url, "postgresql")
    legacy.create_orders()
    topic = f"{legacy.prefix}.public.orders"
    with DaemonThread(_config(legacy, tmp_path, kafka_bootstrap, registry_url)) as daemon:
        _warm_up(legacy, kafka_bootstrap, registry_url, topic)
        legacy.run("ALTER TABLE orders ALTER COLUMN qty TYPE bigint")
        legacy.run(f"UPDATE orders SET qty = {2**40}, updated_at = {legacy.now} WHERE id = 1")
        legacy.insert_order(100, qty=7)
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=WARM_UP + 2)
        assert daemon.status("legacy").state == "running", daemon.status("legacy").error
    assert [(r["key"]["id"], r["value"]["qty"]) for r in records[WARM_UP:]] == [(1, 2**40), (100, 7)]
    latest = RegistryClient(registry_url).latest(f"{topic}-value")
    assert latest is not None and latest[1] == 2, "the widened shape is the subject's second version"
    qty = next(f for f in latest[2]["fields"] if f["name"] == "qty")
    assert qty["type"] == "long"


def test_an_incompatible_type_change_stops_with_the_registrys_refusal(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    legacy = LegacyDb(pg_url, "postgresql")
    legacy.create_orders()
    topic = f"{legacy.prefix}.public.orders"
    with DaemonThread(_config(legacy, tmp_path, kafka_bootstrap, registry_url)) as daemon:
        _warm_up(legacy, kafka_bootstrap, registry_url, topic)
        legacy.run("ALTER TABLE orders ALTER COLUMN qty TYPE text")
        legacy.run(f"UPDATE orders SET qty = 'many', updated_at = {legacy.now} WHERE id = 1")
        assert daemon.wait(30) == 1
        status = daemon.status("legacy")
    assert status.state == "failed"
    assert "refused the new schema" in status.error and "field qty" in status.error, status.error
    assert "cached plan" not in status.error
    assert len(read_topic(kafka_bootstrap, registry_url, topic)) == WARM_UP  # nothing with the new shape
