"""The mysql_binlog source in the daemon, through the real broker and registry: snapshot then stream, DDL
registering a new schema version, the state envelope, and the outbox option."""

from __future__ import annotations

import threading
from pathlib import Path

from liberator.registry.client import RegistryClient
from liberator_testbed import MySQLInstance
from tests.integration.test_mysql_binlog_helpers import (  # noqa: F401 - _binlog_db, _mysql8_server: fixtures
    _binlog_db,
    _mysql8_server,
    numbers,
    source_yaml,
)
from tests.support import DaemonThread, app_config, read_dead_letters, read_topic, wait_for


def test_snapshot_then_stream_with_concurrent_writes_and_ddl_registering_a_new_version(
    binlog_db: tuple[MySQLInstance, str], tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    server, db = binlog_db
    server.execute(f"CREATE TABLE `{db}`.orders (id INT PRIMARY KEY, total DECIMAL(10,2) NOT NULL)")
    server.execute(f"INSERT INTO orders SELECT i, i FROM ({numbers(200)}) AS s", database=db)
    extra = "    snapshot_chunk: 20\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(server, f"[{db}.orders]", db, extra))
    topic = f"{db}.{db}.orders"

    def write() -> None:  # while the snapshot runs: new rows and updates of rows it may or may not have read
        for i in range(1, 51):
            server.execute(f"INSERT INTO `{db}`.orders VALUES (%s, 1)", (200 + i,))
            server.execute(f"UPDATE `{db}`.orders SET total = total + 1000 WHERE id = %s", (i * 4,))

    with DaemonThread(config) as daemon:
        writer = threading.Thread(target=write)
        writer.start()
        writer.join()
        server.execute(f"ALTER TABLE `{db}`.orders ADD COLUMN note VARCHAR(20)")
        server.execute(f"INSERT INTO `{db}`.orders VALUES (1000, 5, 'with a note')")
        server.execute(f"DELETE FROM `{db}`.orders WHERE id = 1")
        final = {int(k): str(v) for k, v in server.execute(f"SELECT id, total FROM `{db}`.orders")}
        latest: dict[int, str | None] = {}

        def caught_up() -> bool:
            latest.clear()
            for r in read_topic(kafka_bootstrap, registry_url, topic):
                after = None if r["value"] is None else r["value"]["after"]
                if r["value"] is None or after is None:
                    latest[r["key"]["id"]] = None
                else:
                    latest[r["key"]["id"]] = after["total"]
            return {k: v for k, v in latest.items() if v is not None} == final

        wait_for(caught_up, timeout=60, interval=0.5, what="the topic to hold every row's latest version")
        wait_for(lambda: daemon.status("cdc").positions_stored > 0, what="a stored position")
    records = read_topic(kafka_bootstrap, registry_url, topic)
    per_key: dict[int, list[str]] = {}
    for r in records:
        if r["value"] is not None and r["value"]["after"] is not None:
            per_key.setdefault(r["key"]["id"], []).append(r["value"]["after"]["total"])
    for key, totals in per_key.items():  # no per-key reordering: totals only grow
        assert [float(t) for t in totals] == sorted(float(t) for t in totals), (key, totals)
    ops = [r["value"]["op"] for r in records if r["value"] is not None]
    assert ops.count("r") >= 200 and "c" in ops and "u" in ops
    first = [r["value"] and r["value"]["op"] for r in records if r["key"]["id"] == 1]
    assert first[-2:] == ["d", None]  # (partitions interleave; one key's records are in order)
    noted = next(r for r in records if r["key"]["id"] == 1000)
    assert noted["value"]["after"] == {"id": 1000, "total": "5.00", "note": "with a note"}
    assert all("note" not in r["value"]["after"] for r in records if r["value"] and r["value"]["op"] == "r")
    latest_schema = RegistryClient(registry_url).latest(f"{topic}-value")
    assert latest_schema is not None and latest_schema[1] == 2, "the shape with `note` is the second version"


def test_state_envelope_publishes_rows_and_tombstones(
    mariadb_server: MySQLInstance, mysql_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = mysql_database
    mariadb_server.execute(f"CREATE TABLE `{db}`.kv (k VARCHAR(10) PRIMARY KEY, v JSON)")
    mariadb_server.execute(f"""INSERT INTO `{db}`.kv VALUES ('a', '{{"x": 1}}')""")
    extra = "    envelope: state\n"
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(mariadb_server, f"[{db}.kv]", db, extra))
    topic = f"{db}.{db}.kv"
    with DaemonThread(config):
        read_topic(kafka_bootstrap, registry_url, topic, expect=1)
        mariadb_server.execute(f"UPDATE `{db}`.kv SET v = '[2]' WHERE k = 'a'")
        mariadb_server.execute(f"DELETE FROM `{db}`.kv WHERE k = 'a'")
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=3)
    assert [(r["key"], r["value"]) for r in records] == [
        ({"k": "a"}, {"k": "a", "v": '{"x": 1}'}),
        ({"k": "a"}, {"k": "a", "v": "[2]"}),
        ({"k": "a"}, None),
    ]


OUTBOX_DDL = (
    "CREATE TABLE `{db}`.outbox (id BIGINT AUTO_INCREMENT PRIMARY KEY, aggregate_type VARCHAR(100) NOT NULL,"
    " aggregate_id VARCHAR(100) NOT NULL, event_type VARCHAR(100) NOT NULL, payload JSON NOT NULL,"
    " occurred_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"
)


def test_outbox_inserts_become_domain_events_and_deletes_are_ignored(
    binlog_db: tuple[MySQLInstance, str], tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    server, db = binlog_db
    server.execute(f"CREATE TABLE `{db}`.orders (id INT PRIMARY KEY, status VARCHAR(20))")
    server.execute(f"INSERT INTO `{db}`.orders VALUES (0, 'old')")
    server.execute(OUTBOX_DDL.format(db=db))
    topic = f"{db}.order"
    schema = {"type": "record", "name": "OrderEvent", "fields": [{"name": "status", "type": "string"}]}
    RegistryClient(registry_url).register(f"{topic}-value", schema)
    extra = (
        f"    outbox:\n      table: {db}.outbox\n"
        f'      topic: "{db}.{{aggregate_type}}"\n'
        f'    on_error: dead_letter\n    dead_letter: {{topic: "{db}.dead.{{source}}"}}\n'
    )
    # `tables` matches the outbox table too: its rows are domain events, never row changes.
    config = app_config(tmp_path, kafka_bootstrap, registry_url, source_yaml(server, f"[{db}.*]", db, extra))
    insert = (
        f"INSERT INTO `{db}`.outbox (aggregate_type, aggregate_id, event_type, payload, occurred_at)"
        " VALUES ('order', %s, %s, %s, %s)"
    )
    with DaemonThread(config):
        read_topic(kafka_bootstrap, registry_url, f"{db}.{db}.orders", expect=1)  # streaming after the snapshot
        conn = server.connect(database=db)
        with conn.cursor() as cur:  # one application transaction: the business row, its event, the clean-up
            cur.execute("BEGIN")
            cur.execute("INSERT INTO orders VALUES (1, 'new')")
            cur.execute(insert, ("1", "created", '{"status": "new"}', "2024-05-01 12:00:00.123"))
            cur.execute("DELETE FROM outbox")
            cur.execute("COMMIT")
            cur.execute("BEGIN")
            cur.execute("UPDATE orders SET status = 'shipped' WHERE id = 1")
            cur.execute(insert, ("1", "shipped", '{"status": "shipped"}', "2024-05-02 08:00:00"))
            cur.execute(insert, ("1", "broken", '{"state": "no status field"}', "2024-05-02 08:00:01"))
            cur.execute("UPDATE outbox SET event_type = 'ignored'")
            cur.execute("COMMIT")
        conn.close()
        records = read_topic(kafka_bootstrap, registry_url, topic, expect=2)
        dead = read_dead_letters(kafka_bootstrap, f"{db}.dead.cdc", expect=1)
        rows = read_topic(kafka_bootstrap, registry_url, f"{db}.{db}.orders", expect=3)
    assert [(r["key"], r["value"], r["headers"]["event_type"]) for r in records] == [
        ("1", {"status": "new"}, "created"),
        ("1", {"status": "shipped"}, "shipped"),
    ]
    assert records[0]["timestamp"] == "2024-05-01T12:00:00.123+00:00"
    assert records[0]["headers"]["id"] == "1" and records[1]["headers"]["id"] == "2"
    assert dead[0]["value"]["after"]["event_type"] == "broken" and "status" in dead[0]["headers"]["liberator.error"]
    assert dead[0]["headers"]["liberator.table"] == f"{db}.outbox"
    assert sorted((r["key"]["id"], r["value"]["op"]) for r in rows) == [(0, "r"), (1, "c"), (1, "u")]
    no_outbox_topic = read_topic(kafka_bootstrap, registry_url, f"{db}.{db}.outbox", timeout=2)
    assert no_outbox_topic == []
