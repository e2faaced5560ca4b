from __future__ import annotations

from pathlib import Path

from liberator.docgen import config_reference

ROOT = Path(__file__).parents[2]


def test_config_reference_is_current() -> None:
    text = (ROOT / "docs" / "config-reference.md").read_text()
    assert text == config_reference(), "regenerate: liberator config-reference > docs/config-reference.md"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    commands = [line for line in first_block.splitlines()[1:] if line.strip() and not line.startswith("#")]
    assert commands == ["scripts/demo", "scripts/test"]
    for command in commands:
        assert (ROOT / command).stat().st_mode & 0o111, f"{command} is not executable"


def test_optional_fields_are_named_without_memory_addresses() -> None:
    from liberator.config import Duration
    from liberator.docgen import _type_name

    assert _type_name(Duration | None) == "duration (500ms, 2s, 5m, 1h) \\| null"
    assert "0x" not in _type_name(list[Duration] | None)
