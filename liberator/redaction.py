"""Secrets never leave the process: one function shows URLs, one scrubs known secrets from any text.

`redact_url` is how every URL is shown (logs, errors, /health, `check`): the password in its
`user:password@` part and secret-looking query parameters become `***`. Drivers and librdkafka write
their own messages, so the secrets a config holds are also remembered at load (`remember_config`) and
`scrub` replaces them, raw or percent-encoded, in whatever is about to be shown: every log line
(`ScrubbingFormatter`), every `problem:`/error line of the CLI, the /health and /metrics bodies.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"
# Shorter values are not scrubbed from free text (masking every "ab" would wreck the log); they are
# still hidden wherever they appear as a URL's password or a secret setting's value.
MIN_SCRUBBED = 4

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A key naming a secret: sasl.password, ssl.key.password, basic_auth, sasl.oauthbearer.client.secret, ...
SECRET_KEY = re.compile(r"password|passwd|secret|basic_auth|\.pem$|^ssl_key$|oauthbearer\.config", re.I)
_SECRET_PARAM = re.compile(r"([?&;][^=&#;]*(?:password|passwd|pwd|secret|token)[^=&#;]*=)[^&#;]*", re.I)
# `scheme://user:password@` inside free text (a driver's message quoting a URL).
_URL_IN_TEXT = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*:)[^\s/?#@]+@")

_secrets: set[str] = set()
_lock = threading.Lock()


def redact_url(url: object) -> str:
    """A URL safe to show: `postgresql://app:***@db:5432/shop`. Works on any URL, parsed or not."""
    render = getattr(url, "render_as_string", None)  # a SQLAlchemy URL
    text = str(render(hide_password=False) if callable(render) else url)
    span = userinfo_span(text)
    if span is not None:
        user, sep, _password = text[span[0] : span[1]].partition(":")
        text = text[: span[0]] + user + (f":{MASK}" if sep else "") + text[span[1] :]
    return _SECRET_PARAM.sub(rf"\g<1>{MASK}", text)


def userinfo_span(url: str) -> tuple[int, int] | None:
    """Where `user:password` is in `url`. It ends at the last '@' before the query (a password may hold
    an unencoded '@' or '/'): hiding too much of an odd URL is better than showing part of a password."""
    start = _SCHEME.match(url)
    if start is None or url[start.end() :].startswith("/"):
        return None
    query = min((i for i in (url.find("?", start.end()), url.find("#", start.end())) if i != -1), default=len(url))
    at = url.rfind("@", start.end(), query)
    if at == -1:
        at = url.rfind("@", start.end())
    return (start.end(), at) if at != -1 else None


def remember(secret: str | None) -> None:
    """Scrub `secret` (as it is, and percent-encoded) from everything shown from now on."""
    if not secret:
        return
    forms = {secret, unquote(secret), quote(secret, safe=""), quote(unquote(secret), safe="")}
    with _lock:
        _secrets.update(form for form in forms if len(form) >= MIN_SCRUBBED)


def remember_url(url: str) -> None:
    """Remember the password of a URL's `user:password@` part and its secret query parameters."""
    span = userinfo_span(url)
    if span is not None:
        remember(url[span[0] : span[1]].partition(":")[2])
    for match in _SECRET_PARAM.finditer(url):
        remember(url[match.end(1) : match.end()])


# Config maps whose keys are the database's table and column names, not settings (docs/transforms.md): a
# column named `secret` or `password` there says nothing of its value (a mask rule, a new name), and
# remembering that value as a secret scrubbed words like `null` out of every /health body.
_NAMES_NOT_SETTINGS = frozenset({"exclude", "include", "mask", "rename", "filter", "route", "hook"})


def remember_config(data: Any, key: str = "") -> None:
    """Every secret of a loaded config: URL passwords anywhere, values under secret-looking keys."""
    if isinstance(data, dict):
        for name, value in data.items():
            if str(name) in _NAMES_NOT_SETTINGS:
                _remember_urls_only(value)
                continue
            remember_config(value, str(name))
    elif isinstance(data, list):
        for item in data:
            remember_config(item, key)
    elif isinstance(data, str):
        remember_url(data)
        if SECRET_KEY.search(key):
            remember(data)
            if key == "basic_auth":  # user:password; the user alone is not a secret
                remember(data.partition(":")[2])


def _remember_urls_only(data: Any) -> None:
    if isinstance(data, dict):
        for value in data.values():
            _remember_urls_only(value)
    elif isinstance(data, list):
        for item in data:
            _remember_urls_only(item)
    elif isinstance(data, str):
        remember_url(data)


def scrub(text: str) -> str:
    """`text` with every remembered secret and every URL password replaced by ***."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return _URL_IN_TEXT.sub(rf"\g<1>{MASK}@", text)


class ScrubbingFormatter(logging.Formatter):
    """Formats as usual, then scrubs: messages, arguments and tracebacks alike."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
