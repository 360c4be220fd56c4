"""The pacer follows what the Service has left: a write's 429 cuts the rate, success climbs."""

from __future__ import annotations

import asyncio
import math
import random
import time

import pytest

from service.conversations.ratelimit import ARRIVAL_MARGIN, Adaptive, Grant, WriteLimiter


async def _grant(limiter: WriteLimiter) -> Grant:
    async with limiter.slot(write=True) as grant:
        return grant


async def test_a_429_cuts_the_rate_once_per_window_of_writes() -> None:
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=Adaptive(floor=5, decrease=0.8))
    first, second = await _grant(limiter), await _grant(limiter)
    limiter.answered(first, status=429)
    limiter.answered(second, status=429)  # sent at the old rate: the same congestion
    limiter.answered(await _grant(limiter), status=429)  # still in the old rate's window
    assert (limiter.rate, limiter.cuts) == (pytest.approx(24.0, rel=1e-3), 1)
    await asyncio.sleep(1.01)
    limiter.answered(await _grant(limiter), status=429)  # a new window: cut again
    assert limiter.rate < 24.0  # cut from where it had climbed to
    assert limiter.cuts == 2


async def test_the_rate_never_goes_below_the_floor() -> None:
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=Adaptive(floor=20, decrease=0.5))
    limiter.answered(await _grant(limiter), status=429)
    assert limiter.rate == 20


def test_after_a_cut_the_rate_climbs_fast_flattens_at_the_old_rate_then_probes_above() -> None:
    adaptive = Adaptive(floor=5, decrease=0.9, recovery=6, margin=0.025)
    curve = [adaptive.rate(since_cut=t, cut_from=30, ceiling=40) for t in range(13)]
    assert curve[0] == pytest.approx(27)
    assert curve == sorted(curve)  # never down without a 429
    assert curve[3] - curve[0] > curve[6] - curve[3]  # fast, then flat
    assert curve[6] == pytest.approx(29)  # a 40th of the ceiling under the rate of the 429
    assert 29 < curve[9] < curve[12] == pytest.approx(31)
    assert adaptive.rate(since_cut=60, cut_from=30, ceiling=40) == 40


async def test_writes_after_a_cut_climb_back_to_the_ceiling() -> None:
    adaptive = Adaptive(floor=5, decrease=0.9, recovery=0.05)
    limiter = WriteLimiter(100, max_in_flight=4, adaptive=adaptive)
    limiter.answered(await _grant(limiter), status=429)
    assert limiter.rate == pytest.approx(90)
    await asyncio.sleep(0.3)
    await _grant(limiter)
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
    with pytest.raises(ValueError, match="recovery"):
        Adaptive(floor=1, recovery=0)
    with pytest.raises(ValueError, match="margin"):
        Adaptive(floor=1, margin=1)
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


async def test_a_cut_follows_the_share_of_writes_refused_once_there_are_enough() -> None:
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=Adaptive(floor=2, decrease=0.9))
    limiter.answered(await _grant(limiter), status=429)  # one answer: too few, a plain cut
    assert limiter.rate == pytest.approx(27, rel=1e-3)
    for status in [201] * 7 + [429] * 2:  # in the cut's window: counted, no second cut
        limiter.answered(await _grant(limiter), status=status)
    assert limiter.cuts == 1
    await asyncio.sleep(1.01)
    before = limiter.rate
    limiter.answered(await _grant(limiter), status=429)  # 3 of 10 refused since the cut
    assert limiter.cuts == 2
    assert limiter.rate < before * 0.7 * 0.9 + 0.5


def _answer_round_trips(limiter: WriteLimiter, seconds: list[float], *, status: int = 201) -> None:
    """Answers to writes granted `seconds` ago (their round trips), as the transport gives them."""
    now = asyncio.get_running_loop().time()
    for rtt in seconds:
        limiter.answered(Grant(write=True, at=now - rtt), status=status)


async def test_the_arrival_margin_covers_the_jitter_of_write_round_trips() -> None:
    """3.3 standard deviations of the gap between two arrivals: sqrt(2) x 3.3 x sigma."""
    rng = random.Random(7)
    steady = WriteLimiter(30, max_in_flight=4)
    _answer_round_trips(steady, [0.05] * 64)
    assert steady.arrival_margin == pytest.approx(ARRIVAL_MARGIN)  # never under the minimum

    for sigma in (0.005, 0.015):
        limiter = WriteLimiter(30, max_in_flight=4)
        _answer_round_trips(limiter, [rng.gauss(0.05 + sigma * 10, sigma) for _ in range(64)])
        assert limiter.arrival_margin == pytest.approx(3.3 * math.sqrt(2) * sigma, rel=0.3)


async def test_the_arrival_margin_ignores_what_is_not_a_write_round_trip() -> None:
    """Too few answers, 429s (refused, not jitter) and the odd slow answer leave it alone."""
    limiter = WriteLimiter(30, max_in_flight=4)
    _answer_round_trips(limiter, [0.05, 0.5] * 7)
    assert limiter.arrival_margin == ARRIVAL_MARGIN  # 14 answers: too few to say
    _answer_round_trips(limiter, [0.01, 0.9] * 32, status=429)
    assert limiter.arrival_margin == ARRIVAL_MARGIN
    _answer_round_trips(limiter, [0.05] * 60 + [2.0] * 4)  # a pause, a retry: outliers
    assert limiter.arrival_margin == ARRIVAL_MARGIN


async def test_any_k_plus_one_turns_span_one_second_and_the_arrival_margin() -> None:
    limiter = WriteLimiter(30, max_in_flight=16)
    rng = random.Random(3)
    _answer_round_trips(limiter, [rng.gauss(0.15, 0.015) for _ in range(64)])
    margin = limiter.arrival_margin
    assert margin > 0.05
    loop = asyncio.get_running_loop()
    stamps: list[float] = []

    async def write() -> None:
        async with limiter.slot(write=True):
            stamps.append(loop.time())

    await asyncio.gather(*(write() for _ in range(62)))
    spans = [stamps[n + 30] - stamps[n] for n in range(len(stamps) - 30)]
    assert min(spans) >= 1 + margin - 1e-6
    assert max(spans) < 1 + margin + 0.05  # the margin is all the schedule gives up


def test_the_rate_settles_under_the_rate_of_the_429_by_the_arrival_margin_if_it_is_more() -> None:
    """At 15 ms of jitter our writes spread over 1.07 s: 20/s of them take 20 / 1.07 of a
    second's budget at most, so the other client's share stays clear; then it probes above."""
    adaptive = Adaptive(floor=5, decrease=0.95, recovery=10, margin=0.03)
    plateau = adaptive.rate(since_cut=10, cut_from=20, ceiling=30, arrival_margin=0.07)
    assert plateau == pytest.approx(20 / 1.07)
    assert adaptive.rate(since_cut=0, cut_from=20, ceiling=30, arrival_margin=0.07) == (
        pytest.approx(20 / 1.07 - 0.9)
    )
    assert adaptive.rate(since_cut=10, cut_from=20, ceiling=30, arrival_margin=0.01) == (
        pytest.approx(20 - 0.9)  # a small margin: the ceiling's share decides
    )
    assert adaptive.rate(since_cut=25, cut_from=20, ceiling=30, arrival_margin=0.07) > 20
