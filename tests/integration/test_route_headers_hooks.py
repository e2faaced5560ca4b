"""`route`, `headers` and `hook` on every source kind, through the daemon against the real servers: rows reach
the topic their column's value routes them to (keys and tombstones with them, each topic's subjects in the
registry), records carry the declared headers (tombstones too), a hook's output is what is published and
registered, and a hook that raises stops the source with one line naming the hook and the table."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from liberator.registry.client import RegistryClient
from tests.integration.postgres_wal_support import WalDb
from tests.integration.test_mysql_binlog_helpers import source_yaml as binlog_yaml
from tests.support import DaemonThread, app_config, cli, fold_by_key, read_topic, wait_for

SOURCES = ["postgres_wal", "mysql_binlog", "query"]


@dataclass
class Bed:
    """One source kind's database with an `orders` table, and the YAML of a source capturing it."""

    kind: str
    prefix: str  # the source's topics are {prefix}.{table}
    source: str  # the source's name
    run: Callable[[str], None]
    yaml: Callable[[dict[str, Any]], str]  # the source block, with these transforms of `orders`
    now: str  # the SQL of the current time (the query source's cursor needs updated_at set)

    @property
    def deletes(self) -> bool:
        return self.kind != "query"  # polling sees no deletes and no old rows

    def write(self, *statements: str) -> None:
        for statement in statements:
            self.run(statement.replace("{now}", self.now))


def make_bed(kind: str, request: pytest.FixtureRequest) -> Bed:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    if kind == "mysql_binlog":
        server = request.getfixturevalue("mariadb_server")
        database = request.getfixturevalue("mysql_url").rsplit("/", 1)[-1]
        server.execute(
            "CREATE TABLE orders (id INT PRIMARY KEY, region VARCHAR(20), status VARCHAR(20) NOT NULL, total INT,"
            " note TEXT, updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
            database=database,
        )

        def binlog(transforms: dict[str, Any]) -> str:
            extra = "".join(
                f"    {name}: {json.dumps({f'{database}.orders': rule})}\n" for name, rule in transforms.items()
            )
            return binlog_yaml(server, f"[{database}.orders]", prefix, extra).replace(
                f'"{prefix}.{{schema}}.{{table}}"', f'"{prefix}.{{table}}"'
            )

        return Bed(kind, prefix, "cdc", lambda sql: server.execute(sql, database=database), binlog, "now(6)")
    pg_url = request.getfixturevalue("pg_url")
    db = WalDb(pg_url)
    db.run(
        "CREATE TABLE orders (id int PRIMARY KEY, region text, status text NOT NULL, total int, note text,"
        " updated_at timestamptz NOT NULL DEFAULT now())"
    )
    db.run("ALTER TABLE orders REPLICA IDENTITY FULL")
    if kind == "postgres_wal":

        def wal(transforms: dict[str, Any]) -> str:
            extra = "".join(f"    {name}: {json.dumps({'public.orders': rule})}\n" for name, rule in transforms.items())
            return (
                f"  - name: wal\n    type: postgres_wal\n    url: {db.url}\n    tables: [orders]\n"
                f'    slot: {db.tag}\n    publication: {db.tag}\n    topic: "{prefix}.{{table}}"\n{extra}'
            )

        return Bed(kind, prefix, "wal", db.run, wal, "now()")

    def query(transforms: dict[str, Any]) -> str:
        entry = json.dumps({"table": "orders", **transforms})
        return (
            f"  - name: q\n    type: query\n    url: {pg_url}\n    tables: [{entry}]\n"
            "    cursor: [updated_at, id]\n    poll_interval: 100ms\n    safety_delay: 0s\n"
            f'    topic: "{prefix}.{{table}}"\n'
        )

    return Bed(kind, prefix, "q", db.run, query, "now()")


def _start(bed: Bed, daemon: DaemonThread) -> None:
    """Wait until a CDC source streams: what is written from then on arrives as changes, not snapshot reads."""
    if bed.deletes:
        wait_for(lambda: daemon.status(bed.source).phase == "streaming", what="streaming")


def _folded(bootstrap: str, registry: str, topic: str) -> dict[int, Any]:
    return fold_by_key(read_topic(bootstrap, registry, topic))


@pytest.mark.parametrize("kind", SOURCES)
def test_route_by_column_sends_rows_and_their_deletes_to_the_mapped_topics(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    bed = make_bed(kind, request)
    p = bed.prefix
    rule = {"by": "region", "topics": {"eu": f"{p}.orders.eu", "us": f"{p}.orders.us"}, "default": "{table}.other." + p}
    config = app_config(tmp_path, kafka_bootstrap, registry_url, bed.yaml({"route": rule}))
    eu, us, other = f"{p}.orders.eu", f"{p}.orders.us", f"orders.other.{p}"
    with DaemonThread(config) as daemon:
        _start(bed, daemon)
        bed.write(
            "INSERT INTO orders (id, region, status, total) VALUES (1, 'eu', 'paid', 1), (2, 'us', 'paid', 2),"
            " (3, 'asia', 'paid', 3), (4, 'us', 'paid', 4)"
        )
        wait_for(lambda: set(_folded(kafka_bootstrap, registry_url, other)) == {3}, what="the default topic")
        bed.write("UPDATE orders SET region = 'us', updated_at = {now} WHERE id = 1")  # moves to us
        if bed.deletes:
            bed.write("DELETE FROM orders WHERE id = 4")
        # Where the source has old rows, the moved row leaves eu (a delete and a tombstone) and the delete
        # reaches the topic its row was in; the query source has neither (documented).
        expected_us = {1, 2} if bed.deletes else {1, 2, 4}
        wait_for(lambda: set(_folded(kafka_bootstrap, registry_url, us)) == expected_us, what="the us topic")
        wait_for(lambda: set(_folded(kafka_bootstrap, registry_url, eu)) == (set() if bed.deletes else {1}), what="eu")
        if bed.deletes:
            records = read_topic(kafka_bootstrap, registry_url, eu)
            ops = [r["value"] and r["value"]["op"] for r in records]
            assert ops == ["c", "d", None], ops
    subjects = set(RegistryClient(registry_url).subjects())
    for topic in (eu, us, other):
        assert {f"{topic}-key", f"{topic}-value"} <= subjects
    assert f"{p}.orders-value" not in subjects  # nothing went to the table's own topic
    # `liberator schemas` shows (and `--check` checks) the routed topics' subjects, not the table's own topic.
    shown = cli("schemas", str(config))
    assert shown.returncode == 0, shown.stderr
    assert {stream["topic"] for stream in json.loads(shown.stdout)} == {eu, us, other}
    checked = cli("schemas", str(config), "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("kind", SOURCES)
def test_headers_static_and_from_columns_with_a_route_by_template(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    bed = make_bed(kind, request)
    transforms = {
        "route": {"topic": f"crm.{bed.prefix}.{{table}}"},
        "headers": {"static": {"app": "crm"}, "columns": {"tenant": "region", "id": "id"}},
    }
    config = app_config(tmp_path, kafka_bootstrap, registry_url, bed.yaml(transforms))
    topic = f"crm.{bed.prefix}.orders"
    with DaemonThread(config) as daemon:
        _start(bed, daemon)
        bed.write("INSERT INTO orders (id, region, status) VALUES (1, 'eu', 'paid'), (2, NULL, 'paid')")
        expected = 2
        if bed.deletes:
            bed.write("DELETE FROM orders WHERE id = 1")
            expected = 4  # and the delete and its tombstone
        records = wait_for(
            lambda: (r := read_topic(kafka_bootstrap, registry_url, topic)) and len(r) >= expected and r,
            what="the records",
        )
    by_id = sorted(records, key=lambda r: r["key"]["id"])
    headers = [r["headers"] for r in by_id if r["key"]["id"] == 2]
    assert headers == [{"app": "crm", "id": "2"}]  # a null column's header is left out
    assert all(r["headers"] == {"app": "crm", "tenant": "eu", "id": "1"} for r in by_id if r["key"]["id"] == 1)
    if bed.deletes:
        assert [r["value"] is None for r in by_id if r["key"]["id"] == 1] == [False, False, True]  # the tombstone


@pytest.mark.parametrize("kind", SOURCES)
def test_a_hook_publishes_its_output_with_the_declared_fields(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    bed = make_bed(kind, request)
    hook = {"function": "tests.transform_hooks:add_cents", "add": {"total_cents": "long"}, "drop": ["note"]}
    config = app_config(tmp_path, kafka_bootstrap, registry_url, bed.yaml({"hook": hook}))
    topic = f"{bed.prefix}.orders"
    with DaemonThread(config) as daemon:
        _start(bed, daemon)
        bed.write("INSERT INTO orders (id, region, status, total, note) VALUES (1, 'eu', 'paid', 3, 'n')")
        bed.write("INSERT INTO orders (id, region, status, total, note) VALUES (2, 'eu', 'secret', 4, 'n')")
        bed.write("INSERT INTO orders (id, region, status, total, note) VALUES (3, 'us', 'paid', 5, 'n')")
        folded = wait_for(
            lambda: (f := _folded(kafka_bootstrap, registry_url, topic)) and 3 in f and f, what="rows 1 and 3"
        )
    assert set(folded) == {1, 3}  # the hook dropped row 2
    row = folded[1]
    assert row["total_cents"] == 300 and "note" not in row
    _, _, schema = RegistryClient(registry_url).latest(f"{topic}-value") or (0, 0, {})
    text = json.dumps(schema)
    assert '"total_cents"' in text and '"note"' not in text


@pytest.mark.parametrize("kind", SOURCES)
def test_a_hook_that_raises_stops_the_source_naming_the_hook_and_the_table(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    bed = make_bed(kind, request)
    config = app_config(tmp_path, kafka_bootstrap, registry_url, bed.yaml({"hook": "tests.transform_hooks:explode"}))
    with DaemonThread(config) as daemon:
        _start(bed, daemon)
        bed.write("INSERT INTO orders (id, region, status) VALUES (1, 'eu', 'paid')")
        assert daemon.wait(60) == 1
        status = daemon.status(bed.source)
    assert status.state == "failed"
    assert status.error is not None and "\n" not in status.error
    assert "hook tests.transform_hooks:explode failed on a change of table" in status.error
    assert "orders: RuntimeError: the hook broke on purpose" in status.error
