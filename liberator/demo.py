"""`liberator demo`: the main job end to end on embedded defaults.

A SQLite "legacy" shop database with sample rows, the embedded Kafka-protocol broker and schema
registry, the daemon running the query source, an application thread changing rows, and a live view
of the events as they arrive. The same daemon runs the SQL sink, writing the stream into a second SQLite
database (a "replica" a legacy reporting tool could read). At the end it checks that the topics agree
with the database, and compares the two databases row by row.
"""

from __future__ import annotations

import datetime as dt
import decimal
import random
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import Consumer

from liberator.config import load_config
from liberator.runtime import Daemon
from liberator.tail import RecordDecoder

SCHEMA = """
CREATE TABLE customers (
  id INTEGER PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  email VARCHAR(200),
  updated_at DATETIME NOT NULL
);
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(id),
  status VARCHAR(20) NOT NULL,
  total NUMERIC(10, 2) NOT NULL,
  placed_on DATE NOT NULL,
  updated_at DATETIME NOT NULL
);
CREATE INDEX orders_cursor ON orders (updated_at, id);
CREATE INDEX customers_cursor ON customers (updated_at, id);
"""

CONFIG = """\
name: demo-shop
kafka:
  bootstrap_servers: {bootstrap}
schema_registry:
  url: {registry}
offsets:
  store: file
  path: {workdir}/offsets.json
  flush_interval: 500ms
sources:
  - name: legacy
    type: query
    url: sqlite:///{workdir}/shop.db
    tables: [customers, orders]
    cursor: [updated_at, id]
    poll_interval: 500ms
    safety_delay: 1s
sinks:
  - name: replica
    type: sql
    url: sqlite:///{workdir}/replica.db
    topics: [legacy.main.customers, legacy.main.orders]
    create: true
    batch: {{size: 500, time: 300ms}}
    consumer: {{settings: {{session.timeout.ms: 6000, fetch.wait.max.ms: 10}}}}
"""

NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken"]
STATUSES = ["placed", "paid", "packed", "shipped", "delivered"]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def seed(db_path: Path, rng: random.Random) -> None:
    with sqlite3.connect(db_path) as db:
        db.executescript(SCHEMA)
        for i, name in enumerate(NAMES, start=1):
            db.execute("INSERT INTO customers VALUES (?, ?, ?, ?)", (i, name, f"{name.lower()}@example.com", _now()))
        for i in range(1, 41):
            total = decimal.Decimal(rng.randint(500, 50000)) / 100
            db.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
                (
                    i,
                    rng.randint(1, len(NAMES)),
                    rng.choice(STATUSES[:2]),
                    str(total),
                    dt.date(2026, 1, 1 + i % 28).isoformat(),
                    _now(),
                ),
            )


class LegacyApp(threading.Thread):
    """Stands in for the legacy application: places orders and moves them along, as it always has."""

    def __init__(self, db_path: Path, rng: random.Random, stop: threading.Event) -> None:
        super().__init__(name="legacy-app", daemon=True)
        self.db_path, self.rng, self.stop = db_path, rng, stop
        self.changes = 0

    def run(self) -> None:
        db = sqlite3.connect(self.db_path)
        next_id = 41
        while not self.stop.wait(0.4):
            with db:
                if self.rng.random() < 0.4:
                    total = decimal.Decimal(self.rng.randint(500, 50000)) / 100
                    db.execute(
                        "INSERT INTO orders VALUES (?, ?, 'placed', ?, ?, ?)",
                        (
                            next_id,
                            self.rng.randint(1, len(NAMES)),
                            str(total),
                            dt.date.today().isoformat(),
                            _now(),
                        ),
                    )
                    next_id += 1
                else:
                    order_id = self.rng.randint(1, next_id - 1)
                    status = db.execute("SELECT status FROM orders WHERE id = ?", (order_id,)).fetchone()[0]
                    if status != STATUSES[-1]:
                        new = STATUSES[STATUSES.index(status) + 1]
                        db.execute(
                            "UPDATE orders SET status = ?, updated_at = ? WHERE id = ?",
                            (new, _now(), order_id),
                        )
            self.changes += 1
        db.close()


def _describe(record: dict[str, Any]) -> str:
    table = record["topic"].rsplit(".", 1)[-1]
    value = record["value"] or {}
    key = ",".join(f"{k}={v}" for k, v in (record["key"] or {}).items())
    if table == "orders":
        detail = f"status={value.get('status'):<9} total={value.get('total'):>8} customer={value.get('customer_id')}"
    else:
        detail = f"name={value.get('name')} email={value.get('email')}"
    where = f"(partition {record['partition']} offset {record['offset']})"
    return f"{record['timestamp'][11:23]}  {table:<9} {key:<7} {detail}  {where}"


def run_demo(duration: float = 20.0, workdir: str | None = None, out: TextIO = sys.stdout) -> int:
    from liberator.embedded.broker import EmbeddedBroker
    from liberator.embedded.registry.server import RegistryServer

    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="liberator-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    db_path = base / "shop.db"
    replica_path = base / "replica.db"
    for stale in (db_path, replica_path):
        stale.unlink(missing_ok=True)
    (base / "offsets.json").unlink(missing_ok=True)
    rng = random.Random(42)

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    say(f"== liberator demo in {base}")
    seed(db_path, rng)
    say(f"   legacy SQLite database {db_path}: {len(NAMES)} customers, 40 orders")
    with EmbeddedBroker() as broker, RegistryServer(port=0, data_path=str(base / "registry.db")) as registry:
        say(f"   embedded Kafka-protocol broker at {broker.bootstrap_servers}, schema registry at {registry.url}")
        config_path = base / "liberator.yaml"
        config_path.write_text(CONFIG.format(bootstrap=broker.bootstrap_servers, registry=registry.url, workdir=base))
        say(f"   config {config_path}; daemon starting (snapshot first, then polling every 500ms)")
        daemon = Daemon(load_config(config_path))
        daemon_thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
        daemon_thread.start()

        stop_app = threading.Event()
        app = LegacyApp(db_path, rng, stop_app)
        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap_servers,
                "group.id": "liberator-demo-view",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
                "session.timeout.ms": 6000,
            }
        )
        topics = ["legacy.main.customers", "legacy.main.orders"]
        decoder = RecordDecoder(registry.url)
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        seen = 0
        try:
            deadline_snapshot = time.monotonic() + 30
            while not all(t in consumer.list_topics(timeout=5).topics for t in topics):
                if time.monotonic() > deadline_snapshot:
                    say("!! the daemon published nothing within 30s; see the log above")
                    return 1
                time.sleep(0.2)
            consumer.subscribe(topics)
            say(f"== events as they arrive (the legacy app changes rows for {duration:.0f}s)")
            app.start()
            end = time.monotonic() + duration
            quiet_since = None
            while True:
                if time.monotonic() >= end and not stop_app.is_set():
                    stop_app.set()
                    app.join()
                    say(f"== the legacy app stopped after {app.changes} changes; waiting for the last events")
                    quiet_since = time.monotonic()
                message = consumer.poll(0.2)
                if message is None or message.error():
                    if quiet_since is not None and time.monotonic() - quiet_since > 3.0:
                        break
                    continue
                record = decoder.decode(message)
                latest[(record["topic"], str(record["key"]))] = record["value"]
                seen += 1
                say("   " + _describe(record))
                if quiet_since is not None:
                    quiet_since = time.monotonic()
            say(f"== the SQL sink writes the same stream into {replica_path}")
            replica_ok = _wait_for_replica(db_path, replica_path, 30.0)
        finally:
            stop_app.set()
            consumer.close()
            daemon.stop.set()
            daemon_thread.join(timeout=60)
        topics_ok = _summarise(db_path, latest, seen, say) == 0
        replica_ok = _compare_replica(db_path, replica_path, say) and replica_ok
        return 0 if topics_ok and replica_ok else 1


def _summarise(db_path: Path, latest: dict[tuple[str, str], dict[str, Any]], seen: int, say: Any) -> int:
    with sqlite3.connect(db_path) as db:
        orders = {row[0]: row for row in db.execute("SELECT id, status, total FROM orders")}
        customers = db.execute("SELECT count(*) FROM customers").fetchone()[0]
    topic_orders = {k: v for k, v in latest.items() if k[0].endswith(".orders")}
    mismatched = 0
    for order_id, status, total in orders.values():
        value = topic_orders.get(("legacy.main.orders", str({"id": order_id})))
        if value is None or value["status"] != status or decimal.Decimal(value["total"]) != decimal.Decimal(str(total)):
            mismatched += 1
    say(
        f"== {seen} events; database: {len(orders)} orders, {customers} customers; "
        f"topics: {len(topic_orders)} order keys"
    )
    if mismatched:
        say(f"!! {mismatched} orders differ between the database and the topic")
        return 1
    say("== every order's latest event matches the database: the legacy table is liberated")
    return 0


TABLES = {"customers": "id, name, email, updated_at", "orders": "id, customer_id, status, total, placed_on, updated_at"}


def _rows(path: Path, table: str) -> dict[int, tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        try:
            return {row[0]: row for row in db.execute(f"SELECT {TABLES[table]} FROM {table} ORDER BY id")}
        except sqlite3.OperationalError:  # the sink has not created the table yet
            return {}


def _wait_for_replica(source: Path, replica: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_rows(source, t) == _rows(replica, t) for t in TABLES):
            return True
        time.sleep(0.3)
    return False


def _compare_replica(source: Path, replica: Path, say: Any) -> bool:
    """Both databases, row by row: every row of the legacy tables must be in the replica, equal."""
    say(f"== {source.name} and {replica.name}, row by row")
    agree = True
    for table in TABLES:
        left, right = _rows(source, table), _rows(replica, table)
        same = sum(1 for key, row in left.items() if right.get(key) == row)
        differ = sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))
        for key in list(left)[:3]:
            mark = "=" if right.get(key) == left[key] else "!"
            say(f"   {table:<9} {mark} {left[key]}")
        say(f"   {table:<9} {len(left)} rows in {source.name}, {len(right)} in {replica.name}, {same} identical")
        if differ:
            agree = False
            for key in differ[:5]:
                say(f"!! {table} id {key}: {left.get(key)} vs {right.get(key)}")
    if agree:
        say("== both databases agree, row for row: the stream went out and came back intact")
    else:
        say("!! the replica differs from the legacy database (see above)")
    return agree
