"""liberator's RegistryClient against the embedded registry and against a scripted Confluent one."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from liberator.embedded.registry.server import RegistryServer
from liberator.errors import ConfigError, IncompatibleSchemaError, SchemaError
from liberator.registry.client import RegistryClient, RegistryRequestError, RegistryUnavailable

SUBJECT = "shop.orders-value"
V1 = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "long"}]}
V2 = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "note", "type": "string", "default": ""}],
}
BREAKING = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryServer]:
    with RegistryServer(tmp_path / "registry.db") as srv:
        yield srv


@pytest.fixture
def registry(server: RegistryServer) -> Iterator[RegistryClient]:
    with RegistryClient(server.url) as client:
        yield client


def test_register_and_read_back(registry: RegistryClient) -> None:
    assert registry.subject_exists(SUBJECT) is False
    assert registry.latest(SUBJECT) is None
    assert registry.get_compatibility(SUBJECT) is None
    assert registry.subjects() == []

    assert registry.register(SUBJECT, V1) == 1
    assert registry.register(SUBJECT, V1) == 1
    assert registry.register(SUBJECT, V2) == 2
    assert registry.subject_exists(SUBJECT) is True
    assert registry.subjects() == [SUBJECT]
    assert registry.latest(SUBJECT) == (2, 2, V2)
    assert registry.get_schema(1) == V1
    assert registry.get_schema(registry.register("name-value", {"type": "string"})) == {"type": "string"}


def test_compatibility_level_per_subject(registry: RegistryClient) -> None:
    registry.set_compatibility(SUBJECT, "full_transitive")
    assert registry.get_compatibility(SUBJECT) == "FULL_TRANSITIVE"
    assert registry.get_compatibility("other-value") is None  # follows the global level
    with pytest.raises(ConfigError, match=r"SIDEWAYS.*use one of BACKWARD") as info:
        registry.set_compatibility(SUBJECT, "SIDEWAYS")
    assert "\n" not in str(info.value)


def test_incompatible_schema_error_is_one_line_with_cause_and_fix(registry: RegistryClient) -> None:
    registry.register(SUBJECT, V1)
    registry.set_compatibility(SUBJECT, "FULL")
    with pytest.raises(IncompatibleSchemaError) as info:
        registry.register(SUBJECT, BREAKING)
    assert str(info.value) == (
        "schema registry refused the new schema for subject 'shop.orders-value' under FULL compatibility: "
        "the new schema reads field id as string but version 1 writes long; make the change compatible "
        "(add a default, widen a type) or register it under a new topic; see `liberator schemas`"
    )
    assert registry.latest(SUBJECT) == (1, 1, V1)  # nothing was registered


def test_invalid_schema_is_a_schema_error(registry: RegistryClient) -> None:
    bad = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "x"}]}
    with pytest.raises(SchemaError, match="rejected the schema for subject 'x-value' as invalid: Invalid default"):
        registry.register("x-value", bad)


def test_unreachable_registry(tmp_path: Path) -> None:
    with RegistryServer(tmp_path / "registry.db") as srv:
        url = srv.url
    with pytest.raises(RegistryUnavailable) as info:
        RegistryClient(url).latest(SUBJECT)
    message = str(info.value)
    assert url in message and "start the registry" in message and "schema_registry.url" in message
    assert "\n" not in message


def test_registry_that_never_answers_times_out() -> None:
    # A listening socket nobody accepts from: the connection opens, the answer never comes.
    with socket.create_server(("127.0.0.1", 0)) as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(RegistryUnavailable, match=r"did not answer in time.*schema_registry\.url"):
            RegistryClient(url, timeout=0.3).register(SUBJECT, V1)


# --- a scripted registry that answers the way Confluent Schema Registry does ----------------------


class ScriptedRegistry:
    """Replays canned (status, JSON body) answers per "METHOD /path" and records every request."""

    def __init__(self, answers: dict[str, tuple[int, Any]]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.command, self.path, dict(self.headers), body))
                status, payload = outer.answers.get(f"{self.command} {self.path}", (404, {"error_code": 404}))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Any]:
    started: list[ScriptedRegistry] = []

    def start(answers: dict[str, tuple[int, Any]]) -> ScriptedRegistry:
        started.append(ScriptedRegistry(answers))
        return started[-1]

    yield start
    for fake in started:
        fake.close()


def test_confluent_incompatibility_details_are_extracted(scripted: Any) -> None:
    path = "/subjects/shop.orders-value/versions"
    fake = scripted(
        {
            f"POST {path}": (409, {"error_code": 409, "message": "Schema being registered is incompatible"}),
            "POST /compatibility/subjects/shop.orders-value/versions/latest?verbose=true": (
                200,
                {
                    "is_compatible": False,
                    "messages": [
                        "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'note' at "
                        "path '/fields/1' in the new schema has no default value and is missing in the old "
                        "schema', additionalInfo:'note'}",
                        "{oldSchemaVersion: 3}",
                        "{compatibility: 'BACKWARD'}",
                    ],
                },
            ),
            "GET /config/shop.orders-value?defaultToGlobal=true": (200, {"compatibilityLevel": "BACKWARD"}),
        }
    )
    with pytest.raises(IncompatibleSchemaError) as info:
        RegistryClient(fake.url).register(SUBJECT, V2)
    assert str(info.value) == (
        "schema registry refused the new schema for subject 'shop.orders-value' under BACKWARD "
        "compatibility: The field 'note' at path '/fields/1' in the new schema has no default value and "
        "is missing in the old schema; make the change compatible (add a default, widen a type) or "
        "register it under a new topic; see `liberator schemas`"
    )
    method, sent_path, headers, body = fake.requests[0]
    assert (method, sent_path) == ("POST", path)
    assert headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"
    assert json.loads(json.loads(body)["schema"]) == V2


def test_subject_is_url_encoded(scripted: Any) -> None:
    fake = scripted({"GET /subjects/team%2Forders%20v/versions": (200, [1])})
    assert RegistryClient(fake.url).subject_exists("team/orders v") is True


@pytest.mark.parametrize("basic_auth", [None, "liberator:wrong"])
def test_refused_credentials_are_a_config_error(scripted: Any, basic_auth: str | None) -> None:
    fake = scripted({"GET /subjects/s/versions/latest": (401, {"error_code": 401, "message": "Unauthorized"})})
    with pytest.raises(ConfigError, match=r"HTTP 401.*schema_registry\.basic_auth") as info:
        RegistryClient(fake.url, basic_auth=basic_auth).latest("s")
    assert "\n" not in str(info.value)
    authorization = fake.requests[0][2].get("Authorization")
    assert (authorization is not None) == (basic_auth is not None)


def test_basic_auth_must_have_a_password_separator() -> None:
    with pytest.raises(ConfigError, match="user:password"):
        RegistryClient("http://127.0.0.1:1", basic_auth="just-a-user")


def test_store_error_is_retryable_and_unknown_id_is_explained(scripted: Any) -> None:
    fake = scripted(
        {
            "GET /subjects/s/versions/latest": (
                500,
                {"error_code": 50001, "message": "Error in the backend"},
            ),
            "GET /schemas/ids/9": (404, {"error_code": 40403, "message": "Schema 9 not found"}),
        }
    )
    client = RegistryClient(fake.url)
    with pytest.raises(RegistryUnavailable, match="HTTP 500, error 50001: Error in the backend"):
        client.latest("s")
    with pytest.raises(RegistryRequestError, match="no schema with id 9"):
        client.get_schema(9)
