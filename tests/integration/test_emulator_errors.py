"""Every refusal of the emulator, with Twilio's status, code and error body shape."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from service.emulator import RunningEmulator

USERS = "/v1/Users"


async def error(
    http: aiohttp.ClientSession, method: str, path: str, *, status: int, code: int, **kwargs: Any
) -> dict[str, Any]:
    """The error body of a call that must fail with this status and Twilio code."""
    async with http.request(method, path, **kwargs) as response:
        assert response.content_type == "application/json"
        assert response.status == status
        body: dict[str, Any] = json.loads(await response.read())
    assert_twilio_error(body, status=status, code=code)
    return body


def assert_twilio_error(body: dict[str, Any], *, status: int, code: int) -> None:
    assert body == {
        "code": code,
        "message": body["message"],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    assert body["message"]


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({}, 50204),
        ({"Identity": ""}, 50204),
        ({"Identity": "x" * 257}, 50207),
        ({"Identity": "a", "Attributes": "not json"}, 50304),
        ({"Identity": "a", "Attributes": "[1, 2]"}, 50304),
        ({"Identity": "a", "Attributes": '"a string"'}, 50304),
        ({"Identity": "a", "Attributes": json.dumps({"k": "v" * 16400})}, 50303),
        ({"Identity": "a", "Attributes": '{"a":' * 2000 + "1" + "}" * 2000}, 50304),
        ({"Identity": "a", "RoleSid": "RL123"}, 50100),
        ({"Identity": "a", "RoleSid": "RL" + "0" * 32}, 50100),
    ],
)
async def test_create_refuses_invalid_fields(
    emulator: RunningEmulator,
    emulator_http: aiohttp.ClientSession,
    form: dict[str, str],
    code: int,
) -> None:
    await error(emulator_http, "POST", USERS, data=form, status=400, code=code)
    assert emulator.emulator.users() == []


async def test_identity_of_256_characters_and_attributes_of_16_kb_are_accepted(
    emulator_http: aiohttp.ClientSession,
) -> None:
    attributes = json.dumps({"k": "v" * (16384 - len('{"k": ""}'))})
    assert len(attributes.encode()) == 16384
    form = {"Identity": "x" * 256, "Attributes": attributes}
    async with emulator_http.post(USERS, data=form) as response:
        assert response.status == 201


async def test_a_conversation_role_cannot_be_a_users_role(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    channel_role = next(r for r in emulator.emulator.roles() if r["type"] == "conversation")
    form = {"Identity": "a", "RoleSid": channel_role["sid"]}
    await error(emulator_http, "POST", USERS, data=form, status=400, code=50100)


async def test_a_role_of_another_service_is_refused(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    other = emulator.emulator.create_service("Other")
    foreign = next(r["sid"] for r in emulator.emulator.roles(other) if r["type"] == "service")
    await error(
        emulator_http,
        "POST",
        USERS,
        data={"Identity": "a", "RoleSid": foreign},
        status=400,
        code=50100,
    )


async def test_duplicate_identity_is_409_user_already_exists(
    emulator_http: aiohttp.ClientSession,
) -> None:
    async with emulator_http.post(USERS, data={"Identity": "dup"}) as response:
        assert response.status == 201
    body = await error(
        emulator_http, "POST", USERS, data={"Identity": "dup"}, status=409, code=50201
    )
    assert body["message"] == "User already exists"


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"Attributes": "{"}, 50304),
        ({"Attributes": "x" * 16385}, 50303),
        ({"RoleSid": "RLnothex" + "0" * 26}, 50100),
    ],
)
async def test_update_refuses_invalid_fields_and_changes_nothing(
    emulator: RunningEmulator,
    emulator_http: aiohttp.ClientSession,
    form: dict[str, str],
    code: int,
) -> None:
    emulator.emulator.seed_users([{"identity": "u", "friendly_name": "U"}])
    before = emulator.emulator.users()
    await error(
        emulator_http,
        "POST",
        f"{USERS}/u",
        data={**form, "FriendlyName": "changed"},
        status=400,
        code=code,
    )
    assert emulator.emulator.users() == before


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_unknown_user_is_404_with_the_requested_path(
    emulator_http: aiohttp.ClientSession, method: str
) -> None:
    body = await error(emulator_http, method, f"{USERS}/XYZ", status=404, code=20404)
    assert body["message"] == "The requested resource /v1/Users/XYZ was not found"


async def test_unknown_service_is_404(emulator_http: aiohttp.ClientSession) -> None:
    path = f"/v2/Services/IS{'0' * 32}/Users"
    body = await error(emulator_http, "GET", path, status=404, code=20404)
    assert path in body["message"]


async def test_unknown_path_and_method_answer_in_twilio_shape(
    emulator_http: aiohttp.ClientSession,
) -> None:
    await error(emulator_http, "GET", "/v1/Nothing", status=404, code=20404)
    await error(emulator_http, "PUT", USERS, status=405, code=20004)


async def test_invalid_webhook_header_is_400(emulator_http: aiohttp.ClientSession) -> None:
    headers = {"X-Twilio-Webhook-Enabled": "maybe"}
    await error(
        emulator_http,
        "POST",
        USERS,
        data={"Identity": "w"},
        headers=headers,
        status=400,
        code=20001,
    )


BAD_CONTENT_TYPES = [
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "application/x-www-form-urlencoded; charset=bogus",
]


@pytest.mark.parametrize("content_type", BAD_CONTENT_TYPES)
@pytest.mark.parametrize("prefix", ["/v1", "/v1/Services/{sid}", "/v2/Services/{sid}"])
@pytest.mark.parametrize("write", ["create", "update"])
async def test_a_body_that_cannot_be_read_is_400_in_twilio_shape(
    emulator: RunningEmulator,
    emulator_http: aiohttp.ClientSession,
    content_type: str,
    prefix: str,
    write: str,
) -> None:
    emulator.emulator.seed_users([{"identity": "u", "friendly_name": "U"}])
    before = emulator.emulator.users()
    path = prefix.format(sid=emulator.emulator.default_service_sid) + "/Users"
    path = path if write == "create" else f"{path}/u"
    body = await error(
        emulator_http,
        "POST",
        path,
        data=b"Identity=new&FriendlyName=changed",
        headers={"Content-Type": content_type},
        status=400,
        code=20001,
    )
    assert content_type in body["message"]
    assert emulator.emulator.users() == before


async def test_a_configuration_body_that_cannot_be_read_is_400(
    emulator_http: aiohttp.ClientSession,
) -> None:
    headers = {"Content-Type": "multipart/form-data"}
    await error(
        emulator_http,
        "POST",
        "/v1/Configuration",
        data=b"x",
        headers=headers,
        status=400,
        code=20001,
    )
