"""The write limiter keeps a fast client under Twilio's 30 writes/s; reads are only bounded.

The emulator enforces the per-Service limit strictly (a sliding one-second window), so any burst
over it shows up as a 429 in its counters. Retries are off: a 429 would fail the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from service.config import Settings
from service.conversations import WriteLimiter
from service.emulator import RunningEmulator
from tests.integration.client_factory import fast_retry, target


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.slow
async def test_500_writes_at_full_speed_meet_no_429(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    rate = Settings().write_rate  # the default pace, 25/s
    limiter = WriteLimiter(rate, max_in_flight=32)
    t = target(emulator, http, limiter=limiter, retry=fast_retry(max_retries=0))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(500):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            await t.client.create_user(f"w{queue.get_nowait():03d}")

    await asyncio.gather(*(worker() for _ in range(32)))
    stats = emulator.emulator.stats
    assert (stats["rate_limited"], stats["too_many_requests"]) == (0, 0)
    assert len(emulator.emulator.users()) == 500
    assert stats["create_user"] == 500
    assert limiter.writes == 500 and t.client.stats.rate_limited == 0
    assert limiter.write_wait_seconds > 0
    assert limiter.peak_in_flight <= 32


async def test_writes_are_spaced_by_the_rate(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    """At 29/s, 45 concurrent writes meet the emulator's strict 30/s window without a 429."""
    limiter = WriteLimiter(29, max_in_flight=45)
    t = target(emulator, http, limiter=limiter, retry=fast_retry(max_retries=0))
    await asyncio.gather(*(t.client.create_user(f"s{n}") for n in range(45)))
    assert emulator.emulator.stats["rate_limited"] == 0
    assert limiter.write_wait_seconds >= sum(n / 29 for n in range(45)) * 0.9


async def test_reads_are_not_rate_limited_but_bounded_in_flight(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    """One write per second would make 40 paced reads take 40 s; they take a fraction of it."""
    limiter = WriteLimiter(1, max_in_flight=4)
    t = target(emulator, http, limiter=limiter)
    emulator.emulator.seed_users([{"identity": "reader"}])
    emulator.emulator.set_latency(0.02, operations=["fetch_user"])
    loop = asyncio.get_running_loop()
    started = loop.time()
    users = await asyncio.gather(*(t.client.fetch_user("reader") for _ in range(40)))
    assert {u.identity for u in users} == {"reader"}
    assert loop.time() - started < 10  # paced at 1/s this would be 39 s or more
    assert (limiter.writes, limiter.write_wait_seconds) == (0, 0.0)
    assert limiter.peak_in_flight == 4
    assert limiter.in_flight == 0


async def test_one_limiter_paces_every_client_of_a_service(
    emulator: RunningEmulator, http: aiohttp.ClientSession
) -> None:
    """Two clients, 20 writes at 20/s: the turns are shared, so the last comes after ~0.95 s."""
    limiter = WriteLimiter(20, max_in_flight=8)
    a = target(emulator, http, limiter=limiter, retry=fast_retry(max_retries=0))
    b = target(emulator, http, limiter=limiter, retry=fast_retry(max_retries=0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(
        *(a.client.create_user(f"a{n}") for n in range(10)),
        *(b.client.create_user(f"b{n}") for n in range(10)),
    )
    assert limiter.writes == 20
    assert loop.time() - started >= 19 / 20 * 0.95
    assert limiter.peak_in_flight <= 8
