"""Avro compatibility rules of the embedded registry (pure logic, no server)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from liberator.registry.compatibility import (
    COMPATIBILITY_LEVELS,
    InvalidSchemaError,
    check_compatibility,
    normalize_level,
    parse_schema,
    reader_writer_problems,
)

# Unknown and invalid logical types make avro warn; both cases are tested on purpose here.
pytestmark = pytest.mark.filterwarnings("ignore::avro.errors.IgnoredLogicalType")


def schema(value: Any) -> Any:
    return parse_schema(json.dumps(value)).schema


def record(*fields: dict[str, Any], name: str = "Row", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Status", "symbols": list(symbols), **extra}


def decimal(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


def problems(reader: Any, writer: Any) -> list[str]:
    return reader_writer_problems(schema(reader), schema(writer), "NEW", "OLD")


# --- reader/writer pairs -----------------------------------------------------------------------

COMPATIBLE = {
    "int widened to long": ("long", "int"),
    "int widened to double": ("double", "int"),
    "string read as bytes": ("bytes", "string"),
    "field added with default": (
        record(field("a", "int"), field("b", "string", default="")),
        record(field("a", "int")),
    ),
    "field removed": (record(field("a", "int")), record(field("a", "int"), field("b", "int"))),
    "enum symbol added": (enum("A", "B", "C"), enum("A", "B")),
    "enum symbol removed but reader has a default": (enum("A", "UNKNOWN", default="UNKNOWN"), enum("A", "B")),
    "union widened": (["null", "int", "string"], ["null", "int"]),
    "value made nullable": (["null", "int"], "int"),
    "same decimal": (decimal(10, 2), decimal(10, 2)),
    "logical type added to plain long": ({"type": "long", "logicalType": "timestamp-millis"}, "long"),
    "unknown logical type ignored": ({"type": "string", "logicalType": "made-up"}, "string"),
    "renamed record with alias": (
        record(field("a", "int"), name="New", aliases=["Row"]),
        record(field("a", "int")),
    ),
    "field renamed with alias": (
        record(field("b", "int", aliases=["a"])),
        record(field("a", "int")),
    ),
}

INCOMPATIBLE = {
    # case: (reader, writer, words the message must contain)
    "long narrowed to int": ("int", "long", ["int", "long"]),
    "field added without default": (
        record(field("a", "int"), field("b", "string")),
        record(field("a", "int")),
        ["field b", "no default"],
    ),
    "enum symbol removed": (enum("A"), enum("A", "B"), ["lacks symbol", "B"]),
    "union narrowed": (["null", "int"], ["null", "int", "string"], ["no union branch", "string"]),
    "value made required": (
        record(field("a", "int")),
        record(field("a", ["null", "int"])),
        ["field a", "null"],
    ),
    "decimal precision changed": (decimal(10, 2), decimal(12, 2), ["decimal(10,2)", "decimal(12,2)"]),
    "decimal scale changed": (decimal(10, 2), decimal(10, 3), ["decimal(10,2)", "decimal(10,3)"]),
    "decimal read as plain bytes": ("bytes", decimal(10, 2), ["decimal(10,2)"]),
    "timestamp unit changed": (
        {"type": "long", "logicalType": "timestamp-millis"},
        {"type": "long", "logicalType": "timestamp-micros"},
        ["timestamp-millis", "timestamp-micros"],
    ),
    "record renamed": (record(field("a", "int"), name="Other"), record(field("a", "int")), ["Other", "Row"]),
    "fixed resized": (
        {"type": "fixed", "name": "Hash", "size": 16},
        {"type": "fixed", "name": "Hash", "size": 32},
        ["size 16", "32"],
    ),
    "array item type changed": (
        {"type": "array", "items": "int"},
        {"type": "array", "items": "string"},
        ["string"],
    ),
}


@pytest.mark.parametrize("case", sorted(COMPATIBLE))
def test_compatible_changes(case: str) -> None:
    reader, writer = COMPATIBLE[case]
    assert problems(reader, writer) == []


@pytest.mark.parametrize("case", sorted(INCOMPATIBLE))
def test_incompatible_changes_are_explained(case: str) -> None:
    reader, writer, words = INCOMPATIBLE[case]
    found = problems(reader, writer)
    assert len(found) == 1, found
    assert all(word in found[0] for word in words), found[0]
    assert "NEW" in found[0] and "\n" not in found[0]


def test_named_type_reference_is_checked_where_it_is_used() -> None:
    # Status is defined in field a and referenced by name in field b; a symbol removed from the
    # definition must be reported (once, not once per use).
    old = record(field("a", enum("A", "B", "C")), field("b", "Status"))
    new = record(field("a", enum("A", "B")), field("b", "Status"))
    found = problems(new, old)
    assert len(found) == 1 and "C" in found[0] and "field a" in found[0]
    assert problems(old, new) == []


def test_nested_problem_names_the_field_path() -> None:
    inner_old = record(field("amount", decimal(9, 2)), name="Line")
    inner_new = record(field("amount", decimal(9, 4)), name="Line")
    found = problems(
        record(field("line", ["null", inner_new], default=None)),
        record(field("line", ["null", inner_old], default=None)),
    )
    assert found == ["NEW reads field line.amount as decimal(9,4) but OLD writes decimal(9,2)"]


def test_every_problem_is_listed_with_its_own_field() -> None:
    found = problems(
        record(field("a", "int"), field("b", "int"), field("c", "string")),
        record(field("c", "int")),
    )
    assert len(found) == 3
    assert any("field a" in m and "no default" in m for m in found)
    assert any("field b" in m and "no default" in m for m in found)
    assert any("field c" in m and "string" in m for m in found)


def test_recursive_types_terminate_and_are_checked() -> None:
    def linked(value_type: str) -> dict[str, Any]:
        return record(field("value", value_type), field("next", ["null", "Node"]), name="Node")

    assert problems(linked("long"), linked("int")) == []
    found = problems(linked("int"), linked("long"))
    assert len(found) == 1 and "field value" in found[0]


# --- levels --------------------------------------------------------------------------------------

V_A_INT = record(field("a", "int"))
V_EMPTY = record()
V_A_STRING_DEFAULT = record(field("a", "string", default=""))
V_A_INT_DEFAULT = record(field("a", "int", default=0))


def history(*versions: dict[str, Any]) -> list[tuple[int, Any]]:
    return [(n, schema(v)) for n, v in enumerate(versions, start=1)]


def test_backward_checks_only_the_latest_version_and_transitive_checks_all() -> None:
    # v3 reads v2's data (a missing, default used) but not v1's (a was an int).
    previous = history(V_A_INT, V_EMPTY)
    new = schema(V_A_STRING_DEFAULT)
    assert check_compatibility("BACKWARD", new, previous) == []
    found = check_compatibility("BACKWARD_TRANSITIVE", new, previous)
    assert len(found) == 1
    assert "version 1" in found[0] and "field a" in found[0]


def test_forward_checks_old_readers_and_transitive_checks_all() -> None:
    # v2 (a with default) can read v3's data; v1 (a without default) cannot.
    previous = history(V_A_INT, V_A_INT_DEFAULT)
    new = schema(V_EMPTY)
    assert check_compatibility("FORWARD", new, previous) == []
    found = check_compatibility("FORWARD_TRANSITIVE", new, previous)
    assert found == ["field a is in version 1 but not in the new schema and has no default; add a default"]


def test_backward_and_forward_are_directional() -> None:
    old = history(V_A_INT)
    added_without_default = schema(record(field("a", "int"), field("b", "int")))
    assert check_compatibility("FORWARD", added_without_default, old) == []
    assert check_compatibility("BACKWARD", added_without_default, old) != []


def test_full_needs_both_directions() -> None:
    old = history(V_A_INT)
    assert check_compatibility("FULL", schema(record(field("a", "int"), field("b", "int", default=1))), old) == []
    assert check_compatibility("FULL", schema(record(field("a", "int"), field("b", "int"))), old) != []
    # Widening int to long is BACKWARD-compatible only: old readers cannot take a long.
    widened = schema(record(field("a", "long")))
    assert check_compatibility("BACKWARD", widened, old) == []
    found = check_compatibility("FULL", widened, old)
    assert found == ["version 1 reads field a as int but the new schema writes long"]


def test_full_transitive_checks_every_version_both_ways() -> None:
    previous = history(V_A_INT, V_A_INT_DEFAULT)
    new = schema(V_EMPTY)
    assert check_compatibility("FULL", new, previous) == []
    found = check_compatibility("FULL_TRANSITIVE", new, previous)
    assert len(found) == 1 and "version 1" in found[0]


def test_none_accepts_anything_and_first_version_is_always_compatible() -> None:
    assert check_compatibility("NONE", schema("string"), history(V_A_INT)) == []
    for level in COMPATIBILITY_LEVELS:
        assert check_compatibility(level, schema("string"), []) == []


def test_transitive_reports_newest_version_first() -> None:
    previous = history(record(field("a", "int")), record(field("a", "string")))
    found = check_compatibility("BACKWARD_TRANSITIVE", schema(record(field("a", "boolean"))), previous)
    assert [m.split(" writes ")[0] for m in found] == [
        "the new schema reads field a as boolean but version 2",
        "the new schema reads field a as boolean but version 1",
    ]


def test_levels_are_case_insensitive_and_validated() -> None:
    assert normalize_level("full_transitive") == "FULL_TRANSITIVE"
    with pytest.raises(ValueError, match="Invalid compatibility level"):
        normalize_level("SIDEWAYS")
    with pytest.raises(ValueError):
        check_compatibility("SIDEWAYS", schema("string"), [])


# --- parsing and canonical form ------------------------------------------------------------------


def test_canonical_form_ignores_whitespace_and_key_order() -> None:
    a = parse_schema('{"type": "record", "name": "Row", "fields": [{"name": "a", "type": "int"}]}')
    b = parse_schema('{"fields":[{"type":"int","name":"a"}],\n "name":"Row","type":"record"}')
    assert a.canonical == b.canonical == '{"type":"record","name":"Row","fields":[{"name":"a","type":"int"}]}'
    assert parse_schema('{"type": "string"}').canonical == '"string"'


def test_canonical_form_parses_back_to_itself() -> None:
    # Clients re-submit the text the registry gave them (lookups, re-registration); it must parse and
    # map to the same id.  A named fixed decimal used twice once broke this (avro's to_json).
    money = {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 12}
    text = json.dumps(
        record(field("price", money), field("history", {"type": "array", "items": "Money"}), namespace="shop")
    )
    canonical = parse_schema(text).canonical
    assert parse_schema(canonical).canonical == canonical
    assert json.loads(canonical) == json.loads(text)


def test_canonical_form_keeps_what_changes_meaning() -> None:
    base = record(field("a", "int"))
    with_doc = record(field("a", "int", doc="the a"))
    with_default = record(field("a", "int", default=1))
    forms = {parse_schema(json.dumps(s)).canonical for s in (base, with_doc, with_default)}
    assert len(forms) == 3


@pytest.mark.parametrize(
    ("text", "schema_type", "references", "words"),
    [
        ("", None, None, "Empty schema"),
        ('{"type": "nope"}', None, None, "Invalid schema"),
        ("{not json", None, None, "Invalid schema"),
        (json.dumps(record(field("a", "int", default="x"))), None, None, "Invalid default for field a"),
        (json.dumps(record(field("a", decimal(2, 5)))), None, None, "decimal at field a"),
        ('"string"', "JSON", None, "only AVRO"),
        ('"string"', "PROTOBUF", None, "only AVRO"),
        ('"string"', None, [{"name": "x", "subject": "s", "version": 1}], "references are not supported"),
    ],
)
def test_invalid_schemas_are_refused_with_a_reason(
    text: str, schema_type: str | None, references: Any, words: str
) -> None:
    with pytest.raises(InvalidSchemaError, match=words):
        parse_schema(text, schema_type, references)


def test_valid_defaults_are_accepted() -> None:
    parse_schema(
        json.dumps(
            record(
                field("n", ["null", "string"], default=None),
                field("l", "long", default=2**40),
                field("d", "double", default=1),
                field("e", enum("A", "B"), default="B"),
                field("f", {"type": "fixed", "name": "Two", "size": 2}, default="\u00ff\u0000"),
                field("m", {"type": "map", "values": "int"}, default={"x": 1}),
                field("r", record(field("x", "int", default=0), name="Inner"), default={}),
            )
        ),
        "AVRO",
        [],
    )
