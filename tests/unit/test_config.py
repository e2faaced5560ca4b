from __future__ import annotations

from pathlib import Path

import pytest

from liberator.config import load_config, parse_duration
from liberator.connectors.query.config import QuerySourceConfig
from liberator.errors import ConfigError

GOOD = """\
name: shop
kafka:
  bootstrap_servers: 127.0.0.1:9092
schema_registry:
  url: http://127.0.0.1:8081
offsets:
  store: file
  path: /tmp/offsets.json
sources:
  - name: legacy
    type: query
    url: postgresql+psycopg://app:${APP_PASSWORD}@127.0.0.1:5432/shop
    tables: [public.orders, {table: public.customers, cursor: [modified, id]}]
    cursor: [updated_at, id]
    poll_interval: 1s
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "liberator.yaml"
    path.write_text(text)
    return path


def test_good_config_loads_with_env_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PASSWORD", "s3cret")
    config = load_config(write(tmp_path, GOOD))
    assert config.name == "shop"
    (source,) = config.sources
    assert isinstance(source, QuerySourceConfig)
    assert source.url.endswith("app:s3cret@127.0.0.1:5432/shop")
    assert source.tables[0].table == "public.orders"
    assert source.tables[1].cursor == ["modified", "id"]
    assert source.poll_interval == 1.0
    assert source.topic == "{source}.{schema}.{table}"
    assert config.offsets.store == "file"


def test_missing_env_var_names_line_path_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD))
    message = str(err.value)
    assert "liberator.yaml:12: sources[0].url:" in message
    assert "APP_PASSWORD is not set" in message
    assert "\n" not in message


def test_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    config = load_config(write(tmp_path, GOOD.replace("${APP_PASSWORD}", f"${{file:{secret}}}")))
    assert "app:from-file@" in config.sources[0].url  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("poll_interval: 1s", "poll_interval: soon"), ":15: sources[0].poll_interval: "),
        (
            ("cursor: [updated_at, id]", "cursr: [updated_at, id]"),
            ":14: sources[0].cursr: is not a known field",
        ),
        (("    type: query", "    type: quarry"), ":11: sources[0].type: unknown type 'quarry'"),
        (("  store: file", "  store: redis"), ":7: offsets.store: 'redis' is not allowed"),
        (("name: shop", "name: 'my shop'"), ":1: name: "),
        (
            ("  bootstrap_servers: 127.0.0.1:9092\n", "  settings: {}\n"),
            ":2: kafka.bootstrap_servers: is required but missing",
        ),
        (
            ("  bootstrap_servers: 127.0.0.1:9092\n", ""),
            ":2: kafka: is empty; give a mapping with bootstrap_servers",
        ),
        (
            ("tables: [public.orders, {table: public.customers, cursor: [modified, id]}]", "tables: []"),
            ":13: sources[0].tables: ",
        ),
        (
            (
                "tables: [public.orders, {table: public.customers, cursor: [modified, id]}]",
                "tables: [{query: 'SELECT 1'}]",
            ),
            ":13: sources[0].tables[0]: ",
        ),
    ],
)
def test_bad_fields_name_file_line_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: tuple[str, str], expected: str
) -> None:
    monkeypatch.setenv("APP_PASSWORD", "x")
    assert change[0] in GOOD
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD.replace(change[0], change[1])))
    message = str(err.value)
    assert expected in message, message
    assert message.startswith(str(tmp_path / "liberator.yaml"))
    assert "\n" not in message


def test_unknown_field_lists_allowed_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PASSWORD", "x")
    with pytest.raises(ConfigError, match=r"allowed here: .*poll_interval"):
        load_config(write(tmp_path, GOOD.replace("cursor: [updated_at, id]", "cursr: [updated_at, id]")))


def test_broken_yaml_is_one_line_with_position(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "name: shop\nkafka: [unclosed\n"))
    assert "not valid YAML" in str(err.value)
    assert "\n" not in str(err.value)


def test_duplicate_source_names_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PASSWORD", "x")
    source = GOOD[GOOD.index("  - name: legacy") :]
    with pytest.raises(ConfigError, match="used twice"):
        load_config(write(tmp_path, GOOD + source))


def test_file_store_needs_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PASSWORD", "x")
    with pytest.raises(ConfigError, match=r"offsets\.store: the file store needs offsets\.path"):
        load_config(write(tmp_path, GOOD.replace("  path: /tmp/offsets.json\n", "")))


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), (3, 3.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("two seconds")


def test_timeouts_have_defaults_and_are_set_per_source_and_for_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_PASSWORD", "x")
    config = load_config(write(tmp_path, GOOD))
    (source,) = config.sources
    assert isinstance(source, QuerySourceConfig)
    assert (source.connect_timeout, source.read_timeout, config.shutdown_timeout) == (10.0, 60.0, 30.0)
    text = GOOD.replace(
        "    poll_interval: 1s\n", "    poll_interval: 1s\n    connect_timeout: 500ms\n    read_timeout: 5m\n"
    )
    config = load_config(write(tmp_path, text + "shutdown_timeout: 2s\n"))
    (source,) = config.sources
    assert isinstance(source, QuerySourceConfig)
    assert (source.connect_timeout, source.read_timeout, config.shutdown_timeout) == (0.5, 300.0, 2.0)


@pytest.mark.parametrize(
    ("setting", "where"),
    [
        ("    read_timeout: 0s\n", ":16: sources[0].read_timeout: "),
        ("    connect_timeout: -1s\n", ":16: sources[0].connect_timeout: "),
        ("shutdown_timeout: 0\n", ":16: shutdown_timeout: "),
    ],
)
def test_a_timeout_must_be_positive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, where: str) -> None:
    monkeypatch.setenv("APP_PASSWORD", "x")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD + setting))
    assert where in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_ha_is_a_lease_by_default_and_a_bare_off_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PASSWORD", "s3cret")
    config = load_config(write(tmp_path, GOOD))
    assert (config.ha.mode, config.ha.takeover) == ("lease", 15.0)
    config = load_config(write(tmp_path, GOOD + "ha:\n  mode: off\n  takeover: 30s\n"))  # YAML reads `off` as false
    assert (config.ha.mode, config.ha.takeover) == ("off", 30.0)


def test_an_ha_takeover_too_short_to_confirm_the_lease_names_line_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_PASSWORD", "s3cret")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD + "ha:\n  takeover: 1s\n"))
    assert "liberator.yaml:17: ha.takeover:" in str(err.value) and "3" in str(err.value), str(err.value)
