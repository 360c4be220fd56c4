"""The pacer follows what the Service has left: a write's 429 cuts the rate, success climbs."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.conversations.ratelimit import Adaptive, Grant, WriteLimiter


async def _grant(limiter: WriteLimiter) -> Grant:
    async with limiter.slot(write=True) as grant:
        return grant


async def test_a_429_cuts_the_rate_once_per_round_of_writes() -> None:
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=Adaptive(floor=5, decrease=0.8))
    first, second = await _grant(limiter), await _grant(limiter)
    limiter.answered(first, status=429)
    limiter.answered(second, status=429)  # sent at the old rate: the same congestion
    assert limiter.rate == pytest.approx(24.0)
    limiter.answered(await _grant(limiter), status=429)  # sent after the cut: a new round
    assert limiter.rate == pytest.approx(19.2)
    assert limiter.cuts == 2


async def test_the_rate_never_goes_below_the_floor() -> None:
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=Adaptive(floor=20, decrease=0.5))
    for _ in range(3):
        limiter.answered(await _grant(limiter), status=429)
    assert limiter.rate == 20


async def test_writes_answered_without_a_429_climb_back_to_the_ceiling() -> None:
    limiter = WriteLimiter(100, max_in_flight=4, adaptive=Adaptive(floor=5, increase=50))
    limiter.answered(await _grant(limiter), status=429)
    cut = limiter.rate
    limiter.answered(await _grant(limiter), status=201)
    assert limiter.rate > cut
    for _ in range(200):
        limiter.answered(await _grant(limiter), status=200)
    assert limiter.rate == 100


async def test_reads_server_errors_and_a_fixed_pace_leave_the_rate_alone() -> None:
    adaptive = WriteLimiter(30, max_in_flight=4, adaptive=Adaptive(floor=5))
    async with adaptive.slot(write=False) as read:
        adaptive.answered(read, status=429)
    adaptive.answered(await _grant(adaptive), status=503)
    fixed = WriteLimiter(30, max_in_flight=4)
    fixed.answered(await _grant(fixed), status=429)
    assert (adaptive.rate, adaptive.cuts, fixed.rate, fixed.cuts) == (30, 0, 30, 0)


def test_a_floor_over_the_ceiling_or_a_senseless_adaptation_is_refused() -> None:
    with pytest.raises(ValueError, match="over the ceiling"):
        WriteLimiter(10, max_in_flight=1, adaptive=Adaptive(floor=20))
    with pytest.raises(ValueError, match="decrease"):
        Adaptive(floor=1, decrease=1.5)
    with pytest.raises(ValueError, match="reserved"):
        WriteLimiter(10, max_in_flight=2, reserved=2)


async def test_any_k_plus_one_turns_span_the_window_while_the_loop_stalls() -> None:
    """30/s with 30 ms stalls every 100 ms: late turns are caught up, never crowded."""
    limiter = WriteLimiter(30, max_in_flight=16)
    loop = asyncio.get_running_loop()
    stamps: list[float] = []
    done = asyncio.Event()

    async def stall() -> None:
        while not done.is_set():
            busy_until = time.perf_counter() + 0.03  # CPU work between awaits
            while time.perf_counter() < busy_until:
                pass
            await asyncio.sleep(0.1)

    async def write() -> None:
        async with limiter.slot(write=True):
            stamps.append(loop.time())
            await asyncio.sleep(0.02)

    staller = asyncio.create_task(stall())
    await asyncio.gather(*(write() for _ in range(75)))
    done.set()
    await staller
    spans = [stamps[n + 30] - stamps[n] for n in range(len(stamps) - 30)]
    assert min(spans) >= 1.01 - 1e-6
    assert stamps[-1] - stamps[0] < 74 / 30 + 0.3  # the stalls cost no turns
