"""The registry client the runtime uses before publishing.

Speaks only the documented Confluent Schema Registry REST API, so it works the same against
liberator's embedded registry and a production Confluent (or compatible) registry.  Every failure
becomes a :class:`~liberator.errors.LiberatorError` with a one-line message naming cause and fix.
"""

from __future__ import annotations

import json
import re
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from liberator.errors import ConfigError, IncompatibleSchemaError, LiberatorError, SchemaError, one_line
from liberator.redaction import redact_url, userinfo_span
from liberator.registry.explain import explain_refusal, names_a_field, refusal_reason

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_ACCEPT = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json"
_FIX_INCOMPATIBLE = (
    "make the change compatible (add a default, widen a type) or register it under a new topic; see `liberator schemas`"
)
# Confluent's verbose messages look like
#   {errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'b' ...', additionalInfo:'b'}
# followed by context entries such as {oldSchemaVersion: 1} and {compatibility: 'BACKWARD'}.
_CONFLUENT_DESCRIPTION = re.compile(r"description:'(.*?)'(?:, additionalInfo:|\}$)", re.S)
_CONTEXT_ENTRY = re.compile(r"^\{(oldSchemaVersion|oldSchema|compatibility|validateFields)\b")


class RegistryUnavailable(LiberatorError):
    """The registry could not be reached or failed; retrying later may succeed."""


class RegistryRequestError(LiberatorError):
    """The registry answered with an error this client has no more specific meaning for."""

    def __init__(self, message: str, status: int, error_code: int | None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


def first_reason(messages: object) -> str | None:
    """The first human-readable reason in a verbose compatibility answer (ours or Confluent's)."""
    if not isinstance(messages, list):
        return None
    for message in messages:
        text = str(message)
        found = _CONFLUENT_DESCRIPTION.search(text)
        if found:
            return one_line(found.group(1))
        if text and not _CONTEXT_ENTRY.match(text):
            return one_line(text)
    return None


class RegistryClient:
    def __init__(
        self,
        url: str,
        basic_auth: str | None = None,
        timeout: float = 10.0,
        auth_setting: str = "schema_registry.basic_auth (user:password)",
    ) -> None:
        self.url = redact_url(url.rstrip("/"))  # for messages; the client alone keeps the credentials
        auth: tuple[str, str] | None = None
        if basic_auth:
            user, sep, password = basic_auth.partition(":")
            if not sep:
                raise ConfigError("schema_registry.basic_auth must be 'user:password' (no ':' found); fix the setting")
            auth = (user, password)
        # Credentials in the URL's user:password@ are sent as basic auth too (by httpx).
        self._has_auth = auth is not None or userinfo_span(url) is not None
        self._auth_setting = auth_setting
        try:
            self._http = httpx.Client(base_url=url.rstrip("/"), auth=auth, timeout=timeout, headers={"Accept": _ACCEPT})
        except (httpx.InvalidURL, ValueError) as e:
            raise ConfigError(
                f"schema_registry.url {self.url!r} is not a valid URL ({one_line(e)}); use http(s)://host:port"
            ) from e

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- public API ------------------------------------------------------------------------------

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register ``schema`` under ``subject`` (the existing id if it is already there)."""
        body = {"schema": json.dumps(schema, separators=(",", ":"))}
        response = self._request("POST", f"/subjects/{_q(subject)}/versions", json_body=body)
        if response.status_code == 409:
            raise IncompatibleSchemaError(self._incompatible_message(subject, body, response))
        if response.status_code == 422:
            raise SchemaError(
                f"schema registry at {self.url} rejected the schema for subject '{subject}' as invalid: "
                f"{one_line(_error(response)[1])}; fix the table's type mapping or report it as a bug"
            )
        return int(self._ok(response, f"register a schema under subject '{subject}'")["id"])

    def set_compatibility(self, subject: str, level: str) -> None:
        response = self._request("PUT", f"/config/{_q(subject)}", json_body={"compatibility": level.upper()})
        if response.status_code == 422:
            raise ConfigError(
                f"schema registry at {self.url} refused compatibility level '{level}' for subject "
                f"'{subject}'; use one of BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, "
                "FULL, FULL_TRANSITIVE, NONE"
            )
        self._ok(response, f"set the compatibility of subject '{subject}'")

    def get_compatibility(self, subject: str) -> str | None:
        """The subject's own compatibility level; None when it follows the global one."""
        response = self._request("GET", f"/config/{_q(subject)}")
        if response.status_code == 404:  # 40408 (no subject-level config) or 40401 on older registries
            return None
        level = self._ok(response, f"read the compatibility of subject '{subject}'").get("compatibilityLevel")
        return str(level) if level is not None else None

    def subject_exists(self, subject: str) -> bool:
        response = self._request("GET", f"/subjects/{_q(subject)}/versions")
        if response.status_code == 404 and _error(response)[0] == 40401:
            return False
        self._ok(response, f"list the versions of subject '{subject}'")
        return True

    def refusal(self, subject: str, schema: dict[str, Any]) -> str | None:
        """Why the registry would refuse `schema` as the subject's next version (the one line `register`
        raises), or None when it would take it (a new subject takes anything). Registers nothing."""
        body = {"schema": json.dumps(schema, separators=(",", ":"))}
        response = self._request(
            "POST", f"/compatibility/subjects/{_q(subject)}/versions/latest?verbose=true", json_body=body
        )
        if response.status_code == 404 and _error(response)[0] in (40401, 40402):
            return None
        answer = self._ok(response, f"check a schema against subject '{subject}'")
        if answer.get("is_compatible", True):
            return None
        return self._incompatible_message(subject, body, response)

    def subjects(self) -> list[str]:
        """All live subjects (also a cheap reachability check for `liberator check`)."""
        return [str(s) for s in self._ok(self._request("GET", "/subjects"), "list subjects")]

    def get_schema(self, schema_id: int) -> dict[str, Any]:
        response = self._request("GET", f"/schemas/ids/{int(schema_id)}")
        if response.status_code == 404:
            raise RegistryRequestError(
                f"schema registry at {self.url} has no schema with id {schema_id}; the data was written "
                "against another registry or the schema was permanently deleted",
                404,
                _error(response)[0],
            )
        return _schema_dict(self._ok(response, f"fetch schema id {schema_id}")["schema"])

    def latest(self, subject: str) -> tuple[int, int, dict[str, Any]] | None:
        """(schema id, version, schema) of the subject's latest version; None if it has none."""
        response = self._request("GET", f"/subjects/{_q(subject)}/versions/latest")
        if response.status_code == 404 and _error(response)[0] in (40401, 40402):
            return None
        body = self._ok(response, f"read the latest version of subject '{subject}'")
        return int(body["id"]), int(body["version"]), _schema_dict(body["schema"])

    # --- plumbing --------------------------------------------------------------------------------

    def _request(self, method: str, path: str, json_body: Any = None) -> httpx.Response:
        headers = {"Content-Type": CONTENT_TYPE} if json_body is not None else None
        content = json.dumps(json_body).encode() if json_body is not None else None
        try:
            response = self._http.request(method, path, content=content, headers=headers)
        except httpx.TimeoutException as e:
            raise RegistryUnavailable(
                f"schema registry at {self.url} did not answer in time ({type(e).__name__}); start the "
                "registry (`liberator registry serve`) or fix schema_registry.url"
            ) from e
        except httpx.HTTPError as e:
            raise RegistryUnavailable(
                f"schema registry at {self.url} is unreachable ({one_line(e) or type(e).__name__}); "
                "start the registry (`liberator registry serve`) or fix schema_registry.url"
            ) from e
        if response.status_code in (401, 403):
            fix = f"{'fix' if self._has_auth else 'set'} {self._auth_setting}"
            raise ConfigError(
                f"schema registry at {self.url} refused the request with HTTP {response.status_code} "
                f"({'bad credentials' if self._has_auth else 'credentials required'}); {fix}"
            )
        return response

    def _ok(self, response: httpx.Response, doing: str) -> Any:
        if response.is_success:
            try:
                return response.json()
            except ValueError as e:
                raise RegistryRequestError(
                    f"schema registry at {self.url} sent a non-JSON answer while trying to {doing}; "
                    "check that schema_registry.url points at a schema registry",
                    response.status_code,
                    None,
                ) from e
        code, message = _error(response)
        if response.status_code >= 500:
            raise RegistryUnavailable(
                f"schema registry at {self.url} failed to {doing} (HTTP {response.status_code}"
                f"{f', error {code}' if code else ''}: {one_line(message)}); check the registry's log "
                "and retry"
            )
        raise RegistryRequestError(
            f"schema registry at {self.url} could not {doing} (HTTP {response.status_code}"
            f"{f', error {code}' if code else ''}: {one_line(message)}); check schema_registry.url "
            "and the subject name",
            response.status_code,
            code,
        )

    def _incompatible_message(self, subject: str, body: dict[str, str], response: httpx.Response) -> str:
        level = "its"
        reason: str | None = None
        # The 409 body of some registries has no details, so ask the verbose compatibility endpoint.
        try:
            check = self._request(
                "POST",
                f"/compatibility/subjects/{_q(subject)}/versions/latest?verbose=true",
                json_body=body,
            )
            if check.is_success:
                reason = first_reason(check.json().get("messages"))
            config = self._request("GET", f"/config/{_q(subject)}?defaultToGlobal=true")
            if config.is_success:
                level = str(config.json().get("compatibilityLevel") or "its")
        except (LiberatorError, ValueError, AttributeError):
            pass  # the refusal itself is what matters; explain as much as we could learn
        if reason is None:
            reason = one_line(_error(response)[1]) or "no reason given"
        if not names_a_field(reason):
            reason = refusal_reason(reason, self._our_reason(subject, body, level))
        return (
            f"schema registry refused the new schema for subject '{subject}' under {level} "
            f"compatibility: {reason}; {_FIX_INCOMPATIBLE}"
        )

    def _our_reason(self, subject: str, body: dict[str, str], level: str) -> str | None:
        """Our checker's reason against the subject's latest version, for registries whose reason is terse."""
        if level == "its":
            return None  # the rule is unknown: an explanation under a guessed one could point elsewhere
        try:
            latest = self.latest(subject)
        except LiberatorError:
            return None
        if latest is None:
            return None
        _, version, old = latest
        return explain_refusal(level, json.loads(body["schema"]), version, old)


def _q(subject: str) -> str:
    return quote(subject, safe="")


def _error(response: httpx.Response) -> tuple[int | None, str]:
    """(error_code, message) from a Confluent error body, tolerating bodies that are not."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text or response.reason_phrase
    if isinstance(body, dict):
        code = body.get("error_code")
        return (code if isinstance(code, int) else None), str(body.get("message", ""))
    return None, str(body)


def _schema_dict(text: str) -> dict[str, Any]:
    value = json.loads(text)
    # A primitive schema comes back as a bare JSON string ("string"); {"type": ...} is the same schema.
    return value if isinstance(value, dict) else {"type": value}
