"""The Users resource of the emulator over HTTP: create, fetch, update, delete, in all URL forms."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from service.emulator import RunningEmulator

DEFAULT = "/v1/Users"


def v1_service(running: RunningEmulator) -> str:
    return f"/v1/Services/{running.config.default_service_sid}/Users"


def v2_service(running: RunningEmulator) -> str:
    return f"/v2/Services/{running.config.default_service_sid}/Users"


FORMS = ["default", "v1_service", "v2"]


def collection(form: str, running: RunningEmulator) -> str:
    return {"default": DEFAULT, "v1_service": v1_service(running), "v2": v2_service(running)}[form]


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as response:
        body = await response.read()
        return response.status, json.loads(body) if body else None


@pytest.mark.parametrize("form", FORMS)
async def test_creates_fetches_updates_and_deletes_a_user(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession, form: str
) -> None:
    users = collection(form, emulator)
    status, created = await call(
        emulator_http, "POST", users, data={"Identity": "alice", "FriendlyName": "Alice"}
    )
    assert status == 201
    assert created["identity"] == "alice"
    assert created["friendly_name"] == "Alice"
    assert created["attributes"] == "{}"
    assert created["url"] == f"{emulator.base_url}{users}/{created['sid']}"

    status, fetched = await call(emulator_http, "GET", f"{users}/{created['sid']}")
    assert (status, fetched) == (200, created)

    status, updated = await call(
        emulator_http, "POST", f"{users}/alice", data={"Attributes": '{"team": "a"}'}
    )
    assert status == 200
    assert updated["attributes"] == '{"team": "a"}'
    assert updated["friendly_name"] == "Alice"  # untouched: not in the request

    status, body = await call(emulator_http, "DELETE", f"{users}/{created['sid']}")
    assert (status, body) == (204, None)
    assert emulator.emulator.users() == []


async def test_the_three_url_forms_share_one_default_service(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    _, created = await call(emulator_http, "POST", DEFAULT, data={"Identity": "bob"})
    _, via_service = await call(emulator_http, "GET", f"{v1_service(emulator)}/bob")
    _, via_chat = await call(emulator_http, "GET", f"{v2_service(emulator)}/bob")

    assert via_service["sid"] == via_chat["sid"] == created["sid"]
    assert via_service["chat_service_sid"] == emulator.config.default_service_sid
    assert via_chat["service_sid"] == emulator.config.default_service_sid
    assert "chat_service_sid" not in via_chat
    assert via_chat["joined_channels_count"] == 0
    assert set(via_chat["links"]) == {"user_channels", "user_bindings"}
    assert set(created["links"]) == {"user_conversations"}


async def test_new_user_gets_the_service_user_role(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    roles = {role["friendly_name"]: role["sid"] for role in emulator.emulator.roles()}
    _, created = await call(emulator_http, "POST", DEFAULT, data={"Identity": "carol"})
    assert created["role_sid"] == roles["service user"]

    _, admin = await call(
        emulator_http, "POST", DEFAULT, data={"Identity": "dan", "RoleSid": roles["service admin"]}
    )
    assert admin["role_sid"] == roles["service admin"]


async def test_fetch_update_and_delete_accept_a_percent_encoded_identity(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    identity = "ana maría/ops+1@example.com"
    _, created = await call(emulator_http, "POST", DEFAULT, data={"Identity": identity})
    path = f"{DEFAULT}/{quote(identity, safe='')}"

    status, fetched = await call(emulator_http, "GET", path)
    assert (status, fetched["sid"]) == (200, created["sid"])
    status, updated = await call(emulator_http, "POST", path, data={"FriendlyName": "Ana"})
    assert (status, updated["friendly_name"]) == (200, "Ana")
    status, _ = await call(emulator_http, "DELETE", path)
    assert status == 204


async def test_update_changes_only_the_given_fields_and_not_the_identity(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    admin = next(
        r["sid"] for r in emulator.emulator.roles() if r["friendly_name"] == "service admin"
    )
    emulator.emulator.seed_users(
        [{"identity": "erin", "friendly_name": "Erin", "attributes": {"a": 1}}]
    )
    status, updated = await call(
        emulator_http, "POST", f"{DEFAULT}/erin", data={"RoleSid": admin, "Identity": "other"}
    )
    assert status == 200
    assert updated["identity"] == "erin"
    assert updated["role_sid"] == admin
    assert updated["friendly_name"] == "Erin"
    assert json.loads(updated["attributes"]) == {"a": 1}


async def test_friendly_name_is_null_when_not_set(emulator_http: aiohttp.ClientSession) -> None:
    _, created = await call(emulator_http, "POST", DEFAULT, data={"Identity": "fay"})
    assert created["friendly_name"] is None
    assert created["is_online"] is None
    assert created["is_notifiable"] is None


async def test_dates_are_iso_8601_utc(emulator_http: aiohttp.ClientSession) -> None:
    _, created = await call(emulator_http, "POST", DEFAULT, data={"Identity": "gus"})
    assert created["date_created"].endswith("Z")
    assert len(created["date_created"]) == len("2019-12-16T22:18:37Z")


async def test_users_of_another_service_are_separate(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    other = emulator.emulator.create_service("Other")
    await call(emulator_http, "POST", DEFAULT, data={"Identity": "hal"})
    status, created = await call(
        emulator_http, "POST", f"/v1/Services/{other}/Users", data={"Identity": "hal"}
    )
    assert status == 201
    assert created["chat_service_sid"] == other
    assert [u["identity"] for u in emulator.emulator.users(other)] == ["hal"]
    assert [u["identity"] for u in emulator.emulator.users()] == ["hal"]


async def test_webhook_header_is_counted(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    enabled = {"X-Twilio-Webhook-Enabled": "true"}
    await call(emulator_http, "POST", DEFAULT, data={"Identity": "ivy"}, headers=enabled)
    await call(emulator_http, "POST", f"{DEFAULT}/ivy", data={"FriendlyName": "I"})
    await call(
        emulator_http, "DELETE", f"{DEFAULT}/ivy", headers={"X-Twilio-Webhook-Enabled": "false"}
    )
    stats = emulator.emulator.stats
    assert (stats["webhook_enabled"], stats["webhook_disabled"]) == (1, 1)
    assert (stats["create_user"], stats["update_user"], stats["delete_user"]) == (1, 1, 1)


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param(
            '{"pi": 3.14159265358979323846264338327950288}', id="more digits than a float"
        ),
        pytest.param('{"tiny":1e-400,"huge":1E+400}', id="exponents past a float's range"),
        pytest.param('{"long": ' + "9" * 5000 + "}", id="an integer past Python's 4300 digits"),
        pytest.param('{ "z" : -0.0 ,"n":100.0}', id="spacing, zeros and signs as they were sent"),
    ],
)
async def test_attributes_are_kept_verbatim_however_their_numbers_are_written(
    emulator_http: aiohttp.ClientSession, attributes: str
) -> None:
    status, created = await call(
        emulator_http, "POST", DEFAULT, data={"Identity": "n", "Attributes": attributes}
    )
    assert (status, created["attributes"]) == (201, attributes)
    status, updated = await call(
        emulator_http, "POST", f"{DEFAULT}/n", data={"Attributes": attributes + " "}
    )
    assert (status, updated["attributes"]) == (200, attributes + " ")
    _, fetched = await call(emulator_http, "GET", f"{DEFAULT}/n")
    _, listed = await call(emulator_http, "GET", DEFAULT)
    assert fetched["attributes"] == listed["users"][0]["attributes"] == attributes + " "
