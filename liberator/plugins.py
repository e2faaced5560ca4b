"""Sources and sinks are found through entry points, so other packages can add their own."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from liberator.errors import ConfigError, one_line

SOURCE_GROUP = "liberator.sources"
SINK_GROUP = "liberator.sinks"


def available(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=group)}


def load(group: str, type_name: str, where: str) -> Any:
    found = available(group)
    if type_name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ConfigError(
            f"{where}: unknown type {one_line(repr(type_name), 80)}; installed: {known} "
            f"(a third-party type needs its package installed, registering an entry point in {group!r})"
        )
    return found[type_name].load()
