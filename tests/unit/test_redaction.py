"""Secrets in a config reach the drivers intact and are never shown: URLs redacted, known secrets scrubbed."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy.engine import make_url

from liberator import redaction
from liberator.errors import ConfigError
from liberator.redaction import ScrubbingFormatter, redact_url, remember_config, scrub
from liberator.yamlfile import load_yaml


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://app:p%40ss@db:5432/shop", "postgresql+psycopg://app:***@db:5432/shop"),
        ("postgresql://cdc:S3c@ret@127.0.0.1/db", "postgresql://cdc:***@127.0.0.1/db"),  # an unencoded '@'
        ("postgresql://cdc:a/b@127.0.0.1/db", "postgresql://cdc:***@127.0.0.1/db"),  # an unencoded '/'
        ("http://reg:x y@registry:8081", "http://reg:***@registry:8081"),
        ("postgresql://h/db?user=a&sslpassword=b&x=1", "postgresql://h/db?user=a&sslpassword=***&x=1"),
        ("postgresql://app:pw@host/db?email=a@b", "postgresql://app:***@host/db?email=a@b"),
        ("mysql://root@h:3306/", "mysql://root@h:3306/"),
        ("sqlite:////var/lib/a@b.db", "sqlite:////var/lib/a@b.db"),
        ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_url_takes_sqlalchemy_urls() -> None:
    assert redact_url(make_url("mysql+pymysql://u:p%40w@h:3306/d")) == "mysql+pymysql://u:***@h:3306/d"


@pytest.fixture
def clean_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redaction, "_secrets", set())


@pytest.mark.usefixtures("clean_secrets")
def test_the_secrets_of_a_config_are_scrubbed_raw_and_encoded() -> None:
    remember_config(
        {
            "kafka": {"settings": {"sasl.password": "Kq7@sasl", "linger.ms": 5}},
            "schema_registry": {"url": "http://reg:Rg5%40url@h", "basic_auth": "user:Ba3auth"},
            "sources": [{"url": "postgresql://a:Db1%20pass@h/d?sslpassword=Ssl9pw"}],
        }
    )
    text = "Kq7@sasl Kq7%40sasl Rg5@url Rg5%40url Ba3auth user:Ba3auth Db1 pass Db1%20pass Ssl9pw linger 5"
    assert scrub(text) == "*** *** *** *** *** *** *** *** *** linger 5"
    assert (
        scrub("libpq: could not parse postgresql://x:Zz8other@h/d") == "libpq: could not parse postgresql://x:***@h/d"
    )


@pytest.mark.usefixtures("clean_secrets")
def test_column_names_in_transforms_are_not_secret_settings() -> None:
    """A column named `secret` or `password` under mask/rename/... is a database name: its value (a mask rule,
    a new name) is no secret. Remembered, `null` vanished from every /health body and broke its JSON."""
    remember_config(
        {
            "sources": [
                {
                    "url": "postgresql://u:Pw7secret@h/d",
                    "mask": {"public.users": {"secret": "null", "password": "hash"}},
                    "rename": {"public.users": {"password_hint": "hint_text"}},
                }
            ]
        }
    )
    assert scrub('{"percent": null, "rule": "hash", "field": "hint_text"}') == (
        '{"percent": null, "rule": "hash", "field": "hint_text"}'
    )
    assert scrub("postgresql://u:Pw7secret@h/d and Pw7secret") == "postgresql://u:***@h/d and ***"


@pytest.mark.usefixtures("clean_secrets")
def test_short_values_are_not_scrubbed_from_free_text() -> None:
    remember_config({"password": "abc"})
    assert scrub("abc and http://u:abc@h") == "abc and http://u:***@h"


@pytest.mark.usefixtures("clean_secrets")
def test_log_lines_and_tracebacks_are_scrubbed() -> None:
    remember_config({"password": "Tb4secret"})
    try:
        raise RuntimeError("driver said Tb4secret")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "login with %s", ("Tb4secret",), exc_info=True)
        import sys

        record.exc_info = sys.exc_info()
    line = ScrubbingFormatter("%(message)s").format(record)
    assert "Tb4secret" not in line and line.startswith("login with ***") and "driver said ***" in line


# --- ${...} inside a URL's user:password ------------------------------------------------------------

PASSWORD = "p@ss:w/rd 100%#?"


def url_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: str, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "c.yaml"
    path.write_text(f"url: {template}\n")
    url = load_yaml(path).data["url"]
    assert isinstance(url, str)
    return url


def test_a_password_reference_is_percent_encoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = url_of(tmp_path, monkeypatch, "postgresql://app:${PW}@db.example:5432/shop", PW=PASSWORD)
    assert url == f"postgresql://app:{quote(PASSWORD, safe='')}@db.example:5432/shop"
    parsed = make_url(url)
    assert (parsed.username, parsed.password, parsed.host, parsed.port) == ("app", PASSWORD, "db.example", 5432)


def test_user_and_password_references_are_encoded_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = url_of(
        tmp_path, monkeypatch, "mysql://${USER_NAME}:${PW}@${HOST}/", USER_NAME="a@b", PW=PASSWORD, HOST="h:3306"
    )
    parsed = make_url(url)
    assert (parsed.username, parsed.password, parsed.host, parsed.port) == ("a@b", PASSWORD, "h", 3306)


def test_a_whole_userinfo_reference_splits_at_the_first_colon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = url_of(tmp_path, monkeypatch, "http://${USER_INFO}@registry:8081", USER_INFO=f"reg:{PASSWORD}")
    parsed = make_url(url)
    assert (parsed.username, parsed.password, parsed.host) == ("reg", PASSWORD, "registry")


def test_references_outside_userinfo_are_pasted_as_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = "postgresql://app:already%40encoded@h/db"
    assert url_of(tmp_path, monkeypatch, "${DATABASE_URL}", DATABASE_URL=whole) == whole
    assert (
        url_of(tmp_path, monkeypatch, "sqlite:///${DIR}/shop.db", DIR="/var/lib/a b")
        == "sqlite:////var/lib/a b/shop.db"
    )
    assert url_of(tmp_path, monkeypatch, "plain ${PW} text", PW="a@b") == "plain a@b text"


@pytest.mark.parametrize("userinfo", ["app:Xq9@Yt8", "app:Xq9 Yt8", "app:Xq9%Yt8"])
def test_a_raw_password_in_a_url_is_refused_at_load(tmp_path: Path, userinfo: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"name: x\nurl: 'postgresql://{userinfo}@db/shop'\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(err.value).startswith(f"{path}:2: url: the user:password of this URL holds a raw")
    assert "Xq9" not in str(err.value) and "Yt8" not in str(err.value)
