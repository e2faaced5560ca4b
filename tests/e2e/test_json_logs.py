"""The daemon's log off a terminal is JSON: every line one object with time, level, logger, the source or sink
it is about, and the message; and a planted password never shows in it, whole, percent-encoded, JSON-escaped
or in pieces (it holds a quote and a backslash, which JSON escapes: scrubbing after encoding would miss them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from liberator_testbed import PostgresInstance
from tests.support import NotYet, app_config, read_topic, terminate, wait_for

pytestmark = pytest.mark.e2e

PASSWORD = 'Js9"Qm\\Kx@Lp4:Wd/ Nz%Rt7'  # works for the good source
WRONG = 'Wr0"Ng\\Yy@Bb2:Cc/ Dd%Ee5'  # refused for the bad one


def forms(secret: str) -> list[str]:
    """Every way `secret` could show: as is, percent-encoded, JSON-escaped, and its pieces."""
    pieces = [p for p in secret.replace("@", " ").replace(":", " ").replace("/", " ").split() if len(p) >= 4]
    return [secret, quote(secret, safe=""), quote(secret), json.dumps(secret)[1:-1], *pieces]


def test_every_line_of_the_daemons_log_is_a_json_object_without_the_password(
    postgres_server: PostgresInstance, pg_database: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str
) -> None:
    user = f"j{uuid.uuid4().hex[:8]}"
    postgres_server.create_user(user, PASSWORD)
    postgres_server.execute(f"GRANT pg_read_all_data TO {user}")
    postgres_server.execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)", database=pg_database)
    postgres_server.execute("INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')", database=pg_database)
    host = f"{postgres_server.host}:{postgres_server.port}/{pg_database}"
    sources = "".join(
        f"  - name: {name}\n    type: query\n    url: postgresql://{user}:${{{var}}}@{host}\n"
        f'    tables: [items]\n    cursor: [id]\n    poll_interval: 200ms\n    topic: "{user}.{name}.{{table}}"\n'
        for name, var in (("good", "DB_PASSWORD"), ("bad", "WRONG_PASSWORD"))
    )
    config = app_config(tmp_path, kafka_bootstrap, registry_url, sources)
    text = config.read_text().replace(
        "kafka:\n", "kafka:\n  settings:\n    sasl.username: liberator\n    sasl.password: ${DB_PASSWORD}\n", 1
    )
    config.write_text(text)
    log = tmp_path / "daemon.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DB_PASSWORD": PASSWORD, "WRONG_PASSWORD": WRONG}
    with open(log, "wb") as handle:  # not a terminal: JSON by default, no --log-format given
        process = subprocess.Popen(
            [sys.executable, "-m", "liberator", "run", str(config), "--log-level", "DEBUG"],
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env=env,
        )
    try:
        records = read_topic(kafka_bootstrap, registry_url, f"{user}.good.items", expect=3, timeout=60)
        assert [r["key"]["id"] for r in records] == [1, 2, 3]

        def bad_source_refused() -> bool:
            if '"source": "bad"' not in log.read_text():
                raise NotYet("no line about the bad source yet")
            return "refused the credentials" in log.read_text()

        wait_for(bad_source_refused, timeout=60, what="a line saying the bad source's password was refused")
    finally:
        code = terminate(process)
    assert code == 1, log.read_text()[-3000:]  # the bad source failed: refused credentials need an operator

    text = log.read_text()
    lines = text.splitlines()
    assert len(lines) > 10, text
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} of the daemon's log is not JSON: {line!r}")
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= entry.keys(), line
        assert entry["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
        datetime.fromisoformat(entry["time"])
        parsed.append(entry)
    about = {(e.get("source"), e.get("sink")) for e in parsed}
    assert ("good", None) in about and ("bad", None) in about
    assert all(e["logger"] == f"liberator.source.{e['source']}" for e in parsed if "source" in e)
    refused = [e for e in parsed if e.get("source") == "bad" and "refused" in e["message"]]
    assert refused and refused[0]["level"] == "ERROR", refused
    assert any(e["logger"] == "liberator" and "stopped" in e["message"] for e in parsed)
    leaked = [form for secret in (PASSWORD, WRONG) for form in forms(secret) if form in text]
    assert leaked == [], leaked
