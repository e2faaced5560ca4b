"""A tiny HTTP endpoint for operators: /health (JSON; 503 once a source or sink failed, `degraded` but 200
while one retries, is in backpressure or has a stalled position) and /metrics."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from liberator.errors import ConfigError
from liberator.metrics import Metrics
from liberator.redaction import scrub


def start_http(listen: str, metrics: Metrics) -> ThreadingHTTPServer:
    host, _, port_text = listen.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"http.listen {listen!r} is not host:port; write e.g. 127.0.0.1:9400") from None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/health"):
                body = json.dumps(metrics.health(), indent=1).encode()
                self._send(200 if metrics.healthy() else 503, "application/json", body)
            elif self.path.startswith("/metrics"):
                self._send(200, "text/plain; version=0.0.4", metrics.prometheus().encode())
            else:
                self._send(404, "text/plain", b"try /health or /metrics\n")

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
