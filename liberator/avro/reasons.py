"""The reason a value does not fit its column, before `DatumConverter` adds the table and column."""

from __future__ import annotations

from typing import Any


class ConversionError(ValueError):
    """A value that cannot be represented exactly; the message is the reason only."""


def describe(value: Any) -> str:
    """ "value 'abc' (str)": short, one line (repr escapes newlines)."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"value {text} ({type(value).__name__})"
