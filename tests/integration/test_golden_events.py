"""Golden output: every source kind and envelope publishes exactly the records it published before.

Each scenario runs the daemon over a fixed script of database changes and reads every record of its
topics. What depends on the run (schema ids, LSNs and binlog coordinates, transaction ids, wall-clock and
commit times, the server's address) is replaced by a symbol in order of first appearance; everything else
-- topics, key and value bodies, schemas, headers, record timestamps that are data, the shape of the stored
positions -- must equal tests/golden/<scenario>.json. The value body is also re-encoded from the decoded
datum with plain fastavro and must be byte-identical, so an encoder that writes other bytes for the same
datum is caught too.

Refresh the files after an *intended* change of output: LIBERATOR_GOLDEN_UPDATE=1 scripts/test -k golden
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import io
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from liberator.avro import unframe
from liberator.registry.client import RegistryClient
from liberator_testbed import MySQLInstance
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_outbox_support import ORDER_SCHEMA
from tests.support import DaemonThread, app_config, wait_for

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
UPDATE = os.environ.get("LIBERATOR_GOLDEN_UPDATE") == "1"


# --- reading and normalising ---------------------------------------------------------------------


class Symbols:
    """Run-dependent values -> stable symbols, numbered per kind in order of first appearance."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[Any, str]] = {}

    def __call__(self, kind: str, value: Any) -> Any:
        if value is None:
            return None
        table = self._seen.setdefault(kind, {})
        key = json.dumps(value, sort_keys=True, default=str)
        if key not in table:
            table[key] = f"<{kind}{len(table) + 1}>"
        return table[key]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode()}
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return {type(value).__name__: value.isoformat()}
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float):
        return {"float": repr(value)}
    return value


class Window:
    """Wall-clock times of the run: a time inside it is replaced by a symbol, anything else is data."""

    def __init__(self) -> None:
        self.start_ms = int(time.time() * 1000) - 5_000

    def contains(self, ms: Any) -> bool:
        return isinstance(ms, int) and self.start_ms <= ms <= int(time.time() * 1000) + 5_000


def _normalise_envelope(value: dict[str, Any], sym: Symbols, window: Window) -> dict[str, Any]:
    out = dict(value)
    assert window.contains(out["ts_ms"]), f"ts_ms {out['ts_ms']} is not the time of the run"
    out["ts_ms"] = "<now>"
    source = dict(out["source"])
    source["server"] = "<server>"
    source["position"] = sym("pos", source["position"])
    if source["commit_ms"] is not None:
        assert window.contains(source["commit_ms"]), f"commit_ms {source['commit_ms']} is not the time of the run"
        source["commit_ms"] = "<commit>"
    out["source"] = source
    if out["transaction"] is not None:
        out["transaction"] = {**out["transaction"], "id": sym("txn", out["transaction"]["id"])}
    return out


_RUN_KEYS = {"lsn", "file", "pos", "gtid", "at", "run"}  # where a stored position holds a point of this run's log
_LSN = re.compile(r"^[0-9A-F]+/[0-9A-F]+$")


def _positions(document: Any, sym: Symbols, run_dependent: bool = False) -> Any:
    """A stored position with its run-dependent leaves (LSNs, binlog coordinates, GTIDs) replaced by their type."""
    if isinstance(document, dict):
        return {k: _positions(v, sym, run_dependent or k in _RUN_KEYS) for k, v in sorted(document.items())}
    if isinstance(document, list):
        return [_positions(v, sym, run_dependent) for v in document]
    if isinstance(document, bool) or document is None:
        return document
    if run_dependent or (isinstance(document, str) and _LSN.match(document)):
        return f"<{type(document).__name__}>"
    return document


def read_records(
    bootstrap: str, registry: RegistryClient, topics: list[str], sym: Symbols, window: Window
) -> dict[str, list[dict[str, Any]]]:
    """Every record of each (single-partition) topic, in offset order, normalised."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "golden", "enable.auto.commit": False})
    schemas: dict[int, dict[str, Any]] = {}
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        for topic in topics:
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
            records: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            quiet_since = time.monotonic()
            while time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is None or message.error():
                    # Tansu's high watermark is not reliable: stop once the topic is quiet for a while.
                    if time.monotonic() - quiet_since > 2.0 and len(records) >= min(high, 1):
                        break
                    continue
                quiet_since = time.monotonic()
                records.append(_record(message, registry, schemas, sym, window))
            out[topic] = records
    finally:
        consumer.close()
    return out


def _record(
    message: Any, registry: RegistryClient, schemas: dict[int, dict[str, Any]], sym: Symbols, window: Window
) -> dict[str, Any]:
    def body(data: bytes | None, part: str) -> Any:
        if data is None:
            return None
        schema_id, payload = unframe(data)
        if schema_id not in schemas:
            schemas[schema_id] = registry.get_schema(schema_id)
        schema = schemas[schema_id]
        parsed = fastavro.parse_schema(schema)
        datum = fastavro.schemaless_reader(io.BytesIO(payload), parsed, None)
        again = io.BytesIO()
        fastavro.schemaless_writer(again, parsed, datum)
        assert again.getvalue() == payload, f"{part} bytes differ from fastavro's encoding of the same datum"
        return {"schema": sym("schema", schema), "datum": datum, "hex": payload.hex()}

    key = body(message.key(), "key")
    value = body(message.value(), "value")
    timestamp = message.timestamp()[1]
    if value is not None and isinstance(value["datum"], dict) and "ts_ms" in value["datum"]:
        commit = value["datum"]["source"]["commit_ms"]
        value["datum"] = _normalise_envelope(value["datum"], sym, window)
        value["hex"] = "<envelope>"  # holds ts_ms; the datum and the re-encoding check cover the bytes
        timestamp = "=commit_ms" if timestamp == commit else timestamp
    if window.contains(timestamp):
        timestamp = "<now>"
    return {
        "key": None if key is None else {**key, "datum": _jsonable(key["datum"])},
        "value": None if value is None else {**value, "datum": _jsonable(value["datum"])},
        "timestamp": timestamp,
        "headers": [[k, None if v is None else v.decode("utf-8", "replace")] for k, v in (message.headers() or [])],
    }


def compare(name: str, got: dict[str, Any], sym: Symbols, registry: RegistryClient) -> None:
    schema_table = {symbol: json.loads(text) for text, symbol in sym._seen.get("schema", {}).items()}
    document = {"records": got["records"], "positions": got["positions"], "schemas": schema_table}
    text = json.dumps(document, indent=1, sort_keys=True, default=str) + "\n"
    path = GOLDEN / f"{name}.json"
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"{path} is missing; run with LIBERATOR_GOLDEN_UPDATE=1 to write it")
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return
    expected = json.loads(path.read_text())
    actual = json.loads(text)
    for section in ("schemas", "positions"):
        assert actual[section] == expected[section], f"{name}: {section} differ from {path}"
    for topic, records in expected["records"].items():
        got_records = actual["records"].get(topic)
        assert got_records is not None, f"{name}: topic {topic} is missing"
        assert len(got_records) == len(records), f"{name}: {topic} has {len(got_records)} records, not {len(records)}"
        for index, (a, e) in enumerate(zip(got_records, records, strict=True)):
            assert a == e, f"{name}: {topic} record {index} differs from {path}"
    assert set(actual["records"]) == set(expected["records"]), f"{name}: other topics than in {path}"


def run_scenario(
    config: Path,
    bootstrap: str,
    registry_url: str,
    topics: list[str],
    source: str,
    changes: Any,
    settled: Any,
) -> dict[str, Any]:
    sym = Symbols()
    window = Window()
    with DaemonThread(config) as daemon:
        wait_for(
            lambda: _phase(daemon, source) in ("streaming", "polling", "publishing", "done"),
            60,
            what=f"{source} to stream",
        )
        changes()
        wait_for(lambda: settled(daemon), timeout=60, what="every change published")
        wait_for(lambda: daemon.positions_settled(source), timeout=60, what="positions stored")
        position = daemon.status(source).position
    with RegistryClient(registry_url) as registry:
        records = read_records(bootstrap, registry, topics, sym, window)
    return {"records": records, "positions": _positions(position, sym), "sym": sym}


def _phase(daemon: DaemonThread, source: str) -> str | None:
    runner = next((r for r in daemon.daemon.runners if r.config.name == source), None)
    return None if runner is None else str(runner.source.phase)  # no runner until the daemon has built them


def _acked(daemon: DaemonThread, source: str, count: int) -> bool:
    """At least `count` events acknowledged, none in flight, and no new one for a second (nothing more coming)."""
    status = daemon.status(source)
    now = (status.events_acked, status.events_published)
    previous = _last_counts.get(source)
    _last_counts[source] = (*now, previous[2] if previous and previous[:2] == now else time.monotonic())
    return now[0] >= count and now[0] == now[1] and time.monotonic() - _last_counts[source][2] > 1.0


_last_counts: dict[str, tuple[int, int, float]] = {}


# --- PostgreSQL WAL --------------------------------------------------------------------------------

PG_TABLES = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE items (
  id int PRIMARY KEY,
  name text NOT NULL,
  amount numeric(10, 2),
  big numeric,
  at timestamptz,
  local timestamp(3),
  day date,
  flag boolean,
  data jsonb,
  tags text[],
  ident uuid,
  feeling mood,
  blob bytea,
  secret text,
  note text
);
CREATE TABLE fullrows (id int PRIMARY KEY, v int NOT NULL, w text);
ALTER TABLE fullrows REPLICA IDENTITY FULL;
"""

PG_SNAPSHOT_ROWS = """
INSERT INTO items VALUES
 (1, 'one', 1.50, 123456789012345678901234567890.5, '2024-01-02 03:04:05.678901+00', '2024-01-02 03:04:05.678',
  '2024-01-02', true, '{"a": [1, 2]}', '{x,y}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', '\\x00ff', 's1', NULL),
 (2, 'two', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 's2', 'n');
INSERT INTO fullrows VALUES (1, 10, 'a'), (2, 20, NULL);
"""


def _pg_changes(db: WalDb) -> None:
    db.run("INSERT INTO items (id, name, amount, flag) VALUES (3, 'three', -0.01, false)")
    with db.conn.transaction():
        db.run("UPDATE items SET amount = 2.25, tags = '{}' WHERE id = 1")
        db.run("INSERT INTO fullrows VALUES (3, 30, 'c')")
        db.run("UPDATE fullrows SET v = 11 WHERE id = 1")
    db.run("UPDATE items SET id = 20 WHERE id = 2")  # a key change: delete + create
    db.run("DELETE FROM fullrows WHERE id = 2")
    db.run("DELETE FROM items WHERE id = 3")
    # An unchanged TOASTed value (default replica identity): the placeholder and its header.
    big = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(400))  # incompressible, fixed
    db.run("INSERT INTO items (id, name, note) VALUES (4, 'toast', %s)", (big,))
    db.run("UPDATE items SET name = 'toasted' WHERE id = 4")
    db.run("TRUNCATE fullrows")


@pytest.mark.parametrize("envelope", ["change", "state"])
def test_postgres_wal_output_is_unchanged(
    envelope: str, pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    db = WalDb(pg_url)
    for statement in PG_TABLES.split(";\n"):
        if statement.strip():
            db.run(statement)
    db.run(PG_SNAPSHOT_ROWS)
    source = f"gwal_{envelope}"
    truncate = "publish" if envelope == "change" else "warn"
    yaml = (
        f"  - name: {source}\n    type: postgres_wal\n    url: {db.url}\n    tables: [items, fullrows]\n"
        f"    slot: {db.tag}\n    publication: {db.tag}\n    envelope: {envelope}\n    truncate: {truncate}\n"
        "    status_interval: 200ms\n    exclude: {items: [secret]}\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, yaml, name="golden")
    topics = [f"{source}.public.items", f"{source}.public.fullrows"]
    # change: 4 snapshot + 10 streamed + 3 tombstones + 1 truncate; state: 4 + 7 + 3 tombstones
    expected = 18 if envelope == "change" else 14
    got = run_scenario(
        config, kafka_bootstrap, registry_url, topics, source, lambda: _pg_changes(db),
        lambda d: _acked(d, source, expected),
    )  # fmt: skip
    with RegistryClient(registry_url) as registry:
        compare(f"postgres_wal_{envelope}", got, got["sym"], registry)


# --- MySQL / MariaDB binlog ------------------------------------------------------------------------


@pytest.fixture
def golden_mysql_db(mariadb_server: MySQLInstance, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"golden_{request.node.callspec.params['envelope']}"
    mariadb_server.execute(f"DROP DATABASE IF EXISTS `{name}`")
    mariadb_server.create_database(name)
    yield name
    mariadb_server.drop_database(name)


MYSQL_TABLES = [
    "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, amount DECIMAL(10,2),"
    " at DATETIME(6), day DATE, flag TINYINT(1), data JSON, size ENUM('s','m','l'), opts SET('a','b','c'),"
    " blob_ BLOB, big BIGINT UNSIGNED, ratio DOUBLE, tiny TINYINT UNSIGNED, secret VARCHAR(10))",
    "CREATE TABLE pairs (a INT, b VARCHAR(10), v INT NOT NULL, PRIMARY KEY (a, b))",
]


def _mysql_changes(server: MySQLInstance, db: str) -> None:
    run = lambda sql: server.execute(sql, database=db)  # noqa: E731
    run("INSERT INTO items (id, name, amount, flag) VALUES (3, 'three', -0.01, 0)")
    conn = server.connect(db)
    try:
        with conn.cursor() as cur:  # one transaction of three changes
            cur.execute("UPDATE items SET amount = 2.25, opts = '' WHERE id = 1")
            cur.execute("INSERT INTO pairs VALUES (3, 'z', 30)")
            cur.execute("UPDATE pairs SET v = 11 WHERE a = 1")
        conn.commit()
    finally:
        conn.close()
    run("UPDATE items SET id = 20 WHERE id = 2")
    run("DELETE FROM pairs WHERE a = 2")
    run("DELETE FROM items WHERE id = 3")
    run("TRUNCATE pairs")


@pytest.mark.parametrize("envelope", ["change", "state"])
def test_mysql_binlog_output_is_unchanged(
    envelope: str,
    golden_mysql_db: str,
    mariadb_server: MySQLInstance,
    tmp_path: Path,
    kafka_bootstrap: str,
    registry_url: str,
) -> None:
    db = golden_mysql_db
    for statement in MYSQL_TABLES:
        mariadb_server.execute(statement, database=db)
    mariadb_server.execute(
        "INSERT INTO items VALUES (1, 'one', 1.50, '2024-01-02 03:04:05.678901', '2024-01-02', 1, '{\"a\": [1, 2]}',"
        " 'm', 'a,c', x'00ff', 18446744073709551615, 0.25, 255, 's1'),"
        " (2, 'two', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 's2')",
        database=db,
    )
    mariadb_server.execute("INSERT INTO pairs VALUES (1, 'x', 10), (2, 'y', 20)", database=db)
    source = f"gbin_{envelope}"
    truncate = "publish" if envelope == "change" else "warn"
    yaml = (
        f"  - name: {source}\n    type: mysql_binlog\n    url: {mariadb_server.url(driver=None)}\n"
        f"    tables: [{db}.items, {db}.pairs]\n    server_id: {4000 + (envelope == 'state')}\n    heartbeat: 200ms\n"
        f"    envelope: {envelope}\n    truncate: {truncate}\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, yaml, name="golden")
    topics = [f"{source}.{db}.items", f"{source}.{db}.pairs"]
    # change: 4 snapshot + 8 streamed (+3 tombstones) + 1 truncate; state: 4 + 8
    expected = 16 if envelope == "change" else 12
    got = run_scenario(
        config, kafka_bootstrap, registry_url, topics, source, lambda: _mysql_changes(mariadb_server, db),
        lambda d: _acked(d, source, expected),
    )  # fmt: skip
    with RegistryClient(registry_url) as registry:
        compare(f"mysql_binlog_{envelope}", got, got["sym"], registry)


# --- query and outbox (PostgreSQL) ---------------------------------------------------------------


def test_query_source_output_is_unchanged(pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str) -> None:
    db = WalDb(pg_url)
    db.run(
        "CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, total numeric(10, 2), qty int,"
        " updated_at timestamp(6) NOT NULL, secret text)"
    )
    db.run(
        "INSERT INTO orders VALUES (1, 'ann', 9.99, 1, '2024-03-01 10:00:00', 'x'), (2, 'bob', NULL, NULL,"
        " '2024-03-01 10:00:00', 'y'), (3, 'cy', 0.5, 3, '2024-03-01 09:00:00.5', 'z')"
    )
    source = "gquery"
    yaml = (
        f"  - name: {source}\n    type: query\n    url: {pg_url}\n"
        "    tables: [{table: orders, exclude: [secret]}]\n    cursor: [updated_at, id]\n"
        "    poll_interval: 100ms\n    safety_delay: 0s\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, yaml, name="golden")

    def changes() -> None:
        db.run("UPDATE orders SET qty = 5, updated_at = '2024-03-02 00:00:00' WHERE id = 2")
        db.run("INSERT INTO orders VALUES (4, 'dee', 1, 1, '2024-03-02 00:00:01', 'w')")

    got = run_scenario(
        config, kafka_bootstrap, registry_url, [f"{source}.public.orders"], source, changes,
        lambda d: _acked(d, source, 5),
    )  # fmt: skip
    with RegistryClient(registry_url) as registry:
        compare("query", got, got["sym"], registry)


def test_outbox_source_output_is_unchanged(
    pg_url: str, postgres_server: Any, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    from liberator.connectors.outbox.ddl import outbox_ddl

    db = WalDb(pg_url)
    for statement in outbox_ddl("postgresql", payload="json", cleanup="delete").split(";\n\n"):
        db.run(statement.strip().rstrip(";"))
    db.run("ALTER TABLE outbox ADD COLUMN headers text")
    topic = "goutbox.order"
    with RegistryClient(registry_url) as registry:
        registry.register(f"{topic}-value", ORDER_SCHEMA)
    rows = [
        ("17", "OrderPlaced", {"order_id": 17, "total": "12.50"}, '{"trace": "abc"}'),
        ("18", "OrderPlaced", {"order_id": 18, "total": 3, "note": "gift"}, None),
        ("17", "OrderPaid", {"order_id": 17, "total": "0.99"}, None),
    ]
    for aggregate, event_type, payload, headers in rows:
        db.run(
            "INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload, occurred_at, headers)"
            " VALUES ('order', %s, %s, %s, '2024-05-06 07:08:09.123', %s)",
            (aggregate, event_type, json.dumps(payload), headers),
        )
    source = "goutbox"
    yaml = (
        f"  - name: {source}\n    type: outbox\n    url: {pg_url}\n"
        '    topic: "goutbox.{aggregate_type}"\n    columns: {headers: headers}\n    poll_interval: 100ms\n'
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, yaml, name="golden")
    got = run_scenario(
        config, kafka_bootstrap, registry_url, [topic], source, lambda: None, lambda d: _acked(d, source, 3)
    )
    # Outbox ids come from a sequence: the same in every fresh database, so headers stay as they are.
    with RegistryClient(registry_url) as registry:
        compare("outbox", got, got["sym"], registry)


def test_symbols_number_values_per_kind_in_order_of_first_appearance() -> None:
    sym = Symbols()
    assert [sym("pos", "0/1"), sym("pos", "0/2"), sym("pos", "0/1"), sym("txn", "0/1")] == [
        "<pos1>",
        "<pos2>",
        "<pos1>",
        "<txn1>",
    ]
    assert sym("pos", None) is None
