"""Row filters: which of a table's rows are published, as a small expression over its column values
(`status in ('paid', 'shipped') and total > 10`), evaluated by simpleeval: no eval(), no attribute access,
no calls but a few harmless functions, so a config cannot run code.

A create, update or snapshot row is published when its new image matches. An update whose new image no
longer matches but whose old image did (where the source has old images: REPLICA IDENTITY FULL, a full
binlog row image) is published as a delete of the key, so consumers that fold by key forget the row; a
delete is published when its old image matched (or when there is none to tell). Truncates always pass.
An expression that cannot be evaluated on a row (a null compared with a number) does not match it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from typing import Any

from simpleeval import EvalWithCompoundTypes, InvalidExpression

from liberator.errors import SchemaError
from liberator.schema import TableSchema

RowFilter = Callable[[Sequence[Any]], bool]

_FUNCTIONS = {"len": len, "lower": str.lower, "upper": str.upper, "abs": abs}


def compile_filter(name: str, shape: TableSchema, expression: str | None) -> RowFilter | None:
    """The filter of `expression` over `shape`'s columns (by the database's names), or None for no filter.
    Refuses (SchemaError, one line) an expression that does not parse or names a column the table does not
    publish."""
    if expression is None or not expression.strip():
        return None
    evaluator = EvalWithCompoundTypes(functions=_FUNCTIONS)
    try:
        tree = evaluator.parse(expression)
    except SyntaxError as exc:
        raise SchemaError(
            f"table {name}: filter {expression!r} does not parse ({exc.msg}); write e.g. total > 10"
        ) from None
    columns = [c.name for c in shape.columns]
    used = (
        {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} - set(_FUNCTIONS) - {"True", "False", "None"}
    )
    unknown = sorted(used - set(columns))
    if unknown:
        raise SchemaError(
            f"table {name}: filter {expression!r} names {', '.join(unknown)}, not a published column "
            f"(columns: {', '.join(columns)})"
        )

    def matches(values: Sequence[Any]) -> bool:
        evaluator.names = dict(zip(columns, values, strict=False))
        try:
            return bool(evaluator.eval(expression, previously_parsed=tree))
        except (InvalidExpression, TypeError, ValueError, ArithmeticError):
            return False  # as in SQL: a null compared with a number (say) matches nothing

    return matches
