"""A registry's refusal explained by liberator's own compatibility checker when the registry's reason is terse.

Confluent's registry (verbose) and liberator's embedded one name the field that breaks compatibility; others
do not: Karapace answers ``reader type: string not compatible with writer type: int``, which leaves the
operator to guess which of a table's columns changed. When the reason names no field, the new schema and the
subject's latest version are compared here under the subject's rule, with the checker the embedded registry
uses (`liberator.registry.compatibility`), and its first reason -- naming the field and the rule -- leads.
"""

from __future__ import annotations

import json
import re
from typing import Any

from liberator.registry.compatibility import (
    InvalidSchemaError,
    check_compatibility,
    normalize_level,
    parse_schema,
)

# Confluent: "The field 'note' at path '/fields/1' ..."; ours: "the new schema reads field id as ..."
_NAMES_A_FIELD = re.compile(r"\bfields?\b|/fields/", re.IGNORECASE)


def names_a_field(reason: str) -> bool:
    """Whether a registry's reason says which field it is about."""
    return bool(_NAMES_A_FIELD.search(reason))


def explain_refusal(level: str, new: dict[str, Any], old_version: int, old: dict[str, Any]) -> str | None:
    """Our first reason `new` may not follow version `old_version` (`old`) under `level`; None if we find none
    (another rule, a transitive level refusing an older version, a schema we cannot parse)."""
    try:
        rule = normalize_level(level)
        new_schema = parse_schema(json.dumps(new)).schema
        old_schema = parse_schema(json.dumps(old)).schema
    except (InvalidSchemaError, ValueError):
        return None
    problems = check_compatibility(rule, new_schema, [(old_version, old_schema)])
    return problems[0] if problems else None


def refusal_reason(registry_reason: str, ours: str | None) -> str:
    """The reason to show: the registry's own when it names a field, else ours with the registry's after it."""
    if ours is None or names_a_field(registry_reason):
        return registry_reason
    return f"{ours} (the registry said: {registry_reason})"
