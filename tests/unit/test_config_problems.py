"""A config file with several problems: every one is reported at once, one line each, in file order."""

from __future__ import annotations

from pathlib import Path

import pytest

from liberator.config import load_config, read_config
from liberator.errors import ConfigProblems

MANY = """\
name: shop
kafka:
  bootstrap_servers: 127.0.0.1:9092
  bootstrap_servers: 127.0.0.1:9093
schema_registry:
  url: http://127.0.0.1:8081
  basic_auth: ${REGISTRY_AUTH_UNSET}
shutdown_timout: 5s
offsets:
  store: file
sources:
  - name: legacy
    type: query
    url: sqlite:///legacy.db
    tables: [orders]
    cursr: [updated_at, id]
  - name: other
    type: tap
  - name: legacy
    type: query
    url: sqlite:///legacy.db
    tables: [orders]
    cursor: [id]
    poll_interval: soon
sinks:
  - name: copy
"""


def test_every_problem_of_the_file_is_one_line_in_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGISTRY_AUTH_UNSET", raising=False)
    path = tmp_path / "many.yaml"
    path.write_text(MANY)
    config, problems = read_config(path)
    assert config is None  # the top level has problems: nothing to check connectivity of
    lines = [str(problem) for problem in problems]
    assert all("\n" not in line and line.startswith(f"{path}:") for line in lines), lines
    expected = [
        ":4: kafka.bootstrap_servers: this key appears twice; keep one",
        ":7: schema_registry.basic_auth: environment variable REGISTRY_AUTH_UNSET is not set",
        ":8: shutdown_timout: is not a known field; did you mean 'shutdown_timeout'?",
        ":10: offsets.store: the file store needs offsets.path",
        ":16: sources[0].cursr: is not a known field; did you mean 'cursor'?",
        ":18: sources[1].type: unknown type 'tap'",
        ":24: sources[2].poll_interval: ",
        ":26: sinks[0]: each sink needs a type",
    ]
    assert len(lines) == len(expected), "\n".join(lines)
    for line, fragment in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}{fragment}"), (line, fragment)


def test_load_config_names_the_first_problem_and_how_many_more(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(MANY)
    with pytest.raises(ConfigProblems) as refused:
        load_config(path)
    message = str(refused.value)
    assert message.startswith(f"{path}:4: kafka.bootstrap_servers: this key appears twice")
    assert message.endswith("(and 7 more problems: `liberator check` lists them all)") and "\n" not in message
    assert len(refused.value.problems) == 8


def test_a_valid_top_level_keeps_the_valid_sources_for_the_connectivity_checks(tmp_path: Path) -> None:
    path = tmp_path / "some.yaml"
    top = MANY[: MANY.index("sources:")].replace("  bootstrap_servers: 127.0.0.1:9093\n", "")
    top = top.replace("  basic_auth: ${REGISTRY_AUTH_UNSET}\n", "").replace("shutdown_timout: 5s\n", "")
    top = top.replace("  store: file\n", "  store: file\n  path: offsets.json\n")
    path.write_text(top + MANY[MANY.index("sources:") :])
    config, problems = read_config(path)
    assert config is not None and [s.name for s in config.sources] == [] and config.sinks == []
    assert len(problems) == 4, problems
    fixed = path.read_text().replace("    cursr:", "    cursor:")
    path.write_text(fixed)
    config, problems = read_config(path)
    assert config is not None and [s.name for s in config.sources] == ["legacy"]
    assert len(problems) == 3, problems
