"""on_incompatible: new_topic in the capture core: where a moved table writes (also after a restart), the
Eventifier's move on a registry refusal, the config checks, the metric and /health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from liberator.capture import CaptureSettings, Catalogue, DatumCodec, Eventifier, Op, RowChange, Txn
from liberator.capture.moves import TopicMoves, check_new_topic_template
from liberator.capture.routes import RouteRule
from liberator.capture.tables import CapturedTable
from liberator.config import load_config
from liberator.envelope import Envelope
from liberator.errors import ConfigError, IncompatibleSchemaError
from liberator.metrics import Metrics
from liberator.schema import Column, IntType, StringType, TableSchema

V1 = TableSchema("public", "orders", (Column("id", IntType(64), False), Column("qty", IntType(32), False)), ("id",))
V2 = TableSchema("public", "orders", (Column("id", IntType(64), False), Column("qty", StringType(), False)), ("id",))


def _catalogue(moves: TopicMoves, policy: Any = "new_topic") -> Catalogue:
    settings = CaptureSettings(source="shop", connector="postgres_wal", app="app", on_incompatible=policy, moves=moves)
    return Catalogue(settings)


def test_a_restart_finds_the_newest_versioned_topic_asking_the_broker_once() -> None:
    asked: list[int] = []

    def topics() -> set[str]:
        asked.append(1)
        return {"shop.public.orders", "shop.public.orders.v2", "shop.public.orders.v3", "shop.public.orders.vx"}

    moves = TopicMoves(existing=topics)
    assert moves.current("shop.public.orders") == "shop.public.orders.v3"
    assert moves.current("shop.public.items") == "shop.public.items"
    assert len(asked) == 1
    table = _catalogue(moves).table(V1)
    assert table.stream.topic == "shop.public.orders.v3"
    assert _catalogue(moves, "stop").table(V1).stream.topic == "shop.public.orders", "stop: the configured topic"


def test_each_move_takes_the_next_version_and_the_table_object_follows() -> None:
    moves = TopicMoves("{topic}-v{version}", existing=lambda: set())
    catalogue = _catalogue(moves)
    table = catalogue.table(V1)
    first = moves.move(table, "refused")
    assert (first.old_topic, first.new_topic) == ("shop.public.orders", "shop.public.orders-v2")
    assert table.stream.topic == "shop.public.orders-v2"
    assert catalogue.table(V1) is table, "the same shape on the topic it moved to: the same version"
    assert catalogue.table(V2).stream.topic == "shop.public.orders-v2"
    second = moves.move(catalogue.table(V2), "refused again")
    assert (second.old_topic, second.new_topic) == ("shop.public.orders-v2", "shop.public.orders-v3")
    assert [m.new_topic for m in moves.moves] == ["shop.public.orders-v2", "shop.public.orders-v3"]


@pytest.mark.parametrize(
    ("template", "message"),
    [("{topic}.next", "needs {version}"), ("{table}.v{version}", "uses {table}"), ("{topic", "not a valid")],
)
def test_a_new_topic_template_is_checked(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{")):
        check_new_topic_template(template)


def _eventifier(refused: set[str], moved: list[str] | None) -> Eventifier:
    def prepare(table: CapturedTable, topic: str) -> DatumCodec:
        if topic in refused:
            raise IncompatibleSchemaError(f"table {table.name}: the registry refused field qty on {topic}")
        return DatumCodec(table, topic)

    def move(table: CapturedTable, refusal: IncompatibleSchemaError) -> None:
        assert moved is not None
        moved.append(str(refusal))
        table.stream = table.stream_to(f"{table.stream.topic}.v2")

    return Eventifier(Envelope.state, prepare, lambda e: (e.key, e.value), None, move if moved is not None else None)


def test_a_refused_table_under_new_topic_is_moved_and_its_records_go_to_the_new_topic() -> None:
    moved: list[str] = []
    table = _catalogue(TopicMoves()).table(V2)
    records = _eventifier({"shop.public.orders"}, moved).records([RowChange(table, Op.create, Txn(1), after=[1, "x"])])
    assert [r[0] for r in records] == ["shop.public.orders.v2"]
    assert moved == ["table public.orders: the registry refused field qty on shop.public.orders"]


def test_under_stop_a_refusal_stops_and_nothing_moves() -> None:
    moved: list[str] = []
    table = _catalogue(TopicMoves(), "stop").table(V2)
    with pytest.raises(IncompatibleSchemaError, match="field qty"):
        _eventifier({"shop.public.orders"}, moved).records([RowChange(table, Op.create, Txn(1), after=[1, "x"])])
    assert moved == [] and table.stream.topic == "shop.public.orders"


def test_a_table_routed_by_a_column_is_not_moved_and_the_refusal_says_so() -> None:
    moves = TopicMoves()
    settings = CaptureSettings(
        source="shop",
        connector="postgres_wal",
        app="app",
        on_incompatible="new_topic",
        moves=moves,
        route={"orders": RouteRule(by="qty", topics={"x": "{table}.x"})},
        default_schema="public",
    )
    table = Catalogue(settings).table(V2)
    moved: list[str] = []
    with pytest.raises(IncompatibleSchemaError, match="does not move tables routed by a column"):
        _eventifier({"orders.x"}, moved).records([RowChange(table, Op.create, Txn(1), after=[1, "x"])])
    assert moved == []


def _config(tmp_path: Path, source: str, registry: str = "") -> Path:
    path = tmp_path / "liberator.yaml"
    path.write_text(
        "name: shop\nkafka:\n  bootstrap_servers: 127.0.0.1:9092\n"
        f"schema_registry:\n  url: http://127.0.0.1:8081\n{registry}"
        f"sources:\n{source}"
    )
    return path


def test_a_source_without_incremental_snapshots_refuses_new_topic_at_config_check(tmp_path: Path) -> None:
    outbox = (
        "  - name: events\n    type: outbox\n    url: postgresql+psycopg://u@h/db\n    on_incompatible: new_topic\n"
    )
    with pytest.raises(
        ConfigError,
        match=r":10: sources\[0\]\.on_incompatible: new_topic needs the source to read .* outbox sources",
    ):
        load_config(_config(tmp_path, outbox))


def test_mysql_binlog_takes_new_topic_per_table_for_captured_tables_only(tmp_path: Path) -> None:
    binlog = (
        "  - name: cdc\n    type: mysql_binlog\n    url: mysql://u:p@127.0.0.1:3306/\n    server_id: 7\n"
        "    tables: [shop.orders]\n    on_incompatible: new_topic\n"
        "    on_incompatible_tables: {shop.orders: stop}\n"
    )
    loaded = load_config(_config(tmp_path, binlog))
    assert loaded.sources[0].on_incompatible_tables == {"shop.orders": "stop"}  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"on_incompatible_tables: shop.items is not a captured table"):
        load_config(_config(tmp_path, binlog.replace("{shop.orders: stop}", "{shop.items: stop}")))


def test_new_topic_refuses_subjects_named_by_record(tmp_path: Path) -> None:
    wal = "  - name: wal\n    type: postgres_wal\n    url: postgresql://u@h/db\n    tables: [orders]\n"
    moving = wal + "    on_incompatible_tables: {public.orders: new_topic}\n"
    record = "  value_subject: record\n"
    with pytest.raises(ConfigError, match="needs subjects named by topic"):
        load_config(_config(tmp_path, moving, record))
    assert load_config(_config(tmp_path, wal, record)).sources[0].on_incompatible == "stop"
    assert load_config(_config(tmp_path, moving)).sources[0].moves_tables()


def test_a_move_is_in_the_metric_and_in_health() -> None:
    metrics = Metrics("app")
    status = metrics.source("wal", "postgres_wal")
    table = _catalogue(TopicMoves()).table(V2)
    status.topic_moves.append(TopicMoves().move(table, "refused: field qty"))
    assert (
        'liberator_source_topic_moves_total{app="app",source="wal",type="postgres_wal",table="public.orders",'
        'old_topic="shop.public.orders",new_topic="shop.public.orders.v2"} 1'
    ) in metrics.prometheus()
    (shown,) = metrics.health()["sources"]["wal"]["topic_moves"]
    assert shown["old_topic"] == "shop.public.orders" and shown["new_topic"] == "shop.public.orders.v2"
    assert shown["reason"] == "refused: field qty"
