"""The Confluent schema-registry REST API as plain method calls: routing, validation, JSON shapes.

`RegistryApi.handle(method, path, query, body)` answers with Confluent's status codes, error codes and
bodies; `liberator.embedded.registry.server` puts it behind HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from liberator.embedded.registry.store import RegistryStore, SubjectVersion
from liberator.registry import errors as registry_errors
from liberator.registry.compatibility import (
    SUPPORTED_SCHEMA_TYPES,
    InvalidSchemaError,
    ParsedSchema,
    check_compatibility,
    normalize_level,
    parse_schema,
)
from liberator.registry.errors import RegistryError

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
        raise registry_errors.invalid_version(text) from None
    if not 1 <= number <= _MAX_VERSION:
        raise registry_errors.invalid_version(text)
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
                raise registry_errors.subject_config_not_found(subject)
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
            raise registry_errors.schema_not_found(text) from None

    @staticmethod
    def _schema(body: Any) -> ParsedSchema:
        if not isinstance(body, dict):
            raise registry_errors.invalid_schema(
                "Invalid schema: the request body must be a JSON object with a 'schema'"
            )
        try:
            return parse_schema(body.get("schema"), body.get("schemaType"), body.get("references"))
        except InvalidSchemaError as e:
            raise registry_errors.invalid_schema(str(e)) from None

    @staticmethod
    def _level(body: Any) -> str:
        value = body.get("compatibility") if isinstance(body, dict) else None
        try:
            return normalize_level(value)
        except ValueError as e:
            raise registry_errors.invalid_compatibility(str(e)) from None

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
