"""Read a YAML config into plain data, remembering the line of every value and expanding ${...}.

`${VAR}` and `${VAR:-default}` take environment variables; `${file:/path}` takes a secret from a file
(trailing newline dropped). Expansion happens per scalar, so errors can still name the line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from liberator.errors import ConfigError

Loc = tuple[str | int, ...]

_REFERENCE = re.compile(r"\$\{([^}]*)\}")


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


@dataclass
class LoadedYaml:
    path: str
    data: Any
    lines: dict[Loc, int]

    def line_of(self, loc: Loc) -> int | None:
        """The line of `loc`, or of its nearest ancestor present in the file (a missing field)."""
        while True:
            if loc in self.lines:
                return self.lines[loc]
            if not loc:
                return None
            loc = loc[:-1]

    def error(self, loc: Loc, message: str) -> ConfigError:
        line = self.line_of(loc)
        where = f"{self.path}:{line}" if line is not None else self.path
        return ConfigError(f"{where}: {dotted(loc)}: {message}")


def expand(text: str, on_error: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        ref = match.group(1)
        if ref.startswith("file:"):
            secret_path = Path(ref[5:])
            try:
                return secret_path.read_text().rstrip("\n")
            except OSError as exc:
                message = f"cannot read secret file {secret_path}: {exc.strerror}; create it or fix the path"
                raise on_error(message) from None
        name, sep, default = ref.partition(":-")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise on_error(f"bad reference ${{{ref}}}; use ${{NAME}}, ${{NAME:-default}} or ${{file:/path}}")
        value = os.environ.get(name)
        if value is None or (sep and value == ""):
            if sep:
                return default
            raise on_error(f"environment variable {name} is not set; export it, or write ${{{name}:-default}}")
        return value

    return _REFERENCE.sub(replace, text)


def load_yaml(path: str | Path) -> LoadedYaml:
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{line}: not valid YAML: {problem}; fix the syntax there") from None
    loaded = LoadedYaml(path, None, {})
    if root is None:
        raise ConfigError(f"{path}: the config file is empty; see configs/ for examples")
    loaded.data = _convert(root, (), loaded)
    return loaded


def _convert(node: yaml.Node, loc: Loc, loaded: LoadedYaml) -> Any:
    loaded.lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in out:
                raise loaded.error((*loc, key), "this key appears twice; keep one")
            out[key] = _convert(value_node, (*loc, key), loaded)
            loaded.lines[(*loc, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*loc, i), loaded) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    if "${" in node.value:
        expanded = expand(node.value, lambda message: loaded.error(loc, message))
        if node.style is None:  # a plain scalar: resolve its type after expansion (ports, booleans)
            return yaml.safe_load(expanded) if expanded.strip() else ""
        return expanded
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
