"""The pure logic of `route`, `headers` and `hook` (liberator.capture.routes, headers, hooks, shaping): which
topic, which headers and which rows each change becomes, with the datum codecs the runtime's encoders mirror."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from liberator.capture import CaptureSettings, Catalogue, ChangeBatch, Op, RowChange, Txn, datum_events
from liberator.capture.headers import HeaderRule
from liberator.capture.hooks import HookError, HookRule, resolve_hook
from liberator.capture.masks import TruncateMask
from liberator.capture.routes import RouteRule
from liberator.config import load_config
from liberator.envelope import Envelope
from liberator.errors import ConfigProblems, SchemaError, TransformError
from liberator.events import ChangeEvent
from liberator.schema import Column, IntType, StringType, TableSchema

SHAPE = TableSchema(
    "public",
    "orders",
    (
        Column("id", IntType(), False),
        Column("region", StringType()),
        Column("status", StringType()),
        Column("total", IntType()),
        Column("note", StringType()),
    ),
    ("id",),
)
BY_REGION = RouteRule(by="region", topics={"eu": "{table}.eu", "us": "{table}.us"}, default="{table}.other")


def catalogue(**settings: Any) -> Catalogue:
    return Catalogue(
        CaptureSettings(source="src", connector="postgres_wal", app="app", default_schema="public", **settings)
    )


def events(table: Any, *changes: tuple[Op, Any, Any], key: Any = None) -> list[ChangeEvent]:
    txn = Txn(1000, id="1")
    items: list[RowChange | ChangeEvent] = [
        RowChange(table, op, txn, before=b, after=a, key=key) for op, b, a in changes
    ]
    return [e for e in datum_events([ChangeBatch(items)], Envelope.change) if isinstance(e, ChangeEvent)]


def row(id: int, region: str | None, status: str = "paid", total: int | None = 5, note: str | None = "n") -> list[Any]:
    return [id, region, status, total, note]


def test_route_by_column_sends_rows_keys_and_tombstones_where_their_row_goes() -> None:
    table = catalogue(route={"orders": BY_REGION}).table(SHAPE)
    out = events(
        table,
        (Op.create, None, row(1, "eu")),
        (Op.create, None, row(2, "asia")),  # not in the map: the default
        (Op.update, row(1, "eu"), row(1, "us")),  # moves: a delete and tombstone on eu, a create on us
        (Op.delete, row(2, "asia"), None),
    )
    seen = [(e.stream.topic, e.value and e.value["op"]) for e in out]
    assert seen == [
        ("orders.eu", "c"),
        ("orders.other", "c"),
        ("orders.eu", "d"),
        ("orders.eu", None),
        ("orders.us", "c"),
        ("orders.other", "d"),
        ("orders.other", None),
    ]
    assert {e.stream.value_schema == table.stream.value_schema for e in out} == {True}


def test_an_unroutable_value_is_an_error_naming_table_column_and_value() -> None:
    rule = RouteRule(by="region", topics={"eu": "orders.eu"})
    table = catalogue(route={"public.orders": rule}).table(SHAPE)
    with pytest.raises(TransformError, match=r"table public\.orders: cannot route a row with region = 'us'"):
        events(table, (Op.create, None, row(1, "us")))
    with pytest.raises(TransformError, match="region = None"):
        events(table, (Op.create, None, row(1, None)))
    with pytest.raises(TransformError, match=r"without its old row.*REPLICA IDENTITY FULL"):
        events(table, (Op.delete, None, None), key=[1])


def test_route_by_a_key_column_routes_deletes_by_their_key_and_truncates_go_to_every_topic() -> None:
    rule = RouteRule(by="id", topics={1: "one", "2": "two"})
    table = catalogue(route={"orders": rule}, truncate="publish").table(SHAPE)
    out = events(table, (Op.delete, None, None), (Op.truncate, None, None), key=[2])
    assert [e.stream.topic for e in out] == ["two", "two", "one", "two"]


def test_route_by_template_is_the_tables_topic_and_needs_no_shaping() -> None:
    table = catalogue(route={"orders": RouteRule(topic="crm.{source}.{table}")}).table(SHAPE)
    assert table.stream.topic == "crm.src.orders" and table.shaping is None


def test_route_rules_are_one_way_or_the_other() -> None:
    with pytest.raises(ValueError, match="give `topic`"):
        RouteRule()
    with pytest.raises(ValueError, match="go with `by`"):
        RouteRule(topic="t", default="x")
    with pytest.raises(ValueError, match="give `topics`"):
        RouteRule(by="region")
    with pytest.raises(SchemaError, match=r"route.by` names nope"):
        catalogue(route={"orders": RouteRule(by="nope", default="x")}).table(SHAPE)


def test_headers_static_and_from_columns_also_on_tombstones() -> None:
    rule = HeaderRule(static={"app": "crm"}, columns={"tenant": "region", "total": "total"})
    table = catalogue(headers={"orders": rule}).table(SHAPE)
    out = events(table, (Op.create, None, row(1, "eu", total=None)), (Op.delete, row(1, "eu", total=7), None))
    assert [e.headers for e in out] == [
        (("app", b"crm"), ("tenant", b"eu")),  # a null value leaves its header out
        (("app", b"crm"), ("tenant", b"eu"), ("total", b"7")),
        (("app", b"crm"), ("tenant", b"eu"), ("total", b"7")),  # the tombstone: from the old row
    ]
    plain = catalogue().table(SHAPE)
    assert [e.headers for e in events(plain, (Op.delete, row(1, "eu"), None))] == [(), ()]


def test_an_update_that_changes_the_key_deletes_the_old_key_with_the_old_rows_headers() -> None:
    table = catalogue(headers={"orders": HeaderRule(columns={"tenant": "region"})}).table(SHAPE)
    out = events(table, (Op.update, row(1, "eu"), row(2, "us")))
    seen = [(e.key["id"], e.value and e.value["op"], e.headers) for e in out]  # type: ignore[index]
    assert seen == [
        (1, "d", (("tenant", b"eu"),)),
        (1, None, (("tenant", b"eu"),)),
        (2, "c", (("tenant", b"us"),)),
    ]


def test_a_header_from_a_masked_column_is_refused() -> None:
    rule = HeaderRule(columns={"n": "note"})
    with pytest.raises(SchemaError, match="names note, which is masked"):
        catalogue(headers={"orders": rule}, mask={"orders": {"note": "redact"}}).table(SHAPE)


def test_a_hook_reshapes_rows_and_its_declared_output_is_the_schema() -> None:
    rule = HookRule(function="tests.transform_hooks:add_cents", add={"total_cents": "long"}, drop=["note"])
    masks = {"orders": {"region": TruncateMask(truncate=1)}}
    table = catalogue(hook={"orders": rule}, mask=masks, rename={"orders": {"region": "area"}}).table(SHAPE)
    fields = [f["name"] for f in table.stream.value_schema["fields"][0]["type"][1]["fields"]]  # type: ignore[index]
    assert fields == ["id", "area", "status", "total", "total_cents"]
    out = events(table, (Op.create, None, row(1, "eu", total=3)), (Op.create, None, row(2, "eu", status="secret")))
    assert [e.value["after"] for e in out] == [  # type: ignore[index]
        {"id": 1, "area": "e", "status": "paid", "total": 3, "total_cents": 300}
    ]  # the hook sees masked values under their published names; it dropped the 'secret' row


def test_a_hook_that_raises_or_breaks_the_contract_stops_with_its_name_and_the_table() -> None:
    for function, match in [
        ("explode", r"hook tests.transform_hooks:explode failed on a change of table public.orders: RuntimeError"),
        ("undeclared", r"returned fields it does not declare \['surprise'\].*hook.add"),
    ]:
        table = catalogue(hook={"orders": HookRule(function=f"tests.transform_hooks:{function}")}).table(SHAPE)
        with pytest.raises(HookError, match=match):
            events(table, (Op.create, None, row(1, "eu")))
    table = catalogue(hook={"orders": HookRule(function="tests.transform_hooks:twice")}).table(SHAPE)
    assert len(events(table, (Op.create, None, row(1, "eu")))) == 2
    with pytest.raises(SchemaError, match="cannot remove key fields"):
        catalogue(hook={"orders": HookRule(function="tests.transform_hooks:twice", drop=["id"])}).table(SHAPE)


def test_hooks_resolve_by_module_or_entry_point_with_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        resolve_hook("no_such_module:f")
    with pytest.raises(ValueError, match="has no 'nope'"):
        resolve_hook("tests.transform_hooks:nope")
    with pytest.raises(ValueError, match="is not a function"):
        resolve_hook("tests.transform_hooks:NOT_A_FUNCTION")
    with pytest.raises(ValueError, match=r"no entry point of that name in group liberator.transforms"):
        resolve_hook("cents")
    dist = tmp_path / "shop_hooks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shop-hooks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[liberator.transforms]\ncents = tests.transform_hooks:add_cents\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from tests import transform_hooks

    assert resolve_hook("cents") is transform_hooks.add_cents


CONFIG = """\
name: shop
kafka:
  bootstrap_servers: 127.0.0.1:9092
schema_registry:
  url: http://127.0.0.1:8081
offsets:
  store: file
  path: /tmp/offsets.json
sources:
  - name: wal
    type: postgres_wal
    url: postgresql://app@127.0.0.1:5432/shop
    tables: [public.orders]
    hook: {public.orders: "tests.transform_hooks:nope"}
  - name: legacy
    type: query
    url: postgresql+psycopg://app@127.0.0.1:5432/shop
    tables: [{table: public.orders, hook: {function: "no_such_module:f"}}]
    cursor: [updated_at, id]
"""


def test_a_missing_hook_is_a_config_error_naming_the_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "liberator.yaml"
    path.write_text(CONFIG)
    with pytest.raises(ConfigProblems) as err:
        load_config(path)
    lines = [str(p) for p in err.value.problems]
    assert len(lines) == 2 and all("\n" not in line for line in lines), lines
    assert "liberator.yaml:14: " in lines[0] and "sources[0].hook.public.orders" in lines[0], lines[0]
    assert "has no 'nope'" in lines[0]
    assert "sources[1].tables[0].hook.function" in lines[1] and "cannot import module 'no_such_module'" in lines[1]
