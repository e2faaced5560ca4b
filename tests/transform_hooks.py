"""Python hooks the transform tests name in their configs (`hook: "tests.transform_hooks:..."`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from liberator.capture.hooks import Change


def _cents(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    out = {k: v for k, v in row.items() if k != "note"}
    out["total_cents"] = None if row["total"] is None else int(row["total"]) * 100
    return out


def add_cents(change: Change) -> Change | None:
    """Adds total_cents, drops note; rows whose status is 'secret' are not published."""
    if change.after is not None and change.after.get("status") == "secret":
        return None
    return dataclasses.replace(change, before=_cents(change.before), after=_cents(change.after))


def upper_status(change: Change) -> Change:
    """Same shape: the status in capitals."""

    def up(row: Any) -> Any:
        return None if row is None else {**row, "status": str(row["status"]).upper()}

    return dataclasses.replace(change, before=up(change.before), after=up(change.after))


def explode(change: Change) -> None:
    raise RuntimeError("the hook broke on purpose")


def twice(change: Change) -> list[Change]:
    return [change, change]


def undeclared(change: Change) -> Change:
    return dataclasses.replace(change, after={**(change.after or {}), "surprise": 1})


NOT_A_FUNCTION = 42
