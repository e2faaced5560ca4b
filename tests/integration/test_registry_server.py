"""The embedded registry driven by the stock Confluent client and serializers (no other servers)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from liberator.embedded.registry.server import CONTENT_TYPE, RegistryServer

SUBJECT = "shop.orders-value"


def avro(*fields: dict[str, Any], name: str = "Order") -> Schema:
    return Schema(json.dumps({"type": "record", "name": name, "fields": list(fields)}), "AVRO")


V1 = avro({"name": "id", "type": "long"})
V2 = avro({"name": "id", "type": "long"}, {"name": "note", "type": "string", "default": ""})
BREAKING = avro({"name": "id", "type": "string"})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryServer]:
    srv = RegistryServer(tmp_path / "registry.db")
    srv.start()
    yield srv
    srv.stop()


def client(server: RegistryServer) -> SchemaRegistryClient:
    # A fresh client per use: the stock client caches answers, which would hide the server's.
    return SchemaRegistryClient({"url": server.url, "max.retries": 0})


def sr_error(call: Any, *args: Any, **kwargs: Any) -> SchemaRegistryError:
    with pytest.raises(SchemaRegistryError) as info:
        call(*args, **kwargs)
    return info.value


def test_register_assigns_global_ids_and_versions(server: RegistryServer) -> None:
    sr = client(server)
    assert sr.register_schema(SUBJECT, V1) == 1
    assert sr.register_schema("other-value", V1) == 1  # same schema, same id, in any subject
    assert sr.register_schema(SUBJECT, V2) == 2
    # Same schema spelled differently: the existing id, and no new version.
    respelled = Schema(json.dumps(json.loads(V1.schema_str), indent=4), "AVRO")
    assert client(server).register_schema(SUBJECT, respelled) == 1
    assert client(server).get_versions(SUBJECT) == [1, 2]
    assert client(server).get_versions("other-value") == [1]
    assert sorted(client(server).get_subjects()) == ["other-value", SUBJECT]


def test_lookup_get_by_id_and_versions(server: RegistryServer) -> None:
    client(server).register_schema(SUBJECT, V1)
    client(server).register_schema(SUBJECT, V2)
    sr = client(server)
    found = sr.lookup_schema(SUBJECT, V1)
    assert (found.schema_id, found.version, found.subject) == (1, 1, SUBJECT)
    assert json.loads(sr.get_schema(2).schema_str) == json.loads(V2.schema_str)
    latest = sr.get_latest_version(SUBJECT)
    assert (latest.schema_id, latest.version) == (2, 2)
    assert sr.get_version(SUBJECT, 1).schema_id == 1
    assert [(v.subject, v.version) for v in sr.get_schema_versions(2)] == [(SUBJECT, 2)]
    assert sr.get_subjects_by_schema_id(1) == [SUBJECT]
    assert sr.get_schema_types() == ["AVRO"]

    assert sr_error(sr.lookup_schema, SUBJECT, BREAKING).error_code == 40403
    assert sr_error(sr.lookup_schema, "missing-value", V1).error_code == 40401
    assert sr_error(sr.get_version, SUBJECT, 7).error_code == 40402
    assert sr_error(sr.get_version, SUBJECT, 0).error_code == 42202
    assert sr_error(sr.get_schema, 99).error_code == 40403


def test_soft_and_permanent_delete(server: RegistryServer) -> None:
    client(server).register_schema(SUBJECT, V1)
    client(server).register_schema(SUBJECT, V2)
    sr = client(server)
    assert sr.delete_version(SUBJECT, 1) == 1
    assert client(server).get_versions(SUBJECT) == [2]
    assert client(server).get_versions(SUBJECT, deleted=True) == [1, 2]
    # A soft-deleted version's id still resolves: consumers may hold data written with it.
    assert client(server).get_schema(1).schema_str is not None
    assert sr_error(client(server).delete_subject, SUBJECT, permanent=True).error_code == 40405

    # The stock client spells this flag "deleted=True" (Python's str of a bool).
    assert client(server).lookup_schema(SUBJECT, V1, deleted=True).version == 1
    assert sr_error(client(server).lookup_schema, SUBJECT, V1).error_code == 40403

    client(server).set_compatibility(SUBJECT, "NONE")
    assert client(server).delete_subject(SUBJECT) == [2]
    assert client(server).get_subjects() == []
    assert client(server).get_subjects(deleted=True) == [SUBJECT]
    assert sr_error(client(server).get_versions, SUBJECT).error_code == 40401
    assert sr_error(client(server).delete_subject, SUBJECT).error_code == 40404

    assert client(server).delete_subject(SUBJECT, permanent=True) == [1, 2]
    assert client(server).get_subjects(deleted=True) == []
    assert sr_error(client(server).get_schema, 1).error_code == 40403
    assert sr_error(client(server).get_compatibility, SUBJECT).error_code == 40408  # config went too
    # Numbering starts again after a permanent delete; the content keeps its id.
    assert client(server).register_schema(SUBJECT, V2) == 2
    assert client(server).get_latest_version(SUBJECT).version == 1


def test_compatibility_config(server: RegistryServer) -> None:
    sr = client(server)
    assert sr.get_compatibility() == "BACKWARD"
    assert sr.set_compatibility(level="full") == {"compatibility": "FULL"}
    assert sr_error(sr.get_compatibility, SUBJECT).error_code == 40408
    fallback = httpx.get(f"{server.url}/config/{SUBJECT}", params={"defaultToGlobal": "true"})
    assert fallback.json() == {"compatibilityLevel": "FULL"}

    # A subject may be configured before anything is registered under it.
    sr.set_compatibility(SUBJECT, "none")
    assert sr.get_compatibility(SUBJECT) == "NONE"
    assert sr.get_config(SUBJECT).compatibility_level == "NONE"
    assert sr.delete_config(SUBJECT).compatibility_level == "NONE"
    assert sr_error(sr.get_compatibility, SUBJECT).error_code == 40408
    assert sr_error(sr.set_compatibility, SUBJECT, "sideways").error_code == 42203

    assert sr.delete_config().compatibility_level == "FULL"
    assert sr.get_compatibility() == "BACKWARD"


def test_registration_enforces_the_subject_level(server: RegistryServer) -> None:
    client(server).register_schema(SUBJECT, V1)
    error = sr_error(client(server).register_schema, SUBJECT, BREAKING)
    assert (error.http_status_code, error.error_code) == (409, 409)
    assert "field id" in error.error_message

    assert client(server).test_compatibility(SUBJECT, V2) is True
    assert client(server).test_compatibility(SUBJECT, BREAKING) is False
    verbose = httpx.post(
        f"{server.url}/compatibility/subjects/{SUBJECT}/versions/latest",
        params={"verbose": "true"},
        json={"schema": BREAKING.schema_str},
    ).json()
    assert verbose["is_compatible"] is False
    assert verbose["messages"] == ["the new schema reads field id as string but version 1 writes long"]

    client(server).set_compatibility(SUBJECT, "NONE")
    assert client(server).register_schema(SUBJECT, BREAKING) == 2


def test_concurrent_registrations_of_one_schema_make_one_version(server: RegistryServer) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: client(server).register_schema(SUBJECT, V1), range(16)))
        ids += list(pool.map(lambda n: client(server).register_schema(f"s{n}-value", V2), range(8)))
    assert ids == [1] * 16 + [2] * 8
    assert client(server).get_versions(SUBJECT) == [1]


def test_transitive_level_checks_every_live_version(server: RegistryServer) -> None:
    client(server).set_compatibility(SUBJECT, "NONE")
    client(server).register_schema(SUBJECT, avro({"name": "a", "type": "int"}))
    client(server).register_schema(SUBJECT, avro())
    client(server).set_compatibility(SUBJECT, "BACKWARD_TRANSITIVE")
    candidate = avro({"name": "a", "type": "string", "default": ""})
    sr = client(server)
    assert sr.test_compatibility(SUBJECT, candidate, version=2) is True
    assert sr.test_compatibility(SUBJECT, candidate, version=1) is False
    assert sr.test_compatibility_all_versions(SUBJECT, candidate) is False
    assert sr_error(sr.register_schema, SUBJECT, candidate).error_code == 409
    # Soft-deleted versions no longer constrain new ones.
    sr.delete_version(SUBJECT, 1)
    assert client(server).register_schema(SUBJECT, candidate) == 3


def test_invalid_schemas_are_refused(server: RegistryServer) -> None:
    sr = client(server)
    cases = [
        Schema('{"type": "record", "name": "R", "fields": [{"name": "a"}]}', "AVRO"),
        Schema('{"type": "object"}', "JSON"),
        Schema(
            '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", "default": "x"}]}',
            "AVRO",
        ),
    ]
    for bad in cases:
        error = sr_error(sr.register_schema, SUBJECT, bad)
        assert (error.http_status_code, error.error_code) == (422, 42201), error
    assert "AVRO" in sr_error(sr.register_schema, SUBJECT, cases[1]).error_message
    assert client(server).get_subjects() == []


def test_rest_shapes_and_errors(server: RegistryServer) -> None:
    root = httpx.get(f"{server.url}/")
    assert (root.status_code, root.json()) == (200, {})
    assert root.headers["content-type"] == CONTENT_TYPE
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}

    # Subject names are URL-encoded path segments and may contain "/".
    subject = "team/a b"
    client(server).register_schema(subject, V1)
    raw = httpx.get(f"{server.url}/subjects/team%2Fa%20b/versions/latest/schema")
    assert raw.json() == json.loads(V1.schema_str)
    assert client(server).get_subjects() == [subject]

    missing = httpx.get(f"{server.url}/nowhere")
    assert (missing.status_code, missing.json()["error_code"]) == (404, 404)
    wrong_method = httpx.put(f"{server.url}/subjects")
    assert (wrong_method.status_code, wrong_method.json()["error_code"]) == (405, 405)
    broken = httpx.post(f"{server.url}/subjects/x/versions", content=b"{", headers={"Content-Type": CONTENT_TYPE})
    assert broken.status_code == 400 and "message" in broken.json()


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "data" / "registry.db"  # the directory is created on start
    with RegistryServer(path) as first:
        client(first).register_schema(SUBJECT, V1)
        client(first).register_schema(SUBJECT, V2)
        client(first).register_schema("gone-value", avro({"name": "x", "type": "int"}, name="Gone"))
        client(first).delete_subject("gone-value")
        client(first).set_compatibility(SUBJECT, "FULL_TRANSITIVE")
        client(first).set_compatibility(level="NONE")

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    with RegistryServer(path) as second:
        sr = client(second)
        assert sr.get_subjects() == [SUBJECT]
        assert sr.get_subjects(deleted=True) == ["gone-value", SUBJECT]
        assert sr.get_versions(SUBJECT) == [1, 2]
        assert json.loads(sr.get_schema(2).schema_str) == json.loads(V2.schema_str)
        assert sr.get_compatibility(SUBJECT) == "FULL_TRANSITIVE"
        assert sr.get_compatibility() == "NONE"
        # Ids keep counting from where the first run stopped.
        assert sr.register_schema("new-value", avro({"name": "y", "type": "int"}, name="New")) == 4


def test_avro_serializer_round_trip(server: RegistryServer) -> None:
    schema = {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [
            {"name": "id", "type": "long"},
            {
                "name": "total",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
            },
            {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
            {"name": "note", "type": ["null", "string"], "default": None},
        ],
    }
    serializer = AvroSerializer(client(server), json.dumps(schema))
    ctx = SerializationContext("shop.orders", MessageField.VALUE)
    order = {"id": 7, "total": Decimal("12.50"), "status": "PAID", "note": "gift"}
    payload = serializer(order, ctx)
    assert payload is not None
    schema_id = int.from_bytes(payload[1:5], "big")
    assert payload[0] == 0 and schema_id == client(server).get_latest_version("shop.orders-value").schema_id

    # A consumer with its own client learns the writer schema from the registry by id.
    assert AvroDeserializer(client(server))(payload, ctx) == order

    # And a consumer on a newer reader schema gets the new field's default.
    newer = dict(schema, fields=[*schema["fields"], {"name": "channel", "type": "string", "default": "web"}])
    client(server).register_schema("shop.orders-value", Schema(json.dumps(newer), "AVRO"))
    read = AvroDeserializer(client(server), json.dumps(newer))(payload, ctx)
    assert read == {**order, "channel": "web"}
