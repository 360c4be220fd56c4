"""Basic auth with the auth token or an API key, and the Roles resource in all URL forms."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from service.emulator import RunningEmulator
from tests.fixtures.emulator import TEST_API_KEY_SECRET, TEST_API_KEY_SID, basic_auth

USERS = "/v1/Users"


async def status_and_code(
    running: RunningEmulator, headers: dict[str, str]
) -> tuple[int, int | None]:
    async with (
        aiohttp.ClientSession(base_url=running.base_url, headers=headers) as http,
        http.get(USERS) as response,
    ):
        body = await response.json()
        return response.status, body.get("code")


async def test_account_sid_and_auth_token_authenticate(emulator: RunningEmulator) -> None:
    headers = {"Authorization": basic_auth(emulator.config.account_sid, emulator.config.auth_token)}
    assert await status_and_code(emulator, headers) == (200, None)


async def test_api_key_and_secret_authenticate(emulator: RunningEmulator) -> None:
    headers = {"Authorization": basic_auth(TEST_API_KEY_SID, TEST_API_KEY_SECRET)}
    assert await status_and_code(emulator, headers) == (200, None)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer abc",
        "Basic not-base64!",
        basic_auth("AC" + "0" * 32, "wrong"),
        basic_auth(TEST_API_KEY_SID, "wrong"),
        basic_auth("SK" + "1" * 32, TEST_API_KEY_SECRET),
    ],
)
async def test_bad_or_missing_credentials_are_401_20003(
    emulator: RunningEmulator, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    assert await status_and_code(emulator, headers) == (401, 20003)
    assert emulator.emulator.stats["unauthorized"] == 1


async def test_unauthenticated_write_changes_nothing(emulator: RunningEmulator) -> None:
    async with (
        aiohttp.ClientSession(base_url=emulator.base_url) as http,
        http.post(USERS, data={"Identity": "x"}) as response,
    ):
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert emulator.emulator.users() == []


@pytest.mark.parametrize(
    ("path", "types"),
    [
        ("/v1/Roles", {"service", "conversation"}),
        ("/v1/Services/{sid}/Roles", {"service", "conversation"}),
        ("/v2/Services/{sid}/Roles", {"deployment", "channel"}),
    ],
)
async def test_a_service_has_the_four_default_roles(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession, path: str, types: set[str]
) -> None:
    url = path.format(sid=emulator.config.default_service_sid)
    async with emulator_http.get(url) as response:
        page = await response.json()
    assert page["meta"]["key"] == "roles"
    names = {role["friendly_name"]: role["type"] for role in page["roles"]}
    assert set(names) == {"service admin", "service user", "channel admin", "channel user"}
    assert set(names.values()) == types
    for role in page["roles"]:
        async with emulator_http.get(f"{url}/{role['sid']}") as response:
            assert (response.status, await response.json()) == (200, role)
        assert role["url"] == f"{emulator.base_url}{url}/{role['sid']}"


async def test_chat_roles_speak_of_channels(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    url = f"/v2/Services/{emulator.config.default_service_sid}/Roles"
    async with emulator_http.get(url) as response:
        roles = {r["friendly_name"]: r for r in (await response.json())["roles"]}
    assert "leaveChannel" in roles["channel user"]["permissions"]
    assert roles["channel user"]["service_sid"] == emulator.config.default_service_sid


async def test_roles_page_like_users(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    seen = []
    url: str | None = "/v1/Roles?PageSize=3"
    while url:
        async with emulator_http.get(url) as response:
            page = await response.json()
        seen += [role["sid"] for role in page["roles"]]
        url = page["meta"]["next_page_url"]
    assert seen == [role["sid"] for role in emulator.emulator.roles()]


async def test_unknown_role_is_404(emulator_http: aiohttp.ClientSession) -> None:
    async with emulator_http.get(f"/v1/Roles/RL{'0' * 32}") as response:
        assert (response.status, (await response.json())["code"]) == (404, 20404)


async def test_each_service_has_its_own_roles(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    other = emulator.emulator.create_service("Other")
    mine = {r["sid"] for r in emulator.emulator.roles()}
    theirs = {r["sid"] for r in emulator.emulator.roles(other)}
    assert len(mine) == len(theirs) == 4
    assert not mine & theirs
    async with emulator_http.get(f"/v1/Services/{other}/Roles/{min(mine)}") as response:
        assert response.status == 404


async def test_non_ascii_basic_credentials_are_the_json_401(emulator: RunningEmulator) -> None:
    """Bytes no ASCII base64 can hold, sent raw (aiohttp's client would refuse to send them)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(emulator.base_url.rsplit(":", 1)[1])
    )
    writer.write(
        b"GET /v1/Users HTTP/1.1\r\nHost: emulator\r\nAuthorization: Basic \xff\xfe\r\n"
        b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    head, _, body = (await reader.read()).partition(b"\r\n\r\n")
    writer.close()
    await writer.wait_closed()
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 401 Unauthorized"
    assert json.loads(body)["code"] == 20003
