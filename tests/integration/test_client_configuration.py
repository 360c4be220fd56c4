"""The client reads the account's default Conversation Service from `GET /v1/Configuration`.

One call, through the same transport, retries and failure vocabulary as every other: a 5xx is
retried, a 401 is an answer, a closed port is a `ConnectError`. An answer that names no Service
is None (the spec allows it); one that names something that is not an `IS…` sid is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from service.conversations import ConnectError, InvalidResponse, Unauthorized
from service.emulator import RunningEmulator
from tests.integration.client_factory import ALL_FORMS, Form, RecordingSleep, fast_retry, target
from tests.integration.test_client_errors import (
    WRONG_TOKEN,
    closed_port,
    target_without_emulator,
)


@pytest.mark.parametrize("form", [f for f in ALL_FORMS if f is not Form.CHAT_V2])
async def test_fetches_the_default_service_whatever_service_the_client_is_for(
    emulator: RunningEmulator, form: Form
) -> None:
    async with aiohttp.ClientSession() as http:
        t = target(emulator, http, form=form)
        sid = await t.client.fetch_default_service_sid()

    assert sid == emulator.config.default_service_sid
    assert t.client.stats.attempts("fetch_configuration") == 1
    assert emulator.emulator.stats["fetch_configuration"] == 1


async def test_follows_a_change_of_the_default_service(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    other = emulator.emulator.create_service("Other")
    async with emulator_http.post("/v1/Configuration", data={"DefaultChatServiceSid": other}):
        pass
    async with aiohttp.ClientSession() as http:
        sid = await target(emulator, http).client.fetch_default_service_sid()
    assert sid == other


async def test_a_server_error_is_retried_and_then_answered(emulator: RunningEmulator) -> None:
    emulator.emulator.inject_fault(
        "status", status=503, count=2, operations={"fetch_configuration"}
    )
    sleep = RecordingSleep()
    async with aiohttp.ClientSession() as http:
        t = target(emulator, http, retry=fast_retry(max_retries=3, sleep=sleep))
        sid = await t.client.fetch_default_service_sid()
    assert sid == emulator.config.default_service_sid
    assert (t.client.stats.retries, len(sleep.delays)) == (2, 2)


async def test_refused_credentials_are_unauthorized_at_once(emulator: RunningEmulator) -> None:
    credentials = (emulator.config.account_sid, WRONG_TOKEN)
    async with aiohttp.ClientSession() as http:
        t = target(emulator, http, credentials=credentials)
        with pytest.raises(Unauthorized) as caught:
            await t.client.fetch_default_service_sid()
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert emulator.emulator.stats["fetch_configuration"] == 1
    assert WRONG_TOKEN not in repr(caught.value)


async def test_an_unreachable_api_is_a_connect_error() -> None:
    async with aiohttp.ClientSession() as http:
        client = target_without_emulator(http, f"http://127.0.0.1:{closed_port()}")
        with pytest.raises(ConnectError, match="fetch_configuration: could not connect"):
            await client.fetch_default_service_sid()


@asynccontextmanager
async def answering(body: dict[str, Any]) -> AsyncIterator[str]:
    """A stand-in for Twilio that answers `GET /v1/Configuration` with `body`: the emulator
    always names a Service, and these are the answers it never gives."""

    async def configuration(request: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/v1/Configuration", configuration)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_an_account_with_no_default_service_answers_none() -> None:
    body = {"account_sid": "AC" + "1" * 32, "default_chat_service_sid": None}
    async with answering(body) as base_url, aiohttp.ClientSession() as http:
        client = target_without_emulator(http, base_url)
        assert await client.fetch_default_service_sid() is None


async def test_a_default_that_is_not_a_service_sid_is_an_invalid_response() -> None:
    body = {"default_chat_service_sid": "default"}
    async with answering(body) as base_url, aiohttp.ClientSession() as http:
        client = target_without_emulator(http, base_url)
        with pytest.raises(InvalidResponse, match="fetch_configuration"):
            await client.fetch_default_service_sid()
