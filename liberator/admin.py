"""Run-time admin actions on a running daemon: pausing and resuming a source.

The daemon's `http:` server answers `POST /sources/{name}/pause` and `POST /sources/{name}/resume` through
`Admin`; `liberator pause|resume CONFIG --source NAME` call them (`request`). Answers (JSON, one `message`):

- 200: done. A pause is answered once the reading thread has stopped reading (within PAUSE_WAIT).
- 202: pause accepted, but the source is still inside a call to its database; it stops reading once the
  call returns (`paused` in /health says when).
- 404: no source of that name in the config.
- 409: nothing to do or not possible now: already paused (pause), not paused (resume), not started yet, or
  failed, stopped or finished.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Collection
from typing import Any, Protocol

from liberator.config import AppConfig
from liberator.errors import LiberatorError

PAUSE_WAIT = 10.0
ACTIONS = ("pause", "resume")
Answer = tuple[int, dict[str, Any]]


class Pausable(Protocol):
    """What Admin needs of a source runner (liberator.sourcerunner.SourceRunner)."""

    paused: threading.Event

    def pause_reading(self) -> bool: ...

    def resume_reading(self) -> bool: ...

    @property
    def state(self) -> str: ...


class Admin:
    """The daemon's admin actions; `runners` is filled in once the sources are built (the server answers
    before that: the daemon may still wait for its broker)."""

    def __init__(self, sources: Collection[str]) -> None:
        self.sources = set(sources)
        self.runners: dict[str, Pausable] = {}
        self._lock = threading.Lock()  # one action at a time: a pause and a resume never interleave

    def act(self, name: str, action: str) -> Answer:
        with self._lock:
            return self._act(name, action)

    def _act(self, name: str, action: str) -> Answer:
        if action not in ACTIONS:
            return 404, {"message": f"unknown action {action!r}; use pause or resume"}
        if name not in self.sources:
            known = ", ".join(sorted(self.sources)) or "none"
            return 404, {"source": name, "message": f"no source named {name!r}; known: {known}"}
        runner = self.runners.get(name)
        if runner is None:
            return 409, {"source": name, "message": f"source {name} has not started yet; try again once it runs"}
        if runner.state in ("failed", "stopped", "finished"):
            return 409, {"source": name, "message": f"source {name} is {runner.state}: there is nothing to {action}"}
        return self._pause(name, runner) if action == "pause" else self._resume(name, runner)

    @staticmethod
    def _pause(name: str, runner: Pausable) -> Answer:
        if not runner.pause_reading():
            return 409, {"source": name, "paused": True, "message": f"source {name} is already paused"}
        if runner.paused.wait(PAUSE_WAIT):
            return 200, {"source": name, "paused": True, "message": f"source {name} paused"}
        return 202, {
            "source": name,
            "paused": True,
            "message": f"source {name} pauses once its current database call returns",
        }

    @staticmethod
    def _resume(name: str, runner: Pausable) -> Answer:
        if not runner.resume_reading():
            return 409, {"source": name, "paused": False, "message": f"source {name} is not paused"}
        return 200, {"source": name, "paused": False, "message": f"source {name} resumed"}


def admin_url(config: AppConfig) -> str:
    """Where the daemon of `config` answers admin requests."""
    if config.http is None:
        raise LiberatorError(
            f"{config.path} has no http: section, so its daemon serves no admin requests; "
            "add http: {listen: 127.0.0.1:9400} and restart the daemon"
        )
    host, _, port = config.http.listen.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"  # listening on every address: this host's own
    return f"http://{host}:{port}"


def request(config: AppConfig, source: str, action: str, timeout: float = PAUSE_WAIT + 5) -> Answer:
    """POST the action to the running daemon of `config`: (status, answer)."""
    url = f"{admin_url(config)}/sources/{urllib.parse.quote(source, safe='')}/{action}"
    post = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(post, timeout=timeout) as response:
            return response.status, dict(json.load(response))
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, dict(json.load(exc))
        except ValueError:
            return exc.code, {"message": f"the daemon at {url} answered {exc.code} {exc.reason}"}
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise LiberatorError(
            f"cannot reach the daemon at {url} ({reason}); is it running with {config.path}?"
        ) from None
