"""The account's Configuration (`/v1/Configuration`): which Service `/v1/Users` means.

Fetching names the default Conversation Service; updating it moves `/v1/Users` and `/v1/Roles`
to the new Service at once, as Twilio does. Both calls take the same credentials as the rest
of the API, are counted, and suffer injected faults like any other operation. Responses are
validated against the spec in test_emulator_schema.py.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from service.emulator import RunningEmulator
from service.emulator.configuration import duration_seconds
from tests.fixtures.emulator import TEST_API_KEY_SECRET, TEST_API_KEY_SID, basic_auth

CONFIGURATION = "/v1/Configuration"


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as response:
        return response.status, await response.json()


async def test_fetch_names_the_service_the_shortened_urls_use(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    status, configuration = await call(emulator_http, "GET", CONFIGURATION)
    _, created = await call(emulator_http, "POST", "/v1/Users", data={"Identity": "ann"})

    assert status == 200
    assert configuration["default_chat_service_sid"] == emulator.config.default_service_sid
    assert configuration["default_chat_service_sid"] == created["chat_service_sid"]
    assert configuration["account_sid"] == emulator.config.account_sid
    assert configuration["default_messaging_service_sid"].startswith("MG")
    assert configuration["default_inactive_timer"] is None
    assert configuration["default_closed_timer"] is None
    assert configuration["url"] == f"{emulator.base_url}{CONFIGURATION}"
    assert configuration["links"] == {
        "service": f"{emulator.base_url}/v1/Services/{created['chat_service_sid']}/Configuration",
        "webhooks": f"{emulator.base_url}{CONFIGURATION}/Webhooks",
    }


async def test_changing_the_default_service_moves_the_shortened_urls_to_it(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    first = emulator.config.default_service_sid
    await call(emulator_http, "POST", "/v1/Users", data={"Identity": "in-first"})
    second = emulator.emulator.create_service("Second")

    status, updated = await call(
        emulator_http, "POST", CONFIGURATION, data={"DefaultChatServiceSid": second}
    )
    _, fetched = await call(emulator_http, "GET", CONFIGURATION)
    _, created = await call(emulator_http, "POST", "/v1/Users", data={"Identity": "in-second"})
    _, listed = await call(emulator_http, "GET", "/v1/Users")
    _, roles = await call(emulator_http, "GET", "/v1/Roles")

    assert status == 200
    assert updated["default_chat_service_sid"] == fetched["default_chat_service_sid"] == second
    assert created["chat_service_sid"] == second
    assert [user["identity"] for user in listed["users"]] == ["in-second"]
    assert {role["chat_service_sid"] for role in roles["roles"]} == {second}
    assert [u["identity"] for u in emulator.emulator.users(first)] == ["in-first"]
    assert [u["identity"] for u in emulator.emulator.users()] == ["in-second"]


async def test_an_update_changes_only_the_fields_given(
    emulator_http: aiohttp.ClientSession,
) -> None:
    _, before = await call(emulator_http, "GET", CONFIGURATION)
    messaging = "MG" + "ab" * 16

    _, timers = await call(
        emulator_http,
        "POST",
        CONFIGURATION,
        data={"DefaultInactiveTimer": "PT1M", "DefaultClosedTimer": "PT10M"},
    )
    _, after = await call(
        emulator_http, "POST", CONFIGURATION, data={"DefaultMessagingServiceSid": messaging}
    )

    assert (timers["default_inactive_timer"], timers["default_closed_timer"]) == ("PT1M", "PT10M")
    assert timers["default_messaging_service_sid"] == before["default_messaging_service_sid"]
    assert after["default_messaging_service_sid"] == messaging
    assert (after["default_inactive_timer"], after["default_closed_timer"]) == ("PT1M", "PT10M")
    assert after["default_chat_service_sid"] == before["default_chat_service_sid"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("DefaultChatServiceSid", "IS123", "is not IS and 32 hex digits"),
        ("DefaultChatServiceSid", "MG" + "0" * 32, "is not IS and 32 hex digits"),
        ("DefaultChatServiceSid", "IS" + "0" * 32, "no Conversation Service"),
        ("DefaultMessagingServiceSid", "IS" + "0" * 32, "is not MG and 32 hex digits"),
        ("DefaultInactiveTimer", "1 minute", "not an ISO 8601 duration"),
        ("DefaultInactiveTimer", "P1M", "not an ISO 8601 duration"),
        ("DefaultInactiveTimer", "PT59S", "shorter than the minimum of 60 seconds"),
        ("DefaultClosedTimer", "PT9M", "shorter than the minimum of 600 seconds"),
        ("DefaultClosedTimer", "", "not an ISO 8601 duration"),
    ],
)
async def test_a_bad_update_is_400_naming_the_parameter_and_changes_nothing(
    emulator: RunningEmulator,
    emulator_http: aiohttp.ClientSession,
    field: str,
    value: str,
    message: str,
) -> None:
    _, before = await call(emulator_http, "GET", CONFIGURATION)
    second = emulator.emulator.create_service("Second")
    data = {"DefaultChatServiceSid": second, "DefaultInactiveTimer": "PT5M", field: value}

    status, body = await call(emulator_http, "POST", CONFIGURATION, data=data)
    _, after = await call(emulator_http, "GET", CONFIGURATION)

    assert (status, body["code"], body["status"]) == (400, 20001, 400)
    assert field in body["message"]
    assert message in body["message"]
    assert after == before


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("PT0S", 0), ("PT1M", 60), ("PT1H30M", 5400), ("P1D", 86400), ("P1DT2S", 86402)],
)
def test_timers_are_iso_8601_durations_of_fixed_length(value: str, seconds: int) -> None:
    assert duration_seconds(value) == seconds


@pytest.mark.parametrize("value", ["P", "PT", "P1Y", "P1M", "PT1.5M", "1M", "P1DT"])
def test_durations_without_a_fixed_length_or_malformed_are_refused(value: str) -> None:
    assert duration_seconds(value) is None


async def test_a_zero_timer_turns_it_off_and_is_allowed(
    emulator_http: aiohttp.ClientSession,
) -> None:
    status, body = await call(
        emulator_http, "POST", CONFIGURATION, data={"DefaultInactiveTimer": "PT0S"}
    )
    assert (status, body["default_inactive_timer"]) == (200, "PT0S")


async def test_the_configuration_needs_the_same_credentials_as_the_rest(
    emulator: RunningEmulator,
) -> None:
    headers = {
        "nothing": {},
        "wrong token": {"Authorization": basic_auth(emulator.config.account_sid, "wrong")},
        "api key": {"Authorization": basic_auth(TEST_API_KEY_SID, TEST_API_KEY_SECRET)},
    }
    seen: dict[str, tuple[int, int | None]] = {}
    for name, header in headers.items():
        async with aiohttp.ClientSession(base_url=emulator.base_url, headers=header) as http:
            for method in ("GET", "POST"):
                status, body = await call(http, method, CONFIGURATION)
                seen[f"{method} {name}"] = (status, body.get("code"))

    assert seen == {
        "GET nothing": (401, 20003),
        "POST nothing": (401, 20003),
        "GET wrong token": (401, 20003),
        "POST wrong token": (401, 20003),
        "GET api key": (200, None),
        "POST api key": (200, None),
    }
    stats = emulator.emulator.stats
    assert (stats["fetch_configuration"], stats["update_configuration"]) == (3, 3)
    assert stats["unauthorized"] == 4


async def test_faults_and_latency_apply_to_the_configuration(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    only = {"fetch_configuration"}
    emulator.emulator.inject_fault("status", status=503, count=1, operations=only)
    emulator.emulator.inject_fault("rate_limit", count=1, retry_after=2, operations=only)

    first, faulted = await call(emulator_http, "GET", CONFIGURATION)
    second, limited = await call(emulator_http, "GET", CONFIGURATION)
    third, _ = await call(emulator_http, "GET", CONFIGURATION)

    assert (first, faulted["code"]) == (503, 20503)
    assert (second, limited["code"]) == (429, 20429)
    assert third == 200
    assert emulator.emulator.stats["faults"] == 2


async def test_reset_restores_the_configured_default_service(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    second = emulator.emulator.create_service("Second")
    await call(emulator_http, "POST", CONFIGURATION, data={"DefaultChatServiceSid": second})
    await call(emulator_http, "POST", CONFIGURATION, data={"DefaultClosedTimer": "PT1H"})

    emulator.emulator.reset()
    _, configuration = await call(emulator_http, "GET", CONFIGURATION)

    assert configuration["default_chat_service_sid"] == emulator.config.default_service_sid
    assert configuration["default_closed_timer"] is None


async def test_the_configuration_is_a_conversations_v1_resource_only(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    sid = emulator.config.default_service_sid
    status, body = await call(emulator_http, "GET", "/v2/Configuration")
    assert (status, body["code"]) == (404, 20404)
    status, body = await call(emulator_http, "DELETE", CONFIGURATION)
    assert (status, body["code"]) == (405, 20004)
    status, _ = await call(emulator_http, "GET", f"/v1/Services/{sid}/Users")
    assert status == 200
