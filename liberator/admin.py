"""Run-time admin actions on a running daemon: pausing and resuming a source, snapshots on demand.

The daemon's `http:` server answers `POST /sources/{name}/pause` and `POST /sources/{name}/resume` through
`Admin`; `liberator pause|resume CONFIG --source NAME` call them (`request`). Answers (JSON, one `message`):

- 200: done. A pause is answered once the reading thread has stopped reading (within PAUSE_WAIT).
- 202: pause accepted, but the source is still inside a call to its database; it stops reading once the
  call returns (`paused` in /health says when).
- 404: no source of that name in the config.
- 409: nothing to do or not possible now: already paused (pause), not paused (resume), not started yet, or
  failed, stopped or finished.

Snapshots (liberator.snapshots): `POST /sources/{name}/snapshot` with `{"tables": [...], "where": "...",
"blocking": false}`
(202: queued, with its `id`; the source takes it at its next loop), `POST /sources/{name}/snapshot-cancel`
with `{"id": "..."}`, and `GET /sources/{name}/snapshots` (queued, running with progress, refused).
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
from liberator.snapshots import SnapshotDesk, SnapshotRequest

PAUSE_WAIT = 10.0
ACTIONS = ("pause", "resume", "snapshot", "snapshot-cancel")
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
        self.desks: dict[str, SnapshotDesk] = {}  # the sources that take snapshots on demand
        self._lock = threading.Lock()  # one action at a time: a pause and a resume never interleave

    def act(self, name: str, action: str, body: dict[str, Any] | None = None) -> Answer:
        with self._lock:
            return self._act(name, action, body or {})

    def _act(self, name: str, action: str, body: dict[str, Any]) -> Answer:
        if action not in ACTIONS:
            return 404, {"message": f"unknown action {action!r}; use {', '.join(ACTIONS)}"}
        refusal = self._runner(name, action)
        if refusal is not None:
            return refusal
        runner = self.runners[name]
        if action == "pause":
            return self._pause(name, runner)
        if action == "resume":
            return self._resume(name, runner)
        desk = self.desks.get(name)
        if desk is None:
            return 409, {"source": name, "message": f"source {name} does not take snapshots on demand (yet)"}
        return self._snapshot(name, desk, body) if action == "snapshot" else self._cancel(name, desk, body)

    def snapshots(self, name: str) -> Answer:
        """GET /sources/{name}/snapshots."""
        refusal = self._runner(name, "report")
        if refusal is not None:
            return refusal
        desk = self.desks.get(name)
        if desk is None:
            return 409, {"source": name, "message": f"source {name} does not take snapshots on demand (yet)"}
        return 200, {"source": name, **desk.status()}

    def _runner(self, name: str, action: str) -> Answer | None:
        if name not in self.sources:
            known = ", ".join(sorted(self.sources)) or "none"
            return 404, {"source": name, "message": f"no source named {name!r}; known: {known}"}
        runner = self.runners.get(name)
        if runner is None:
            return 409, {"source": name, "message": f"source {name} has not started yet; try again once it runs"}
        if runner.state in ("failed", "stopped", "finished"):
            return 409, {"source": name, "message": f"source {name} is {runner.state}: there is nothing to {action}"}
        return None

    @staticmethod
    def _snapshot(name: str, desk: SnapshotDesk, body: dict[str, Any]) -> Answer:
        tables, where = body.get("tables"), body.get("where")
        if not isinstance(tables, list) or not tables or not all(isinstance(t, str) and t for t in tables):
            return 400, {"source": name, "message": 'give the tables to snapshot: {"tables": ["orders"]}'}
        if where is not None and (not isinstance(where, str) or not where.strip()):
            return 400, {"source": name, "message": '`where` must be an SQL condition, e.g. "id > 1000"'}
        blocking = body.get("blocking", False)
        if not isinstance(blocking, bool):
            return 400, {"source": name, "message": "`blocking` must be true or false"}
        request = SnapshotRequest(tuple(tables), where, blocking=blocking)
        desk.submit(request)
        return 202, {
            "source": name,
            "id": request.id,
            "message": f"snapshot {request.id} of {', '.join(tables)} queued on source {name}; "
            f"it starts at the source's next poll (`liberator snapshot CONFIG --source {name} --status`)",
        }

    @staticmethod
    def _cancel(name: str, desk: SnapshotDesk, body: dict[str, Any]) -> Answer:
        request_id = body.get("id")
        if not isinstance(request_id, str) or not desk.cancel(request_id):
            return 404, {"source": name, "message": f"source {name} has no snapshot {request_id!r} queued or running"}
        return 202, {"source": name, "id": request_id, "message": f"snapshot {request_id} cancelled on source {name}"}

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


def request(
    config: AppConfig,
    source: str,
    action: str,
    timeout: float = PAUSE_WAIT + 5,
    body: dict[str, Any] | None = None,
) -> Answer:
    """POST the action (GET for `snapshots`) to the running daemon of `config`: (status, answer)."""
    url = f"{admin_url(config)}/sources/{urllib.parse.quote(source, safe='')}/{action}"
    if action == "snapshots":
        post = urllib.request.Request(url, method="GET")
    else:
        data = json.dumps(body).encode() if body is not None else b""
        post = urllib.request.Request(url, method="POST", data=data, headers={"Content-Type": "application/json"})
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
