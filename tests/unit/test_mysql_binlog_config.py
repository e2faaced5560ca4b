"""The binlog source's configuration: table selection, the outbox option and the signal table."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from liberator.connectors.mysql_binlog.config import MySQLBinlogConfig


def _config(**options: object) -> MySQLBinlogConfig:
    return MySQLBinlogConfig(name="cdc", url="mysql://u:p@h:3306/", server_id=7, **options)


def test_tables_select_by_pattern_and_the_outbox_table_is_never_a_row_change_table() -> None:
    config = _config(tables=["shop.*", "crm.customers"], outbox={"table": "app.outbox"})
    assert config.captures("shop", "orders") and config.captures("crm", "customers")
    assert not config.captures("crm", "leads")
    assert config.literal_databases() == ["app", "crm", "shop"]  # the outbox's database is read from the binlog
    inside = _config(tables=["shop.*"], outbox={"table": "shop.outbox"})
    assert inside.captures("shop", "orders") and not inside.captures("shop", "outbox")
    assert _config(tables=["s*.orders"]).literal_databases() is None


def test_the_outbox_option_takes_the_outbox_routing_rules() -> None:
    config = _config(tables=["shop.*"], outbox={"table": "shop.outbox", "topic": "events.{aggregate_type}"})
    assert config.outbox is not None and config.outbox.topic == "events.{aggregate_type}"
    assert config.outbox.columns.aggregate_id == "aggregate_id" and config.outbox.on_invalid is None


@pytest.mark.parametrize(
    ("outbox", "message"),
    [
        ({"table": "outbox"}, "must be one database.table"),
        ({"table": "shop.out*"}, "must be one database.table"),
        ({}, "table"),
        ({"table": "shop.outbox", "topic": "{table}"}, "allowed placeholders"),
        ({"table": "shop.outbox", "colour": "red"}, "colour"),
    ],
)
def test_a_wrong_outbox_option_is_refused_naming_the_problem(outbox: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _config(tables=["shop.*"], outbox=outbox)


def test_tables_must_be_qualified() -> None:
    with pytest.raises(ValidationError, match=r"must be database\.table"):
        _config(tables=["orders"])


def test_exclude_names_one_captured_table() -> None:
    config = _config(tables=["shop.*"], exclude={"shop.users": ["password_hash"]})
    assert config.exclude == {"shop.users": ["password_hash"]}
    with pytest.raises(ValidationError, match=r"exclude: 'shop\.\*' must be one database\.table"):
        _config(tables=["shop.*"], exclude={"shop.*": ["x"]})
    with pytest.raises(ValidationError, match=r"exclude: crm\.users is not a captured table"):
        _config(tables=["shop.*"], exclude={"crm.users": ["x"]})


def test_the_signal_table_is_one_table_read_from_the_binlog_and_never_published() -> None:
    config = _config(tables=["shop.*"], signal_table="ops.liberator_signal")
    assert config.literal_databases() == ["ops", "shop"]  # its database is read from the binlog
    inside = _config(tables=["shop.*"], signal_table="shop.liberator_signal")
    assert inside.captures("shop", "orders") and not inside.captures("shop", "liberator_signal")
    for wrong in ("liberator_signal", "shop.signal_*"):
        with pytest.raises(ValidationError, match=r"must be one database\.table"):
            _config(tables=["shop.*"], signal_table=wrong)


def test_snapshot_workers_default_to_one_and_are_bounded_as_on_postgres_wal() -> None:
    assert _config(tables=["shop.*"]).snapshot_workers == 1
    assert _config(tables=["shop.*"], snapshot_workers=4).snapshot_workers == 4
    for workers in (0, 17):
        with pytest.raises(ValidationError, match="snapshot_workers"):
            _config(tables=["shop.*"], snapshot_workers=workers)
