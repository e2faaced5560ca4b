"""A config file is untrusted input: whatever it holds, loading it ends in one short line naming the file."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from liberator.config import load_config
from liberator.errors import ConfigError
from liberator.yamlfile import MAX_BYTES

HEAD = "name: shop\nkafka:\n  bootstrap_servers: 127.0.0.1:9092\nschema_registry:\n  url: http://127.0.0.1:8081\n"


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    assert len(message) < 600, f"{len(message)} characters"
    return message


def test_an_alias_bomb_stops_at_a_bound_with_bounded_memory(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")  # 9**9 values once expanded
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    tracemalloc.start()
    try:
        message = refused(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "expands to more than" in message and "aliases" in message
    assert peak < 100 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"


def test_a_recursive_alias_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(HEAD + "sources: &s\n  - *s\n")
    message = refused(path)
    assert f"{path}:6: sources[0]: an alias refers to a value that contains it" in message


def test_deep_nesting_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(HEAD + "sources: " + "[" * 5000 + "\n")
    assert "nested too deeply" in refused(path)


def test_a_binary_file_is_not_a_config(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(os.urandom(64).replace(b"\x00", b"\xff") + b"\xff\xfe")
    assert "not a text file" in refused(path)


def test_a_nul_character_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_text(HEAD + "sources: [x\x00]\n")
    assert f"{path}:6: not valid YAML: character #x00 is not allowed" in refused(path)


def test_a_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("name: '" + "x y" * (10 * 1024 * 1024 // 3) + "'\n")
    assert path.stat().st_size > MAX_BYTES
    assert "larger than 1024 KiB" in refused(path)


@pytest.mark.parametrize(
    "line",
    [
        "name: '" + "x y" * 200_000 + "'",  # a pattern error quoting the value
        "name: shop\n? " + "q" * 300_000 + "\n: 1",  # an unknown field
        "name: shop\nsources: [{type: '" + "q" * 300_000 + "'}]",  # an unknown type
        "name: shop\nsources: [{name: a, type: query, url: 'sqlite://', tables: [t], cursor: [id], poll_interval: '"
        + "q" * 300_000
        + "'}]",  # a validator's message quoting the value
    ],
)
def test_a_long_value_gives_a_readable_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(HEAD.replace("name: shop\n", "") + line + "\n")
    message = refused(path)
    assert "characters cut" in message


def test_an_unclosed_quote_points_at_the_quote(tmp_path: Path) -> None:
    path = tmp_path / "quote.yaml"
    path.write_text(HEAD.replace("url: http://127.0.0.1:8081", 'url: "http://127.0.0.1:8081') + "sources: []\n\n\n")
    message = refused(path)
    assert message.startswith(f"{path}:5: not valid YAML: a quoted scalar starts here (column 8)"), message
    assert "not closed" in message


def test_an_unclosed_bracket_points_at_the_bracket(tmp_path: Path) -> None:
    path = tmp_path / "bracket.yaml"
    path.write_text(HEAD + "sources: [{name: a, type: query}\n")
    assert refused(path).startswith(f"{path}:6: not valid YAML: a flow sequence starts here")


def test_other_syntax_errors_point_at_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "sources:\n  - name: a\n   type: query\n")
    assert refused(path).startswith(f"{path}:8: not valid YAML:")


def test_a_bad_tagged_value_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tag.yaml"
    path.write_text(HEAD + "sources: !!int many\n")
    assert f"{path}:6: sources: cannot read this value" in refused(path)
