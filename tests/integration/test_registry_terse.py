"""A registry whose refusals are terse (Karapace: `reader type: string not compatible with writer type: int`):
the source still stops with one line naming the table, the field and the rule.

The embedded registry is put behind a real HTTP proxy that answers refusals the way Karapace does: the 409 of a
registration and the verbose compatibility check carry only the terse reason; everything else passes through.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.legacy_db import LegacyDb
from tests.support import DaemonThread, app_config, read_topic

KARAPACE = "reader type: string not compatible with writer type: int"


class KarapaceLike:
    """Forwards to `upstream`; an incompatibility comes back with Karapace's terse wording only."""

    def __init__(self, upstream: str) -> None:
        client = httpx.Client(base_url=upstream, timeout=10)
        self.refusals = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                answer = client.request(self.command, self.path, content=body or None, headers=headers)
                status, data = answer.status_code, answer.content
                if status == 409:
                    outer.refusals += 1
                    data = httpx.Response(409, json={"error_code": 409, "message": KARAPACE}).content
                elif "verbose=true" in self.path and answer.is_success and not answer.json()["is_compatible"]:
                    data = httpx.Response(200, json={"is_compatible": False, "messages": [KARAPACE]}).content
                self.send_response(status)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._client = client
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._client.close()


@pytest.fixture
def terse_registry(registry_url: str) -> Iterator[KarapaceLike]:
    proxy = KarapaceLike(registry_url)
    yield proxy
    proxy.close()


def test_terse_refusal_names_table_field_and_rule(
    pg_url: str, tmp_path: Path, kafka_bootstrap: str, registry_url: str, terse_registry: KarapaceLike
) -> None:
    legacy = LegacyDb(pg_url, "postgresql")
    legacy.create_orders()
    legacy.insert_order(1)
    source = (
        f'  - name: legacy\n    topic: "{legacy.prefix}.{{schema}}.{{table}}"\n'
        f"    type: query\n    url: {legacy.url}\n    tables: [orders]\n"
        "    cursor: [updated_at, id]\n    poll_interval: 200ms\n    safety_delay: 500ms\n    schema_refresh: 200ms\n"
    )
    config = app_config(tmp_path, kafka_bootstrap, terse_registry.url, source)
    topic = f"{legacy.prefix}.public.orders"
    with DaemonThread(config) as daemon:
        read_topic(kafka_bootstrap, registry_url, topic, expect=1)
        legacy.run("ALTER TABLE orders ALTER COLUMN qty TYPE TEXT")
        legacy.run(f"UPDATE orders SET qty = 'many', updated_at = {legacy.now} WHERE id = 1")
        assert daemon.wait(30) == 1
        status = daemon.status("legacy")
    assert terse_registry.refusals == 1
    assert status.state == "failed"
    assert status.error == (
        f"table public.orders: schema registry refused the new schema for subject '{topic}-value' under BACKWARD "
        "compatibility: the new schema reads field qty as string but version 1 writes int (the registry said: "
        f"{KARAPACE}); make the change compatible (add a default, widen a type) or register it under a new "
        "topic; see `liberator schemas`"
    )
