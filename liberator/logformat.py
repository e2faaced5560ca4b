"""How log lines look: text for a person at a terminal, JSON for a log collector (one object per line).

Both go through the secret scrubbing of liberator.redaction. A JSON line holds `time` (ISO-8601, UTC),
`level`, `logger`, `source` or `sink` (the name of the source or sink the line is about, from the logger
name `liberator.source.NAME` / `liberator.sink.NAME`), `message`, and `exc_info` for a traceback. Secrets
are scrubbed from every field before it is encoded, so an escape JSON adds (a quote, a backslash) cannot
hide one from the scrubber.
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from liberator.redaction import ScrubbingFormatter, scrub

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Loggers named after the source or sink a line is about: liberator.source.<name>, liberator.sink.<name>.
_OWNERS = (("liberator.source.", "source"), ("liberator.sink.", "sink"))


def owner(logger_name: str) -> tuple[str, str] | None:
    """("source", name) or ("sink", name) for a source's or sink's logger, else None."""
    for prefix, kind in _OWNERS:
        if logger_name.startswith(prefix) and len(logger_name) > len(prefix):
            return kind, logger_name[len(prefix) :]
    return None


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    return value


class JsonLogFormatter(JsonFormatter):
    """One JSON object per record: time, level, logger, source/sink, message (then exc_info and extras)."""

    def __init__(self) -> None:
        # No format string: the fields are ours (add_fields); the library adds exc_info, stack_info, extras.
        super().__init__(reserved_attrs=[*RESERVED_ATTRS, "taskName"], json_ensure_ascii=False)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        about = owner(record.name)
        if about is not None:
            log_data[about[0]] = about[1]
        log_data["message"] = record.message
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: _scrubbed(value) for key, value in log_data.items()}

    def format(self, record: logging.LogRecord) -> str:
        # Fields are scrubbed before encoding; this catches what a custom object's str() put in an extra.
        return scrub(super().format(record))


def error_line(message: str, log_format: LogFormat) -> str:
    """A command's final error as its stderr shows it: `liberator: error: ...`, or one JSON object like every
    log line (made here, not through the handlers: it must show whatever else configured logging)."""
    if log_format == "text":
        return scrub(f"liberator: error: {message}")
    record = logging.LogRecord("liberator", logging.ERROR, __file__, 0, "%s", (message,), None)
    return JsonLogFormatter().format(record)


def default_format() -> LogFormat:
    """json when stderr is not a terminal (a service manager, a container, a pipe), text when it is."""
    return "text" if sys.stderr.isatty() else "json"


def setup_logging(level: str, log_format: LogFormat) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if log_format == "json" else ScrubbingFormatter(TEXT_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    logging.captureWarnings(True)  # library warnings go through the same (scrubbing) handler
    logging.getLogger("httpx").setLevel(logging.WARNING)
    threading.excepthook = _log_thread_death  # not Python's raw traceback on stderr: one scrubbed record


def _log_thread_death(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "a thread"
    logging.getLogger("liberator").error(  # the exception carries its traceback
        "thread %s died; this is a bug, please report it with this log", name, exc_info=args.exc_value
    )
