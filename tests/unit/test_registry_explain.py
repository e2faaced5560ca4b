"""Terse registry refusals (Karapace's) explained with liberator's own checker: table field and rule named."""

from __future__ import annotations

from typing import Any

from liberator.registry.explain import explain_refusal, names_a_field, refusal_reason

KARAPACE = "reader type: string not compatible with writer type: int"


def _record(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "Value", "namespace": "shop", "fields": list(fields)}


V1 = _record({"name": "id", "type": "long"}, {"name": "qty", "type": "int"})
QTY_TEXT = _record({"name": "id", "type": "long"}, {"name": "qty", "type": "string"})
NOTE_WITHOUT_DEFAULT = _record(*V1["fields"], {"name": "note", "type": "string"})


def test_a_terse_reason_is_explained_naming_the_field() -> None:
    ours = explain_refusal("BACKWARD", QTY_TEXT, 1, V1)
    assert ours == "the new schema reads field qty as string but version 1 writes int"
    assert refusal_reason(KARAPACE, ours) == (
        "the new schema reads field qty as string but version 1 writes int (the registry said: " + KARAPACE + ")"
    )


def test_the_rule_decides_what_is_explained() -> None:
    assert explain_refusal("BACKWARD", NOTE_WITHOUT_DEFAULT, 3, V1) == (
        "field note is in the new schema but not in version 3 and has no default; add a default"
    )
    assert explain_refusal("FORWARD", NOTE_WITHOUT_DEFAULT, 3, V1) is None  # old readers ignore a new field
    assert explain_refusal("NONE", QTY_TEXT, 1, V1) is None
    assert explain_refusal("SIDEWAYS", QTY_TEXT, 1, V1) is None


def test_a_reason_that_names_its_field_is_kept() -> None:
    confluent = "The field 'note' at path '/fields/2' in the new schema has no default value"
    assert names_a_field(confluent) and names_a_field("the new schema reads field qty as string")
    assert not names_a_field(KARAPACE)
    assert refusal_reason(confluent, "anything of ours") == confluent
    assert refusal_reason(KARAPACE, None) == KARAPACE  # nothing better to say: the registry's own words
