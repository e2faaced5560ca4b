"""Read a YAML config into plain data, remembering the line of every value and expanding ${...}.

`${VAR}` and `${VAR:-default}` take environment variables; `${file:/path}` takes a secret from a file
(trailing newline dropped). Expansion happens per scalar, so errors can still name the line. A value
substituted into the `user:password@` part of a URL is percent-encoded, so any character works there.

The file is untrusted input: its size, the values its aliases expand to and its nesting are bounded, and
every problem is one line naming the file (and the line where there is one).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from liberator.errors import ConfigError, one_line
from liberator.redaction import userinfo_span

Loc = tuple[str | int, ...]

# Real configs are a few KiB; these bounds only stop files that are not configs (or are attacks).
MAX_BYTES = 1024 * 1024
MAX_VALUES = 100_000  # after alias expansion: a "billion laughs" file stops here, not in the OOM killer
MAX_DEPTH = 64
MAX_MESSAGE = 500

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


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
    # Problems with single values (an unset ${VAR}, a raw '@' in a URL password, a repeated key): the value
    # reads as None (a repeated key keeps its first value) so the rest of the file is still checked.
    problems: list[tuple[Loc, ConfigError]] = field(default_factory=list)

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
        return ConfigError(one_line(f"{where}: {dotted(loc)}: {message}", MAX_MESSAGE))


def _resolve(ref: str, on_error: Any) -> str:
    if ref.startswith("file:"):
        secret_path = Path(ref[5:])
        try:
            return secret_path.read_text().rstrip("\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise on_error(f"cannot read secret file {secret_path}: {reason}; create it or fix the path") from None
    name, sep, default = ref.partition(":-")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise on_error(f"bad reference ${{{one_line(ref, 60)}}}; use ${{NAME}}, ${{NAME:-default}} or ${{file:/path}}")
    value = os.environ.get(name)
    if value is None or (sep and value == ""):
        if sep:
            return default
        raise on_error(f"environment variable {name} is not set; export it, or write ${{{name}:-default}}")
    return value


def expand(text: str, on_error: Any) -> str:
    # Where `user:password` is in a URL template, judged with its ${...} references masked.
    userinfo = userinfo_span(_REFERENCE.sub(lambda m: "x" * len(m.group(0)), text))

    def replace(match: re.Match[str]) -> str:
        value = _resolve(match.group(1), on_error)
        if userinfo is None or not userinfo[0] <= match.start() < userinfo[1]:
            return value
        if match.start() == userinfo[0] and match.end() == userinfo[1]:
            # The whole `user:password` from one reference: the first ':' separates them.
            user, sep, password = value.partition(":")
            return quote(user, safe="") + sep + quote(password, safe="")
        return quote(value, safe="")

    return _REFERENCE.sub(replace, text)


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"{path}: the config file is larger than {MAX_BYTES // 1024} KiB; a config is a few KiB, is this the "
            "right file?"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text file (byte {exc.start} is not UTF-8); give the YAML config file"
        ) from None


def _syntax_error(path: str, text: str, exc: yaml.YAMLError) -> ConfigError:
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        code = ord(exc.character) if isinstance(exc.character, str) else int(exc.character)
        return ConfigError(
            f"{path}:{line}: not valid YAML: character #x{code:02x} is not allowed in YAML; is this the right file?"
        )
    problem = one_line(getattr(exc, "problem", None) or str(exc).splitlines()[0], 200)
    problem_mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if problem_mark is not None and context_mark is not None and problem_mark.index >= len(text.rstrip()):
        # Something opened (a quote, a bracket) is never closed: the end of the file is no help, its start is.
        opened = str(context).removeprefix("while scanning ").removeprefix("while parsing ")
        return ConfigError(
            f"{path}:{context_mark.line + 1}: not valid YAML: {opened} starts here (column "
            f"{context_mark.column + 1}) and is not closed before the end of the file; close it"
        )
    where = f"{path}:{problem_mark.line + 1}" if problem_mark is not None else path
    return ConfigError(f"{where}: not valid YAML: {problem}; fix the syntax there")


def load_yaml(path: str | Path, keep_problems: bool = False) -> LoadedYaml:
    """The file as plain data. A problem with a single value raises its ConfigError, or with `keep_problems`
    is kept in `problems` (that value reads as None) so the caller can report it with all the others."""
    path = str(path)
    text = _read_text(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _syntax_error(path, text, exc) from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid as a config: nested too deeply; is this the right file?") from None
    loaded = LoadedYaml(path, None, {})
    if root is None:
        raise ConfigError(f"{path}: the config file is empty; see configs/ for examples")
    loaded.data = _Converter(loaded).convert(root, ())
    if loaded.problems and not keep_problems:
        raise loaded.problems[0][1]
    return loaded


class _Converter:
    """Nodes to plain data, counting values as aliases expand them and refusing an alias to itself."""

    def __init__(self, loaded: LoadedYaml) -> None:
        self.loaded = loaded
        self.values = 0
        self.open: set[int] = set()  # ids of the collection nodes being converted (the path from the root)

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.loaded.error(
                loc,
                f"the file expands to more than {MAX_VALUES} values (aliases repeating aliases?); "
                "a config needs far fewer: write the values out",
            )
        if len(loc) > MAX_DEPTH:
            raise self.loaded.error(loc, f"nested more than {MAX_DEPTH} levels deep; a config needs far fewer")
        self.loaded.lines[loc] = node.start_mark.line + 1
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            return self._scalar(node, loc)
        if id(node) in self.open:
            raise self.loaded.error(loc, "an alias refers to a value that contains it; remove the alias")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
            return self._mapping(node, loc)
        finally:
            self.open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.loaded.error(loc, "a key here is a list or mapping; keys must be plain names")
            key = str(key_node.value)
            if key in out:
                line = key_node.start_mark.line + 1
                where = f"{self.loaded.path}:{line}: {dotted((*loc, key))}"
                error = ConfigError(one_line(f"{where}: this key appears twice; keep one", MAX_MESSAGE))
                self.loaded.problems.append(((*loc, key), error))
                continue
            out[key] = self.convert(value_node, (*loc, key))
            self.loaded.lines[(*loc, key)] = key_node.start_mark.line + 1
        return out

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        try:
            return self._value(node, loc)
        except ConfigError as error:
            self.loaded.problems.append((loc, error))
            return None

    def _value(self, node: yaml.Node, loc: Loc) -> Any:
        assert isinstance(node, yaml.ScalarNode)
        if "${" in node.value:
            expanded = expand(node.value, lambda message: self.loaded.error(loc, message))
            self._check_userinfo(expanded, loc)
            if node.style is None:  # a plain scalar: resolve its type after expansion (ports, booleans)
                return yaml.safe_load(expanded) if expanded.strip() else ""
            return expanded
        self._check_userinfo(node.value, loc)
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            reason = one_line(getattr(exc, "problem", None) or exc, 200)
            raise self.loaded.error(loc, f"cannot read this value ({reason}); fix the value or its tag") from None
        finally:
            loader.dispose()

    def _check_userinfo(self, text: str, loc: Loc) -> None:
        """A password written into a URL as it is: drivers misread it and quote it in their errors."""
        span = userinfo_span(text)
        userinfo = text[span[0] : span[1]] if span else ""
        if ":" in userinfo and ("@" in userinfo or " " in userinfo or _BAD_ESCAPE.search(userinfo)):
            raise self.loaded.error(
                loc,
                "the user:password of this URL holds a raw '@', space or '%'; percent-encode it (@ is %40, "
                "space %20, % %25) or give the password as ${VAR}, which is encoded for you",
            )
