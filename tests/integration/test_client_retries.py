"""Transient failures are retried, with bounded backoff honouring Retry-After; nothing else is.

Faults come from the emulator; the client's sleep is a recorder, so the waits it asks for are
asserted without being waited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from service.conversations import (
    AlreadyExists,
    CallEvent,
    CallRetry,
    ConnectionLost,
    NotFound,
    RateLimited,
    RequestTimeout,
    ServerError,
)
from service.emulator import RunningEmulator
from tests.integration.client_factory import RecordingSleep, fast_retry, target


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_retries_server_errors_until_an_answer(
    emulator: RunningEmulator, http: aiohttp.ClientSession, status: int
) -> None:
    t = target(emulator, http)
    emulator.emulator.seed_users([{"identity": "ivy"}])
    emulator.emulator.inject_fault("status", status=status, count=2, operations=["fetch_user"])
    user = await t.client.fetch_user("ivy")
    assert user.identity == "ivy"
    assert emulator.emulator.stats["fetch_user"] == 3
    assert t.client.stats.retries == 2
    assert t.client.stats.calls[("fetch_user", status)] == 2


async def test_gives_up_after_max_retries(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    t = target(emulator, http, retry=fast_retry(max_retries=3, sleep=sleep))
    emulator.emulator.inject_fault("status", status=503)
    with pytest.raises(ServerError) as caught:
        await t.client.fetch_user("anyone")
    assert caught.value.status == 503
    assert emulator.emulator.stats["fetch_user"] == 4
    assert len(sleep.delays) == 3
    assert all(0 <= d <= 0.01 for d in sleep.delays)


async def test_retries_dropped_connections(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http)
    emulator.emulator.inject_fault("drop", count=2, operations=["create_user"])
    await t.client.create_user("jack")
    assert [u["identity"] for u in emulator.emulator.users()] == ["jack"]
    assert emulator.emulator.stats["dropped"] == 2
    assert t.client.stats.calls[("create_user", None)] == 2


async def test_retries_dropped_reads(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    """aiohttp itself repeats an idempotent request once on a dropped connection; we go on."""
    t = target(emulator, http)
    emulator.emulator.inject_fault("drop", count=4, operations=["list_users"])
    emulator.emulator.seed_users([{"identity": "jack"}])
    pages = [page async for page in t.client.iter_user_pages()]
    assert [u.identity for page in pages for u in page] == ["jack"]
    assert emulator.emulator.stats["dropped"] == 4
    assert t.client.stats.calls[("list_users", None)] >= 2


async def test_retries_timeouts_and_then_raises_request_timeout(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http, timeout=0.1, retry=fast_retry(max_retries=2))
    emulator.emulator.set_latency(0.5, operations=["fetch_user"])
    with pytest.raises(RequestTimeout):
        await t.client.fetch_user("anyone")
    assert emulator.emulator.stats["fetch_user"] == 3
    assert t.client.stats.retries == 2


async def test_a_timeout_only_on_some_operations_does_not_slow_the_others(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http, timeout=0.2, retry=fast_retry(max_retries=0))
    emulator.emulator.set_latency(1.0, operations=["list_roles"])
    await t.client.create_user("kate")
    with pytest.raises(RequestTimeout):
        await t.client.list_roles()
    assert (await t.client.fetch_user("kate")).identity == "kate"


@pytest.mark.parametrize("retry_after", [1, 3])
async def test_a_429_waits_at_least_retry_after(
    emulator: RunningEmulator, http: aiohttp.ClientSession, retry_after: int
) -> None:
    sleep = RecordingSleep()
    t = target(emulator, http, retry=fast_retry(sleep=sleep))
    emulator.emulator.inject_fault("rate_limit", count=1, retry_after=retry_after)
    await t.client.create_user("leo")
    assert sleep.delays == [retry_after]  # the Retry-After wins over a 10 ms backoff cap
    assert emulator.emulator.stats["create_user"] == 2
    assert [u["identity"] for u in emulator.emulator.users()] == ["leo"]
    assert (t.client.stats.rate_limited, t.client.stats.retries) == (1, 1)


async def test_a_429_without_retry_after_backs_off_exponentially(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    sleep = RecordingSleep()
    retry = CallRetry(
        max_retries=4, backoff_base=0.001, backoff_max=1.0, sleep=sleep, jitter=lambda: 1.0
    )
    t = target(emulator, http, retry=retry)
    emulator.emulator.inject_fault("rate_limit", count=3)
    await t.client.update_user((await t.client.create_user("mia")).sid, friendly_name="Mia")
    assert sleep.delays == [0.001, 0.002, 0.004]


async def test_a_real_429_from_the_write_limit_is_retried_after_its_window(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    """The emulator's own limit at 1 write/s: the second write is refused, then admitted."""
    retry = CallRetry(max_retries=8, backoff_base=0.2, backoff_max=0.5)
    t = target(emulator, http, retry=retry)
    emulator.emulator.set_write_limit(1)
    await t.client.create_user("ned")
    await t.client.create_user("olga")
    assert len(emulator.emulator.users()) == 2
    assert emulator.emulator.stats["rate_limited"] >= 1
    assert t.client.stats.rate_limited == emulator.emulator.stats["rate_limited"]


@pytest.mark.parametrize("kind", ["status", "drop"])
async def test_an_ambiguous_create_that_meets_409_on_retry_says_so(
    emulator: RunningEmulator, http: aiohttp.ClientSession, kind: str
) -> None:
    t = target(emulator, http)
    emulator.emulator.inject_fault(kind, count=1, operations=["create_user"], after_processing=True)  # type: ignore[arg-type]
    with pytest.raises(AlreadyExists) as caught:
        await t.client.create_user("pam")
    assert caught.value.after_retry
    assert (caught.value.status, caught.value.code) == (409, 50201)
    assert [u["identity"] for u in emulator.emulator.users()] == ["pam"]
    assert emulator.emulator.stats["create_user"] == 2


async def test_a_plain_409_is_not_marked_as_after_retry(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http)
    emulator.emulator.seed_users([{"identity": "quinn"}])
    emulator.emulator.inject_fault("rate_limit", count=1, operations=["create_user"])
    with pytest.raises(AlreadyExists) as caught:
        await t.client.create_user("quinn")
    assert not caught.value.after_retry  # a 429 is never processed, so it was no ambiguity


async def test_an_ambiguous_delete_that_meets_404_on_retry_says_so(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http)
    emulator.emulator.seed_users([{"identity": "rob"}])
    emulator.emulator.inject_fault(
        "status", count=1, operations=["delete_user"], after_processing=True
    )
    with pytest.raises(NotFound) as caught:
        await t.client.delete_user("rob")
    assert caught.value.after_retry
    assert emulator.emulator.users() == []


async def test_retries_each_page_on_its_own(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http)
    identities = [f"p{n:03d}" for n in range(130)]
    emulator.emulator.seed_users([{"identity": i} for i in identities])
    listed: list[str] = []
    async for page in t.client.iter_user_pages():
        listed += [user.identity for user in page]
        emulator.emulator.inject_fault("status", status=503, count=1, operations=["list_users"])
    assert listed == identities
    assert emulator.emulator.stats["list_users"] == 3 + 2  # 3 pages, 2 of them failed once


async def test_reports_every_attempt_to_the_observer(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    events: list[CallEvent] = []
    t = target(emulator, http, observer=events.append)
    emulator.emulator.inject_fault("status", status=500, count=1, operations=["create_user"])
    emulator.emulator.inject_fault("drop", count=1, operations=["update_user"])
    await t.client.create_user("sue")
    await t.client.update_user("sue", friendly_name="Sue")
    seen = [(e.operation, e.status, e.attempt, e.error) for e in events]
    assert seen == [
        ("create_user", 500, 0, "ServerError"),
        ("create_user", 201, 1, None),
        ("update_user", None, 0, "ConnectionLost"),
        ("update_user", 200, 1, None),
    ]
    assert all(e.seconds >= 0 for e in events)
    assert t.client.stats.total == 4 and t.client.stats.retries == 2


async def test_a_transport_failure_after_all_retries_is_raised(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http, retry=fast_retry(max_retries=2))
    emulator.emulator.inject_fault("drop", operations=["update_user"])
    with pytest.raises(ConnectionLost):
        await t.client.update_user("anyone", friendly_name="x")
    assert emulator.emulator.stats["dropped"] == 3


async def test_rate_limited_after_all_retries_is_raised(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    t = target(emulator, http, retry=fast_retry(max_retries=1))
    emulator.emulator.inject_fault("rate_limit", retry_after=0)
    with pytest.raises(RateLimited):
        await t.client.create_user("tom")
    assert emulator.emulator.stats["too_many_requests"] == 2
