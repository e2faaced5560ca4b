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
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from liberator.errors import ConfigError
from liberator.registry import store as st
from liberator.registry.compatibility import (
    SUPPORTED_SCHEMA_TYPES,
    InvalidSchemaError,
    ParsedSchema,
    check_compatibility,
    normalize_level,
    parse_schema,
)
from liberator.registry.store import RegistryError, RegistryStore, SubjectVersion

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
MAX_BODY_BYTES = 16 * 1024 * 1024
_MAX_VERSION = 2**31 - 1


class RawJson(str):
    """A response body that already is JSON text (``GET .../versions/{v}/schema``)."""


Query = dict[str, str]


def _flag(query: Query, name: str) -> bool:
    # The stock Python client sends Python's str(bool): "True"/"False".
    return query.get(name, "").lower() == "true"


def _page(items: list[Any], query: Query) -> list[Any]:
    try:
        offset = max(int(query.get("offset", "0")), 0)
        limit = int(query.get("limit", "-1"))
    except ValueError:
        return items
    items = items[offset:]
    return items[:limit] if limit >= 0 else items


def _version(text: str) -> int | None:
    """A path version: a number, or None for ``latest`` (Confluent also takes -1)."""
    if text in ("latest", "-1"):
        return None
    try:
        number = int(text)
    except ValueError:
        raise st.invalid_version(text) from None
    if not 1 <= number <= _MAX_VERSION:
        raise st.invalid_version(text)
    return number


def _version_body(row: SubjectVersion) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": row.subject,
        "version": row.version,
        "id": row.schema_id,
        "schema": row.schema,
    }
    if row.schema_type != "AVRO":  # Confluent leaves schemaType out for AVRO
        body["schemaType"] = row.schema_type
    return body


class RegistryApi:
    """Maps (method, path segments, query, body) to (HTTP status, JSON payload); no I/O of its own."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store

    def handle(self, method: str, path: list[str], query: Query, body: Any) -> tuple[int, Any]:
        s = self.store
        match (method, path):
            case ("GET", []):
                return 200, {}
            case ("GET", ["health"]):
                s.ping()
                return 200, {"status": "ok"}
            case ("GET", ["subjects"]):
                names = s.subjects(
                    include_deleted=_flag(query, "deleted"),
                    deleted_only=_flag(query, "deleted_only"),
                    prefix=query.get("subjectPrefix"),
                )
                return 200, _page(names, query)
            case ("POST", ["subjects", subject]):
                parsed = self._schema(body)
                row = s.lookup(subject, parsed.canonical, include_deleted=_flag(query, "deleted"))
                return 200, _version_body(row)
            case ("DELETE", ["subjects", subject]):
                return 200, s.delete_subject(subject, permanent=_flag(query, "permanent"))
            case ("GET", ["subjects", subject, "versions"]):
                rows = s.versions(
                    subject,
                    include_deleted=_flag(query, "deleted"),
                    deleted_only=_flag(query, "deleted_only"),
                )
                return 200, _page([r.version for r in rows], query)
            case ("POST", ["subjects", subject, "versions"]):
                return 200, {"id": self._register(subject, body)}
            case ("GET", ["subjects", subject, "versions", version]):
                row = s.get_version(subject, _version(version), include_deleted=_flag(query, "deleted"))
                return 200, _version_body(row)
            case ("DELETE", ["subjects", subject, "versions", version]):
                return 200, s.delete_version(subject, _version(version), permanent=_flag(query, "permanent"))
            case ("GET", ["subjects", subject, "versions", version, "schema"]):
                row = s.get_version(subject, _version(version), include_deleted=_flag(query, "deleted"))
                return 200, RawJson(row.schema)
            case ("GET", ["subjects", subject, "versions", version, "referencedby"]):
                s.get_version(subject, _version(version), include_deleted=True)
                return 200, []  # references are refused at registration, so nothing refers to anything
            case ("GET", ["schemas", "types"]):
                return 200, list(SUPPORTED_SCHEMA_TYPES)
            case ("GET", ["schemas", "ids", schema_id]):
                text, schema_type = s.schema_by_id(self._id(schema_id))
                found: dict[str, Any] = {"schema": text}
                if schema_type != "AVRO":
                    found["schemaType"] = schema_type
                return 200, found
            case ("GET", ["schemas", "ids", schema_id, "versions"]):
                pairs = s.versions_of_schema(self._id(schema_id), include_deleted=_flag(query, "deleted"))
                return 200, _page([{"subject": sub, "version": v} for sub, v in pairs], query)
            case ("GET", ["schemas", "ids", schema_id, "subjects"]):
                pairs = s.versions_of_schema(self._id(schema_id), include_deleted=_flag(query, "deleted"))
                return 200, _page(sorted({sub for sub, _ in pairs}), query)
            case ("GET", ["config"]):
                return 200, {"compatibilityLevel": s.global_level()}
            case ("PUT", ["config"]):
                level = self._level(body)
                s.set_global_level(level)
                return 200, {"compatibility": level}
            case ("DELETE", ["config"]):
                return 200, {"compatibilityLevel": s.reset_global_level()}
            case ("GET", ["config", subject]):
                own = s.subject_level(subject)
                if own is not None:
                    return 200, {"compatibilityLevel": own}
                if _flag(query, "defaultToGlobal"):
                    return 200, {"compatibilityLevel": s.global_level()}
                raise st.subject_config_not_found(subject)
            case ("PUT", ["config", subject]):
                level = self._level(body)
                s.set_subject_level(subject, level)
                return 200, {"compatibility": level}
            case ("DELETE", ["config", subject]):
                return 200, {"compatibilityLevel": s.delete_subject_level(subject)}
            case ("POST", ["compatibility", "subjects", subject, "versions", *rest]) if len(rest) <= 1:
                return 200, self._test(subject, rest[0] if rest else None, body, _flag(query, "verbose"))
        if _known_path(path):
            raise RegistryError(405, 405, "HTTP 405 Method Not Allowed")
        raise RegistryError(404, 404, "HTTP 404 Not Found")

    @staticmethod
    def _id(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise st.schema_not_found(text) from None

    @staticmethod
    def _schema(body: Any) -> ParsedSchema:
        if not isinstance(body, dict):
            raise st.invalid_schema("Invalid schema: the request body must be a JSON object with a 'schema'")
        try:
            return parse_schema(body.get("schema"), body.get("schemaType"), body.get("references"))
        except InvalidSchemaError as e:
            raise st.invalid_schema(str(e)) from None

    @staticmethod
    def _level(body: Any) -> str:
        value = body.get("compatibility") if isinstance(body, dict) else None
        try:
            return normalize_level(value)
        except ValueError as e:
            raise st.invalid_compatibility(str(e)) from None

    @staticmethod
    def _previous(rows: Sequence[SubjectVersion]) -> list[tuple[int, Any]]:
        return [(r.version, parse_schema(r.schema, r.schema_type).schema) for r in rows]

    def _register(self, subject: str, body: Any) -> int:
        parsed = self._schema(body)
        # "normalize" is accepted and needs no work: every schema is stored in canonical form.

        def check(level: str, live: Sequence[SubjectVersion]) -> list[str]:
            return check_compatibility(level, parsed.schema, self._previous(live))

        schema_id, _ = self.store.register(subject, parsed.canonical, "AVRO", check)
        return schema_id

    def _test(self, subject: str, version: str | None, body: Any, verbose: bool) -> dict[str, Any]:
        parsed = self._schema(body)
        level = self.store.effective_level(subject)
        if version is None:
            try:
                rows = self.store.versions(subject)
            except RegistryError as e:
                if e.error_code != 40401:
                    raise
                rows = []  # nothing registered yet: anything is compatible
        else:
            rows = [self.store.get_version(subject, _version(version))]
        messages = check_compatibility(level, parsed.schema, self._previous(rows))
        result: dict[str, Any] = {"is_compatible": not messages}
        if verbose:
            result["messages"] = messages
        return result


def _known_path(path: list[str]) -> bool:
    match path:
        case [] | ["health"] | ["subjects"] | ["subjects", _] | ["subjects", _, "versions"]:
            return True
        case ["subjects", _, "versions", _] | ["subjects", _, "versions", _, "schema" | "referencedby"]:
            return True
        case ["schemas", "types"] | ["schemas", "ids", _] | ["schemas", "ids", _, "versions" | "subjects"]:
            return True
        case ["config"] | ["config", _] | ["compatibility", "subjects", _, "versions", *_]:
            return True
    return False


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
            err = st.store_error(e)
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
