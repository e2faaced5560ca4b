"""What POST /sources/NAME/pause|resume answers (liberator.admin), on a stand-in for a source runner."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from liberator import admin
from liberator.admin import Admin, admin_url
from liberator.config import load_config
from liberator.errors import LiberatorError


class Runner:
    def __init__(self, confirms: bool = True) -> None:
        self.paused = threading.Event()
        self.asked = False
        self.confirms = confirms  # the reading thread stops reading at once (else it is inside a call)
        self.state = "running"

    def pause_reading(self) -> bool:
        if self.asked:
            return False
        self.asked = True
        if self.confirms:
            self.paused.set()
        return True

    def resume_reading(self) -> bool:
        if not self.asked:
            return False
        self.asked = False
        self.paused.clear()
        return True


def test_pause_and_resume_answer_200_once_and_409_when_there_is_nothing_to_do() -> None:
    actions = Admin(["pg", "query"])
    assert actions.act("pg", "pause")[0] == 409  # no runner yet: the daemon is still starting
    actions.runners["pg"] = Runner()
    assert actions.act("pg", "pause") == (200, {"source": "pg", "paused": True, "message": "source pg paused"})
    assert actions.act("pg", "pause")[0] == 409
    assert actions.act("pg", "resume")[0] == 200
    assert actions.act("pg", "resume")[0] == 409
    code, answer = actions.act("nope", "pause")
    assert code == 404 and answer["message"] == "no source named 'nope'; known: pg, query"
    assert actions.act("pg", "explode")[0] == 404
    actions.runners["query"] = finished = Runner()
    finished.state = "finished"
    assert actions.act("query", "pause")[0] == 409


def test_a_pause_the_reading_thread_has_not_confirmed_in_time_is_202(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin, "PAUSE_WAIT", 0.01)
    actions = Admin(["pg"])
    actions.runners["pg"] = Runner(confirms=False)
    assert actions.act("pg", "pause")[0] == 202


def test_the_cli_finds_the_daemon_at_http_listen_and_needs_it(tmp_path: Path) -> None:
    base = "name: app\nkafka: {bootstrap_servers: 'b:9092'}\nschema_registry: {url: 'http://r'}\nsinks: []\n"
    base += "sources: [{name: q, type: query, url: 'sqlite://', tables: [t], cursor: [u]}]\n"
    path = tmp_path / "a.yaml"
    path.write_text(base + "http: {listen: '0.0.0.0:9555'}\n")
    assert admin_url(load_config(path)) == "http://127.0.0.1:9555"
    path.write_text(base)
    with pytest.raises(LiberatorError, match="has no http: section"):
        admin_url(load_config(path))
