"""Confluent-compatible schema registry REST API on the standard library's HTTP server.

Implements the subset producers, consumers and operators use (subjects, versions, schemas by id,
compatibility config and tests), with Confluent's status codes, error codes and JSON shapes, so the
stock ``confluent_kafka.schema_registry`` client and serializers work against it unchanged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from liberator.embedded.registry.api import CONTENT_TYPE, MAX_BODY_BYTES, RawJson, RegistryApi
from liberator.embedded.registry.store import RegistryStore
from liberator.errors import ConfigError
from liberator.registry import errors as registry_errors
from liberator.registry.errors import RegistryError

log = logging.getLogger(__name__)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: RegistryApi) -> None:
        self.api = api
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the Confluent clients reuse connections
    timeout = 30  # an idle keep-alive connection gives its thread back after this many seconds
    # Headers and body go out as two writes; with Nagle on, the client's delayed ACK adds ~40 ms.
    disable_nagle_algorithm = True
    server: _HTTPServer
    server_version = "liberator-registry"

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_GET

    def _dispatch(self) -> None:
        started = time.monotonic()
        try:
            split = urlsplit(self.path)
            # Split before unquoting: a subject may contain an encoded "/".
            path = [unquote(part) for part in split.path.split("/") if part]
            query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            status, payload = self.server.api.handle(self.command, path, query, self._body())
        except RegistryError as e:
            status, payload = e.status, {"error_code": e.error_code, "message": e.message}
        except sqlite3.Error as e:
            err = registry_errors.store_error(e)
            status, payload = err.status, {"error_code": err.error_code, "message": err.message}
        except Exception as e:  # a bug must still produce a JSON error, not a dropped connection
            log.exception("schema registry: %s %s failed", self.command, self.path)
            status, payload = 500, {"error_code": 50001, "message": f"Internal error: {e}"}
        self._send(status, payload)
        log.debug(
            "%s %s %s %d %.1fms",
            self.client_address[0],
            self.command,
            self.path,
            status,
            (time.monotonic() - started) * 1000,
        )

    def _body(self) -> Any:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self._read_chunked()
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise RegistryError(400, 400, "Invalid Content-Length") from None
            if length > MAX_BODY_BYTES:
                self.close_connection = True  # the unread body would corrupt the next request
                raise RegistryError(413, 413, f"Request body larger than {MAX_BODY_BYTES} bytes")
            raw = self.rfile.read(length) if length > 0 else b""
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise RegistryError(400, 400, f"Malformed JSON request body: {e}") from None

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():  # trailers
                    pass
                return data
            data += self.rfile.read(size)
            self.rfile.readline()
            if len(data) > MAX_BODY_BYTES:
                self.close_connection = True
                raise RegistryError(413, 413, f"Request body larger than {MAX_BODY_BYTES} bytes")

    def _send(self, status: int, payload: Any) -> None:
        text = payload if isinstance(payload, RawJson) else json.dumps(payload, ensure_ascii=False)
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _dispatch logs one line per request with its duration

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("schema registry: " + format, *args)


class RegistryServer:
    """The embedded registry on ``host:port`` (port 0 picks a free one), storing into ``data_path``."""

    def __init__(self, data_path: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.data_path = Path(data_path)
        self.host = host
        self._requested_port = port
        self._httpd: _HTTPServer | None = None
        self._store: RegistryStore | None = None
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1]) if self._httpd is not None else self._requested_port

    @property
    def url(self) -> str:
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def _open(self) -> _HTTPServer:
        if self._httpd is not None:
            return self._httpd
        try:
            self.data_path.parent.mkdir(parents=True, exist_ok=True)
            store = RegistryStore(self.data_path)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(
                f"cannot open the schema registry data file {self.data_path} ({e}); point --data at a writable path"
            ) from e
        cls = _HTTPServer6 if ":" in self.host else _HTTPServer
        try:
            self._httpd = cls((self.host, self._requested_port), RegistryApi(store))
        except OSError as e:
            store.close()
            raise ConfigError(
                f"the schema registry cannot listen on {self.host}:{self._requested_port} "
                f"({e.strerror or e}); choose another --port or stop what is using it"
            ) from e
        self._store = store
        return self._httpd

    def start(self) -> None:
        """Listen and serve from a background thread; returns once the port accepts connections."""
        httpd = self._open()
        if self._thread is None:
            self._serving = True
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="liberator-registry",
                daemon=True,
            )
            self._thread.start()

    def serve_forever(self) -> None:
        """Listen and serve on the calling thread until :meth:`stop` is called from another one."""
        httpd = self._open()
        self._serving = True
        try:
            httpd.serve_forever(poll_interval=0.2)
        finally:
            self._serving = False

    def interrupt(self) -> None:
        """Make :meth:`serve_forever` return soon; safe from a signal handler on the serving thread."""
        httpd = self._httpd
        if httpd is not None:
            # shutdown() waits for the serving loop, which may run on this very thread: ask elsewhere.
            threading.Thread(target=httpd.shutdown, daemon=True).start()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        if self._serving:
            httpd.shutdown()
            self._serving = False
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        # Cut idle keep-alive connections so their threads cannot serve from a closed store.
        with httpd.connections_lock:
            for conn in list(httpd.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> RegistryServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(host: str, port: int, data_path: str) -> None:
    """``liberator registry serve``: run the registry in the foreground until Ctrl-C or SIGTERM."""
    server = RegistryServer(data_path, host, port)
    server._open()
    log.info("schema registry listening on %s, data in %s", server.url, data_path)

    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:

        def on_term(signum: int, frame: FrameType | None) -> None:
            server.interrupt()

        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
