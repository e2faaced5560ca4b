"""Error hints that suggest a config snippet (`key: value` in backticks) name real config fields.

Every string literal of the code (f-strings with their placeholders filled in, docstrings left out) is searched
for such snippets; each must validate, key by key, as the field of that name of some config model (the top
level, every installed source and sink type, and the models nested in them), so a hint cannot send users to a
field that does not exist (`columns: {exclude: [geom]}` once did) or to a value the field refuses.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Annotated

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from liberator import plugins
from liberator.config import RawAppConfig
from liberator.docgen import nested_models

ROOT = Path(__file__).resolve().parents[2]
CODE = ("liberator",)
SNIPPET = re.compile(r"`([a-z_]+: [^`]+)`")
PLACEHOLDER = "x"  # what an f-string's {expression} stands for in a snippet


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            found.add(id(body[0].value))
    return found


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(part.value) if isinstance(part, ast.Constant) else PLACEHOLDER for part in node.values)
    return None


def hint_snippets() -> list[tuple[str, str]]:
    """(where, snippet) of every config snippet in the code's string literals."""
    found = []
    for package in CODE:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            skip = _docstrings(tree)
            parents = {id(child) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for child in node.values}
            for node in ast.walk(tree):
                if id(node) in skip or id(node) in parents:
                    continue
                text = _text(node)
                if text is None:
                    continue
                for snippet in SNIPPET.findall(text):
                    found.append((f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}", snippet))
    return found


def config_models() -> list[type[BaseModel]]:
    roots: list[type[BaseModel]] = [RawAppConfig]
    for group in (plugins.SOURCE_GROUP, plugins.SINK_GROUP):
        roots += [entry.load().config_model for entry in plugins.available(group).values()]
    models = list(roots)
    for root in roots:
        models += [nested for _, nested in nested_models(root)]
    return models


def problems(snippet: str, models: list[type[BaseModel]]) -> list[str]:
    """Why `snippet` is not valid config: one line per key no model's field of that name takes."""
    try:
        loaded = yaml.safe_load(snippet)
    except yaml.YAMLError as exc:
        return [f"not YAML: {str(exc).splitlines()[0]}"]
    if not isinstance(loaded, dict):
        return ["not a mapping"]
    out = []
    for key, value in loaded.items():
        having = [m for m in models if key in m.model_fields]
        if not having:
            out.append(f"no config model has a field {key!r}")
            continue
        for model in having:
            field = model.model_fields[key]
            try:
                TypeAdapter(Annotated[field.annotation, field]).validate_python(value)
                break
            except ValidationError:
                continue
        else:
            out.append(f"{value!r} is not a valid {key!r} for {', '.join(m.__name__ for m in having)}")
    return out


HINTS = hint_snippets()


def test_hints_are_found() -> None:
    snippets = {s for _, s in HINTS}
    assert "exclude: {x: [x]}" in snippets  # the CDC sources' unmappable-column hint
    assert "tables: [{table: x, exclude: [x]}]" in snippets  # the query source's
    assert len(HINTS) > 10


@pytest.mark.parametrize(("where", "snippet"), HINTS, ids=[f"{w} {s}" for w, s in HINTS])
def test_every_hint_names_real_config_fields(where: str, snippet: str) -> None:
    assert problems(snippet, config_models()) == []


def test_a_hint_naming_a_field_that_does_not_exist_is_caught() -> None:
    models = config_models()
    assert problems("colums: {exclude: [geom]}", models) == ["no config model has a field 'colums'"]
    # the old query-source hint: `columns` exists only as the outbox's column mapping, which refuses this
    assert problems("columns: {exclude: [geom]}", models) != []
    assert problems("snapshot: sometimes", models) != []
    assert problems("tables: [{table: public.orders, exclude: [geom]}]", models) == []
