"""A tiny HTTP endpoint for operators: /health (JSON; 503 once a source or sink failed, `degraded` but 200
while one retries, is in backpressure or has a stalled position), the probes /health/live (200 while the
daemon's main loop ticks) and /health/ready (200 only while every source and sink is connected and running
or standing by), /metrics, and the admin actions POST /sources/NAME/pause|resume (liberator.admin)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from liberator.admin import Admin
from liberator.errors import ConfigError
from liberator.metrics import Metrics
from liberator.redaction import scrub

HEALTH_PATH = "/health"
LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"
METRICS_PATH = "/metrics"


def start_http(listen: str, metrics: Metrics, admin: Admin | None = None) -> ThreadingHTTPServer:
    host, _, port_text = listen.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"http.listen {listen!r} is not host:port; write e.g. 127.0.0.1:9400") from None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if path == HEALTH_PATH:
                self._json(metrics.healthy(), metrics.health())
            elif path == LIVE_PATH:
                self._json(metrics.heartbeat.live(), metrics.liveness())
            elif path == READY_PATH:
                readiness = metrics.readiness()
                self._json(not readiness["not_ready"], readiness)
            elif path == METRICS_PATH:
                self._send(200, "text/plain; version=0.0.4", metrics.prometheus().encode())
            elif (
                admin is not None
                and (parts := path.strip("/").split("/"))[0] == "sources"
                and parts[-1:] == ["snapshots"]
                and len(parts) == 3
            ):
                code, answer = admin.snapshots(urllib.parse.unquote(parts[1]))
                self._send(code, "application/json", json.dumps(answer).encode())
            else:
                self._send(404, "text/plain", b"try /health, /health/live, /health/ready or /metrics\n")

        def do_POST(self) -> None:
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            if admin is None or len(parts) != 3 or parts[0] != "sources":
                self._send(404, "text/plain", b"try POST /sources/NAME/pause or /sources/NAME/resume\n")
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(min(length, 1 << 16)) or b"{}") if length else {}
            except ValueError:
                self._send(400, "application/json", json.dumps({"message": "the body is not JSON"}).encode())
                return
            if not isinstance(body, dict):
                body = {}
            code, answer = admin.act(urllib.parse.unquote(parts[1]), parts[2], body)
            self._send(code, "application/json", json.dumps(answer).encode())

        def _json(self, ok: bool, document: object) -> None:
            self._send(200 if ok else 503, "application/json", json.dumps(document, indent=1).encode())

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            body = scrub(body.decode()).encode()  # errors quote drivers and brokers; secrets stay out
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the daemon's own log

    try:
        server = ThreadingHTTPServer((host or "127.0.0.1", port), Handler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {listen} for /health: {exc.strerror}; change http.listen") from None
    threading.Thread(target=server.serve_forever, name="liberator-http", daemon=True).start()
    return server
