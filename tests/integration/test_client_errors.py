"""Every failure arrives as one of our exceptions, with the right class, and nothing leaks.

Nothing here is retried: a 4xx is an answer, and the emulator's call counters prove the client
asked once. Transport failures come from a closed port, a dropped connection and a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from service.conversations import (
    AlreadyExists,
    ApiError,
    BadRequest,
    ConnectError,
    ConnectionLost,
    ConversationsClient,
    ConversationsError,
    InvalidAttributes,
    InvalidIdentity,
    NotFound,
    RateLimited,
    RequestTimeout,
    RoleNotFound,
    TransportError,
    Unauthorized,
    WriteLimiter,
)
from service.conversations.endpoints import ApiFlavor
from service.emulator import RunningEmulator
from tests.fixtures.emulator import account_auth
from tests.integration.client_factory import fast_retry, target

ROLE_THAT_DOES_NOT_EXIST = "RL" + "0" * 32
WRONG_TOKEN = "this-token-is-wrong-and-secret-0123456789"

Call = Callable[[ConversationsClient], Awaitable[object]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def create_twice(client: ConversationsClient) -> object:
    await client.create_user("twice")
    return await client.create_user("twice")


ANSWERS: list[tuple[str, Call, type[ApiError], int, int, str]] = [
    ("404", lambda c: c.fetch_user("nobody"), NotFound, 404, 20404, "fetch_user"),
    (
        "404-update",
        lambda c: c.update_user("nobody", friendly_name="x"),
        NotFound,
        404,
        20404,
        "update_user",
    ),
    ("404-delete", lambda c: c.delete_user("nobody"), NotFound, 404, 20404, "delete_user"),
    ("409", create_twice, AlreadyExists, 409, 50201, "create_user"),
    (
        "50304-not-json",
        lambda c: c.create_user("u", attributes="{nope"),
        InvalidAttributes,
        400,
        50304,
        "create_user",
    ),
    (
        "50304-not-object",
        lambda c: c.create_user("u", attributes="[1, 2]"),
        InvalidAttributes,
        400,
        50304,
        "create_user",
    ),
    (
        "50303",
        lambda c: c.create_user("u", attributes='{"k": "' + "x" * 17_000 + '"}'),
        InvalidAttributes,
        400,
        50303,
        "create_user",
    ),
    (
        "50100",
        lambda c: c.create_user("u", role_sid=ROLE_THAT_DOES_NOT_EXIST),
        RoleNotFound,
        400,
        50100,
        "create_user",
    ),
    ("50204", lambda c: c.create_user(""), InvalidIdentity, 400, 50204, "create_user"),
    ("50207", lambda c: c.create_user("x" * 257), InvalidIdentity, 400, 50207, "create_user"),
]


@pytest.mark.parametrize(
    ("call", "expected", "status", "code", "operation"),
    [pytest.param(*answer[1:], id=answer[0]) for answer in ANSWERS],
)
async def test_maps_each_error_answer_to_its_class_and_does_not_retry_it(
    emulator: RunningEmulator,
    http: aiohttp.ClientSession,
    call: Call,
    expected: type[ApiError],
    status: int,
    code: int,
    operation: str,
) -> None:
    t = target(emulator, http)
    before = emulator.emulator.stats[operation]
    with pytest.raises(expected) as caught:
        await call(t.client)
    error = caught.value
    assert (error.status, error.code, error.transient, error.after_retry) == (
        status,
        code,
        False,
        False,
    )
    assert error.message and str(code) in str(error)
    assert emulator.emulator.stats[operation] - before <= 2  # create_twice makes two calls
    assert t.client.stats.retries == 0


async def test_a_wrong_token_is_unauthorized_and_never_shown(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    account = emulator.config.account_sid
    t = target(emulator, http, credentials=(account, WRONG_TOKEN))
    with pytest.raises(Unauthorized) as caught:
        await t.client.fetch_user("anyone")
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert emulator.emulator.stats["unauthorized"] == 1
    assert_no_secret(caught.value, (account, WRONG_TOKEN))
    assert WRONG_TOKEN not in repr(t.client)


async def test_a_429_is_rate_limited_and_transient(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http, retry=fast_retry(max_retries=0))
    emulator.emulator.inject_fault("rate_limit", count=1, retry_after=2)
    with pytest.raises(RateLimited) as caught:
        await t.client.create_user("gina")
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (429, 20429, 2.0)
    assert caught.value.transient and not caught.value.ambiguous
    assert t.client.stats.rate_limited == 1


async def test_a_closed_port_raises_connect_error_not_aiohttp(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http, base_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ConversationsError) as caught:
        await t.client.fetch_user("anyone")
    assert type(caught.value) is ConnectError
    assert not caught.value.ambiguous
    assert_not_aiohttp(caught.value)
    assert_no_secret(caught.value, account_credentials(emulator))


async def test_a_dropped_connection_raises_connection_lost_not_aiohttp(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http, retry=fast_retry(max_retries=1))
    emulator.emulator.inject_fault("drop")
    with pytest.raises(ConversationsError) as caught:
        await t.client.create_user("hank")
    assert type(caught.value) is ConnectionLost
    assert caught.value.ambiguous
    assert emulator.emulator.stats["dropped"] == 2
    assert_not_aiohttp(caught.value)
    assert_no_secret(caught.value, account_credentials(emulator))


async def test_a_slow_answer_raises_request_timeout_not_aiohttp(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http, timeout=0.1, retry=fast_retry(max_retries=0))
    emulator.emulator.set_latency(1.0)
    with pytest.raises(ConversationsError) as caught:
        await t.client.fetch_user("anyone")
    assert type(caught.value) is RequestTimeout
    assert_not_aiohttp(caught.value)
    assert_no_secret(caught.value, account_credentials(emulator))


async def test_a_server_that_answers_garbage_raises_our_error(http: aiohttp.ClientSession) -> None:
    """A raw socket that closes after half a status line: aiohttp's parser error stays inside."""

    async def half_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 2")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(half_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = target_without_emulator(http, f"http://127.0.0.1:{port}")
        with pytest.raises(ConversationsError) as caught:
            await client.fetch_user("anyone")
    finally:
        server.close()
        await server.wait_closed()
    assert isinstance(caught.value, TransportError)
    assert_not_aiohttp(caught.value)


def target_without_emulator(http: aiohttp.ClientSession, base_url: str) -> ConversationsClient:
    return ConversationsClient(
        http,
        base_url=base_url,
        api=ApiFlavor.CONVERSATIONS_V1,
        service_sid=None,
        credentials=("AC" + "1" * 32, "secret"),
        limiter=WriteLimiter(25, max_in_flight=1),
        webhook_enabled=False,
        timeout=2.0,
        retry=fast_retry(max_retries=1),
    )


def account_credentials(running: RunningEmulator) -> tuple[str, str]:
    return running.config.account_sid, running.config.auth_token


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def assert_not_aiohttp(error: BaseException) -> None:
    assert not isinstance(error, aiohttp.ClientError)
    assert all(not cls.__module__.startswith("aiohttp") for cls in type(error).__mro__)
    assert isinstance(error.__cause__, aiohttp.ClientError | TimeoutError)  # raised "from e"


def assert_no_secret(error: BaseException, credentials: tuple[str, str]) -> None:
    """Neither the secret nor the Authorization header built from it shows anywhere."""
    shown = [str(error), repr(error), str(error.args)]
    if error.__cause__ is not None:
        shown += [str(error.__cause__), repr(error.__cause__)]
    header = base64.b64encode(":".join(credentials).encode()).decode()
    for text in shown:
        assert credentials[1] not in text
        assert header not in text


async def test_a_409_with_another_code_than_50201_is_a_bad_request_not_already_exists(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    emulator.emulator.inject_fault("status", status=409, count=1, operations=["create_user"])
    t = target(emulator, http)
    with pytest.raises(ApiError) as caught:
        await t.client.create_user("conflicted")
    assert type(caught.value) is BadRequest
    assert (caught.value.status, caught.value.code) == (409, 20409)


async def test_an_error_keeps_the_twilio_request_id_of_its_answer(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http)
    with pytest.raises(NotFound) as caught:
        await t.client.fetch_user("nobody")
    async with http.get(
        emulator.base_url + "/v1/Users/nobody", headers=account_auth(emulator)
    ) as response:
        other = response.headers["Twilio-Request-Id"]
    assert caught.value.request_id is not None
    assert re.fullmatch(r"RQ[0-9a-f]{32}", caught.value.request_id)
    assert caught.value.request_id != other
