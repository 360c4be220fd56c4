"""Every kind of response the emulator gives, validated against the official OpenAPI specs.

The specs (twilio/twilio-oai, copied unmodified into ../shared/twilio-oai) declare each
operation's response schema; we validate the emulator's answer against exactly that schema with
`openapi_schema_validator` (OAS 3.0, `$ref`s resolved within the spec document) and also require
each resource to carry exactly the schema's fields, no more and no fewer. The specs declare no
schema for error responses; their shape is asserted in test_emulator_errors.py.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from jsonschema import FormatChecker, ValidationError
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from service.emulator import RunningEmulator

SPECS = Path(__file__).resolve().parents[2] / ".." / "shared" / "twilio-oai"
CONVERSATIONS = "twilio_conversations_v1.json"
CHAT = "twilio_chat_v2.json"


def _is_absolute_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme in ("http", "https") and parts.netloc)


def _is_uri_map(value: object) -> bool:
    return not isinstance(value, dict) or all(_is_absolute_uri(v) for v in value.values())


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    for name in oas30_format_checker.checkers:
        checker.checkers[name] = oas30_format_checker.checkers[name]
    checker.checks("uri")(_is_absolute_uri)
    checker.checks("uri-map")(_is_uri_map)
    return checker


@cache
def _spec(name: str) -> dict[str, Any]:
    path = SPECS / name
    if not path.is_file():  # a clone on its own: the specs are not part of the repository
        pytest.skip(f"{path} is missing: the official specs live in ../shared/twilio-oai")
    spec: dict[str, Any] = json.loads(path.read_text())
    return spec


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def validate(body: Any, *, spec: str, path: str, method: str, status: int) -> None:
    """Validates `body` against the response schema the spec declares for this operation."""
    document = _spec(spec)
    operation = document["paths"][path][method]
    assert str(status) in operation["responses"], f"{method} {path} declares no {status}"
    uri = f"urn:twilio-oai:{spec}"
    registry: Registry[Any] = Registry().with_resource(
        uri, Resource.from_contents(document, default_specification=DRAFT4)
    )
    pointer = _pointer("paths", path, method, "responses", str(status), "content")
    schema = {"$ref": f"{uri}#/{pointer}/application~1json/schema"}
    OAS30Validator(schema, registry=registry, format_checker=_format_checker()).validate(body)


def fields_of(spec: str, schema_name: str) -> set[str]:
    return set(_spec(spec)["components"]["schemas"][schema_name]["properties"])


USER_FORMS = [
    ("/v1/Users", CONVERSATIONS, "/v1/Users", "conversations.v1.user"),
    (
        "/v1/Services/{sid}/Users",
        CONVERSATIONS,
        "/v1/Services/{ChatServiceSid}/Users",
        "conversations.v1.service.service_user",
    ),
    ("/v2/Services/{sid}/Users", CHAT, "/v2/Services/{ServiceSid}/Users", "chat.v2.service.user"),
]


async def exchange(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as response:
        raw = await response.read()
        return response.status, json.loads(raw) if raw else None


@pytest.mark.parametrize(("url", "spec", "path", "schema"), USER_FORMS)
async def test_user_responses_match_the_spec(
    emulator: RunningEmulator,
    emulator_http: aiohttp.ClientSession,
    url: str,
    spec: str,
    path: str,
    schema: str,
) -> None:
    users = url.format(sid=emulator.config.default_service_sid)
    instance = f"{path}/{{Sid}}"
    expected_fields = fields_of(spec, schema)
    emulator.emulator.seed_users({"identity": f"seed{i}"} for i in range(3))

    form = {"Identity": "alice", "FriendlyName": "Alice", "Attributes": '{"a": 1}'}
    status, created = await exchange(emulator_http, "POST", users, data=form)
    validate(created, spec=spec, path=path, method="post", status=status)
    assert set(created) == expected_fields

    status, fetched = await exchange(emulator_http, "GET", f"{users}/alice")
    validate(fetched, spec=spec, path=instance, method="get", status=status)
    assert set(fetched) == expected_fields

    status, updated = await exchange(
        emulator_http, "POST", f"{users}/alice", data={"FriendlyName": "A"}
    )
    validate(updated, spec=spec, path=instance, method="post", status=status)
    assert set(updated) == expected_fields

    status, first = await exchange(emulator_http, "GET", f"{users}?PageSize=2")
    validate(first, spec=spec, path=path, method="get", status=status)
    status, second = await exchange(emulator_http, "GET", first["meta"]["next_page_url"])
    validate(second, spec=spec, path=path, method="get", status=status)
    for page in (first, second):
        assert set(page) == {"users", "meta"}
        assert all(set(user) == expected_fields for user in page["users"])
        list_meta = _spec(spec)["paths"][path]["get"]["responses"]["200"]["content"]
        meta_fields = set(
            list_meta["application/json"]["schema"]["properties"]["meta"]["properties"]
        )
        assert set(page["meta"]) == meta_fields

    status, body = await exchange(emulator_http, "DELETE", f"{users}/alice")
    assert (status, body) == (204, None)
    assert "204" in _spec(spec)["paths"][instance]["delete"]["responses"]


ROLE_FORMS = [
    ("/v1/Roles", CONVERSATIONS, "/v1/Roles", "conversations.v1.role"),
    (
        "/v1/Services/{sid}/Roles",
        CONVERSATIONS,
        "/v1/Services/{ChatServiceSid}/Roles",
        "conversations.v1.service.service_role",
    ),
    ("/v2/Services/{sid}/Roles", CHAT, "/v2/Services/{ServiceSid}/Roles", "chat.v2.service.role"),
]


@pytest.mark.parametrize(("url", "spec", "path", "schema"), ROLE_FORMS)
async def test_role_responses_match_the_spec(
    emulator: RunningEmulator,
    emulator_http: aiohttp.ClientSession,
    url: str,
    spec: str,
    path: str,
    schema: str,
) -> None:
    roles = url.format(sid=emulator.config.default_service_sid)
    status, page = await exchange(emulator_http, "GET", f"{roles}?PageSize=3")
    validate(page, spec=spec, path=path, method="get", status=status)
    assert len(page["roles"]) == 3
    assert all(set(role) == fields_of(spec, schema) for role in page["roles"])

    status, role = await exchange(emulator_http, "GET", f"{roles}/{page['roles'][0]['sid']}")
    validate(role, spec=spec, path=f"{path}/{{Sid}}", method="get", status=status)
    assert set(role) == fields_of(spec, schema)

    chat = spec == CHAT
    form = {
        "FriendlyName": "custom",
        "Type": "channel" if chat else "conversation",
        "Permission": "sendMessage",
    }
    status, created = await exchange(emulator_http, "POST", roles, data=form)
    validate(created, spec=spec, path=path, method="post", status=status)
    assert set(created) == fields_of(spec, schema)
    instance = f"{roles}/{created['sid']}"
    permissions = [("Permission", "sendMessage"), ("Permission", "sendMediaMessage")]
    status, updated = await exchange(emulator_http, "POST", instance, data=permissions)
    validate(updated, spec=spec, path=f"{path}/{{Sid}}", method="post", status=status)
    assert updated["permissions"] == ["sendMessage", "sendMediaMessage"]
    status, body = await exchange(emulator_http, "DELETE", instance)
    assert (status, body) == (204, None)
    assert "204" in _spec(spec)["paths"][f"{path}/{{Sid}}"]["delete"]["responses"]


async def test_configuration_responses_match_the_spec(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    expected_fields = fields_of(CONVERSATIONS, "conversations.v1.configuration")
    path = "/v1/Configuration"

    status, fetched = await exchange(emulator_http, "GET", path)
    validate(fetched, spec=CONVERSATIONS, path=path, method="get", status=status)
    assert set(fetched) == expected_fields

    other = emulator.emulator.create_service("Other")
    form = {
        "DefaultChatServiceSid": other,
        "DefaultMessagingServiceSid": "MG" + "ab" * 16,
        "DefaultInactiveTimer": "PT1M",
        "DefaultClosedTimer": "PT10M",
    }
    status, updated = await exchange(emulator_http, "POST", path, data=form)
    validate(updated, spec=CONVERSATIONS, path=path, method="post", status=status)
    assert set(updated) == expected_fields
    assert set(_spec(CONVERSATIONS)["paths"][path]) >= {"get", "post"}
    request_body = _spec(CONVERSATIONS)["paths"][path]["post"]["requestBody"]["content"]
    declared = request_body["application/x-www-form-urlencoded"]["schema"]["properties"]
    assert set(form) == set(declared)


def test_the_validator_rejects_what_the_spec_forbids() -> None:
    """A guard that validation is real: a wrong sid prefix and a relative URL both fail."""
    user = {"sid": "XX" + "0" * 32, "url": "/v1/Users/US1", "links": {}}
    with pytest.raises(ValidationError, match="does not match"):
        validate(user, spec=CONVERSATIONS, path="/v1/Users/{Sid}", method="get", status=200)
    user = {"sid": "US" + "0" * 32, "url": "/v1/Users/US1"}
    with pytest.raises(ValidationError, match="uri"):
        validate(user, spec=CONVERSATIONS, path="/v1/Users/{Sid}", method="get", status=200)
