"""Pure parts of truncate handling: recognising MySQL TRUNCATE statements, and the delivery-failure line."""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka import KafkaError

from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig
from liberator.connectors.mysql_binlog.stream import BinlogStreamer
from liberator.runtime import delivery_failure


def streamer() -> BinlogStreamer:
    config = MySQLBinlogConfig(name="cdc", url="mysql://u@h/", tables=["shop.orders", "shop.line_*"], server_id=5)
    return BinlogStreamer(config, lambda t: None, None, False, logging.getLogger("t"), threading.Event())  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("query", "default_db", "expected"),
    [
        ("TRUNCATE TABLE shop.orders", "", "shop.orders"),
        ("truncate table `shop`.`orders`;", b"", "shop.orders"),
        ("TRUNCATE orders", b"shop", "shop.orders"),
        ("  TRUNCATE  `line_1` ", "shop", "shop.line_1"),
        ("TRUNCATE TABLE other.orders", "shop", None),  # not captured
        ("TRUNCATE orders", "", None),  # no database: cannot be ours
        ("TRUNCATE TABLE shop.customers", "shop", None),
        ("ALTER TABLE shop.orders ADD x INT", "shop", None),
        ("TRUNCATE TABLE shop.orders, shop.line_1", "shop", None),  # not MySQL syntax
    ],
)
def test_truncate_statements_of_captured_tables_are_recognised(
    query: str, default_db: str | bytes, expected: str | None
) -> None:
    assert streamer()._truncated(query, default_db) == expected


def test_a_keyless_record_refused_as_invalid_names_the_compacted_topic_and_the_fix() -> None:
    line = delivery_failure("t1", True, KafkaError(KafkaError.INVALID_RECORD))
    assert line.startswith("Kafka refused an event for topic t1: ")
    assert "refused by a compacted topic; set the source's `truncate: warn`, or use cleanup.policy=delete" in line
    assert "\n" not in line
    assert "compacted" not in delivery_failure("t1", False, KafkaError(KafkaError.INVALID_RECORD))
    assert "compacted" not in delivery_failure("t1", True, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
