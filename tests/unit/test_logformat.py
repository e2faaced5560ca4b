"""The JSON log line: its fields, the source/sink it is about, secrets scrubbed before JSON escapes them."""

from __future__ import annotations

import json
import logging
import sys
import threading

import pytest

from liberator import logformat, redaction
from liberator.cli import build_parser
from liberator.logformat import JsonLogFormatter, default_format, owner


def record(name: str, message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(name, logging.WARNING, "x.py", 1, message, args or None, exc_info)


def test_a_line_is_one_object_with_time_level_logger_owner_and_message() -> None:
    line = JsonLogFormatter().format(record("liberator.source.pg.main", "lost %s after %ds", "the server", 3))
    assert "\n" not in line
    entry = json.loads(line)
    assert list(entry) == ["time", "level", "logger", "source", "message"]
    assert entry["level"] == "WARNING" and entry["logger"] == "liberator.source.pg.main"
    assert entry["source"] == "pg.main" and entry["message"] == "lost the server after 3s"
    assert entry["time"].endswith("+00:00")
    sink = json.loads(JsonLogFormatter().format(record("liberator.sink.replica", "assigned t[0]")))
    assert sink["sink"] == "replica" and "source" not in sink
    plain = json.loads(JsonLogFormatter().format(record("liberator.kafka", "FAIL ...")))
    assert "source" not in plain and "sink" not in plain


def test_a_traceback_is_a_field_of_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        line = JsonLogFormatter().format(record("liberator", "unexpected error", exc=exc))
    entry = json.loads(line)
    assert "ValueError: boom" in entry["exc_info"] and entry["message"] == "unexpected error"


def test_secrets_that_json_escapes_are_scrubbed_before_encoding() -> None:
    secret = 'Qu0"te\\Back\tTab'
    redaction.remember(secret)
    line = JsonLogFormatter().format(record("liberator.source.pg", "driver said: password=%s", secret))
    assert json.loads(line)["message"] == "driver said: password=***"
    for form in (secret, json.dumps(secret)[1:-1], "Qu0", "Back"):
        assert form not in line
    try:
        raise RuntimeError(f"bad login {secret}")
    except RuntimeError as exc:
        line = JsonLogFormatter().format(record("liberator", "unexpected error", exc=exc))
    assert json.dumps(secret)[1:-1] not in line and "bad login ***" in json.loads(line)["exc_info"]


def test_owner_names_sources_and_sinks_only() -> None:
    assert owner("liberator.source.a") == ("source", "a")
    assert owner("liberator.sink.b") == ("sink", "b")
    assert owner("liberator.source.") is None and owner("liberator") is None and owner("httpx") is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "c.yaml"], None),
        (["--log-format", "json", "run", "c.yaml"], "json"),
        (["run", "c.yaml", "--log-format", "text"], "text"),
        (["--log-format", "text", "offsets", "show", "c.yaml", "--log-format", "json"], "json"),
        (["tail", "t", "--bootstrap-servers", "b", "--registry", "r", "--log-format", "json"], "json"),
    ],
)
def test_log_format_is_taken_before_or_after_any_command(argv: list[str], expected: str | None) -> None:
    args = build_parser().parse_args(argv)
    assert args.log_format == expected
    assert build_parser().parse_args([*argv, "--log-level", "DEBUG"]).log_level == "DEBUG"


def test_the_default_is_json_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert default_format() == "json"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert default_format() == "text"


def test_a_dying_thread_is_one_logged_record_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(threading, "excepthook", logformat._log_thread_death)

    def fail() -> None:
        raise RuntimeError("wedged")

    worker = threading.Thread(target=fail, name="reader-x")
    with caplog.at_level(logging.ERROR, logger="liberator"):
        worker.start()
        worker.join()
    [died] = [r for r in caplog.records if "died" in r.getMessage()]
    assert died.getMessage().startswith("thread reader-x died") and died.exc_info is not None
    assert "RuntimeError: wedged" in JsonLogFormatter().format(died)


def test_a_commands_final_error_is_one_json_object_or_the_text_line() -> None:
    secret = "Zz9-final-secret"
    redaction.remember(secret)
    entry = json.loads(logformat.error_line(f'offsets file "x" refused {secret}', "json"))
    assert entry["level"] == "ERROR" and entry["logger"] == "liberator"
    assert entry["message"] == 'offsets file "x" refused ***'
    assert logformat.error_line("no such file", "text") == "liberator: error: no such file"
