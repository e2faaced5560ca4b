"""JsonAvroWriter: the generated JSON-to-Avro writer gives the reference path's bytes and refusals, byte for byte."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liberator.avro import AvroEncoder
from liberator.outbox.jsonavro import JsonToAvro
from liberator.outbox.jsonwriter import JsonAvroWriter

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "string", "bytes"]
UNSUPPORTED: list[Any] = [
    {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]},
    {"type": "array", "items": "long"},
    {"type": "long", "logicalType": "timestamp-micros"},
    ["null", "long", "string"],
]


def decimals() -> st.SearchStrategy[dict[str, Any]]:
    return st.integers(1, 24).flatmap(
        lambda p: st.integers(0, p).map(
            lambda s: {"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s}
        )
    )


def plain_types() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(PRIMITIVES), st.sampled_from(PRIMITIVES).map(lambda p: {"type": p}), decimals())


def field_types(unsupported: bool) -> st.SearchStrategy[Any]:
    supported = plain_types().filter(lambda t: t not in ("null", {"type": "null"}))
    nullable = supported.flatmap(lambda t: st.sampled_from([["null", t], [t, "null"]]))
    kinds = [plain_types(), nullable]
    if unsupported:
        kinds.append(st.sampled_from(UNSUPPORTED))
    return st.one_of(*kinds)


@st.composite
def schemas(draw: st.DrawFn, unsupported: bool = True) -> dict[str, Any]:
    fields = []
    for i in range(draw(st.integers(1, 6))):
        field_type = draw(field_types(unsupported))
        if isinstance(field_type, dict) and field_type["type"] == "enum":
            field_type = {**field_type, "name": f"Colour{i}"}  # a named type is defined once
        field: dict[str, Any] = {"name": f"f{i}", "type": field_type}
        first = field["type"][0] if isinstance(field["type"], list) else field["type"]
        if first == "null" and draw(st.booleans()):
            field["default"] = None
        elif first in ("long", "int") and draw(st.booleans()):
            field["default"] = draw(st.integers(-1000, 1000))
        elif first == "string" and draw(st.booleans()):
            field["default"] = draw(st.text(max_size=5))
        fields.append(field)
    return {"type": "record", "name": "Event", "namespace": "t", "fields": fields}


def json_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.integers(-300, 300),
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(-1e6, 1e6),
        st.text(max_size=12),
        st.decimals(allow_nan=False, allow_infinity=False).map(str),
        st.decimals(-(10**8), 10**8, places=2).map(str),
        st.lists(st.integers(), max_size=2),
    )


@st.composite
def documents(draw: st.DrawFn, schema: dict[str, Any]) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(json_values())  # not an object at all
    document: dict[str, Any] = {}
    for field in schema["fields"]:
        if draw(st.integers(0, 5)) > 0:
            document[field["name"]] = draw(json_values())
    if draw(st.integers(0, 15)) == 0:
        document["extra"] = 1
    return document


def outcome(call: Any, document: Any) -> bytes | tuple[type[Exception], str]:
    try:
        data: bytes = call(document)
        return data
    except Exception as exc:  # PayloadMismatch and SchemaError, or whatever else the reference raises
        return type(exc), str(exc)


@PROPERTY
@given(st.data())
def test_the_generated_writer_matches_the_reference_byte_for_byte(data: st.DataObject) -> None:
    schema = data.draw(schemas())
    encoder, converter = AvroEncoder(schema, 7), JsonToAvro(schema)
    writer = JsonAvroWriter(schema, encoder, converter)
    for _ in range(5):
        document = data.draw(documents(schema))
        expected = outcome(lambda d: encoder.encode(converter.convert(d)), document)
        assert outcome(writer.write, document) == expected, (schema, document)


@st.composite
def fitting(draw: st.DrawFn, field_type: Any) -> Any:
    """A JSON value the reference path takes for a supported type."""
    if isinstance(field_type, list):
        other = field_type[1] if field_type[0] == "null" else field_type[0]
        return None if draw(st.booleans()) else draw(fitting(other))
    if isinstance(field_type, dict) and field_type.get("logicalType") == "decimal":
        scale, precision = field_type["scale"], field_type["precision"]
        unscaled = draw(st.integers(-(10**precision) + 1, 10**precision - 1))
        return str(Decimal(unscaled).scaleb(-scale))
    kind = field_type["type"] if isinstance(field_type, dict) else field_type
    return draw(
        {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(-1e30, 1e30),
            "double": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
            "string": st.text(st.characters(exclude_categories=["Cs"])),
            "bytes": st.text(st.characters(max_codepoint=255)),
        }[kind]
    )


@PROPERTY
@given(st.data())
def test_fitting_payloads_of_supported_schemas_take_the_generated_path(data: st.DataObject) -> None:
    schema = data.draw(schemas(unsupported=False))
    encoder, converter = AvroEncoder(schema, 7), JsonToAvro(schema)
    writer = JsonAvroWriter(schema, encoder, converter)
    assert writer.fast is not None
    document = {f["name"]: data.draw(fitting(f["type"])) for f in schema["fields"]}
    assert writer.write(document) == encoder.encode(converter.convert(document))
    assert writer.slow == 0


def test_schemas_with_other_types_take_the_reference_path() -> None:
    schema = {"type": "record", "name": "E", "fields": [{"name": "at", "type": UNSUPPORTED[2]}]}
    writer = JsonAvroWriter(schema, AvroEncoder(schema, 1), JsonToAvro(schema))
    assert writer.fast is None
    assert writer.write({"at": 5}) == AvroEncoder(schema, 1).encode({"at": 5})
    assert writer.slow == 1


def test_decimal_text_of_every_spelling_matches_the_reference() -> None:
    decimal = {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}
    schema = {"type": "record", "name": "E", "fields": [{"name": "d", "type": ["null", decimal]}]}
    encoder, converter = AvroEncoder(schema, 3), JsonToAvro(schema)
    writer = JsonAvroWriter(schema, encoder, converter)
    spellings: list[Any] = ["-0.00", "0012.5", "12.", ".5", "+1", " 1", "1e2", "\u0661\u0662", "9999.99", "10000.00"]
    spellings += ["1.005", "-9999.999", 0, -7, 10**4, 10**5, 1.25, True, "", "-", "1.2.3"]
    for value in spellings:
        expected = outcome(lambda d: encoder.encode(converter.convert(d)), {"d": value})
        assert outcome(writer.write, {"d": value}) == expected, value
