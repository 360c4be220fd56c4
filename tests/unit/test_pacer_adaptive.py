"""The pacer follows what the Service has left: a write's 429 cuts the rate, success climbs."""

from __future__ import annotations

import asyncio
import math
import random
import time

import pytest

from service.conversations.adaptive import (
    ARRIVAL_MARGIN,
    SPARE_Z,
    SPREAD_EVERY,
    SPREAD_Z,
    Adaptive,
)
from service.conversations.ratelimit import Grant, WriteLimiter


async def _grant(limiter: WriteLimiter) -> Grant:
    async with limiter.slot(write=True) as grant:
        return grant


def _refuse(limiter: WriteLimiter, times: int = 2) -> None:
    """`times` writes granted just now answered 429 (two make a congestion)."""
    _answer_round_trips(limiter, [0.05] * times, status=429)


async def test_one_429_is_jitter_two_in_a_window_cut_the_rate_once_per_window() -> None:
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=Adaptive(floor=5, decrease=0.8))
    _refuse(limiter, 1)
    assert (limiter.rate, limiter.cuts) == (30, 0)  # what the margins allow for: no cut
    _refuse(limiter, 1)
    assert (limiter.rate, limiter.cuts) == (pytest.approx(24.0, rel=1e-3), 1)
    _refuse(limiter, 3)  # granted in the cut's window: the same congestion
    assert limiter.cuts == 1
    await asyncio.sleep(1.1)  # the refused writes were granted 50 ms before they were answered
    _refuse(limiter)  # a new window: cut again
    assert limiter.rate < 24.0  # cut from where it had climbed to
    assert limiter.cuts == 2


async def test_the_rate_never_goes_below_the_floor() -> None:
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=Adaptive(floor=20, decrease=0.5))
    _refuse(limiter)
    assert limiter.rate == 20


async def test_a_cut_goes_to_what_the_others_left_the_writes_answered_in_the_last_second() -> None:
    """The Service's window was full when the 429'd writes arrived: of it, 20 were ours."""
    adaptive = Adaptive(floor=2, decrease=0.7)
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=adaptive)
    _answer_round_trips(limiter, [0.05] * 20)
    _refuse(limiter)
    assert limiter.rate == pytest.approx(14)  # 0.7 of the 20 that got through
    assert adaptive.plateau(cut_from=20) == 19  # one write of each window left spare

    few = WriteLimiter(30, max_in_flight=4, adaptive=adaptive)
    _answer_round_trips(few, [0.05] * 7)  # too few to say: the rate decides
    _refuse(few)
    assert few.rate == pytest.approx(21)


async def test_the_429s_of_the_cuts_window_may_say_less_was_left() -> None:
    adaptive = Adaptive(floor=2, decrease=0.7)
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=adaptive)
    _answer_round_trips(limiter, [0.05] * 25)
    _refuse(limiter)
    assert limiter.rate == pytest.approx(0.7 * 25)
    await asyncio.sleep(1.05)  # the 25 are out of the last second
    _answer_round_trips(limiter, [0.05] * 12)
    _answer_round_trips(limiter, [1.0], status=429)  # granted in the cut's window
    assert limiter.cuts == 1
    assert limiter.rate == pytest.approx(
        adaptive.rate(since_cut=1.05, cut_from=12, ceiling=30), rel=0.01
    )


async def test_429s_under_the_plateau_say_the_spare_write_is_not_there_it_goes_down_one() -> None:
    """21 got through as the other client lost a write: a plateau of 20 takes its spare."""
    adaptive = Adaptive(floor=2)
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=adaptive)
    loop = asyncio.get_running_loop()
    _answer_round_trips(limiter, [0.05] * 21)
    _refuse(limiter)
    cut_at = loop.time()
    await asyncio.sleep(1.1)
    _answer_round_trips(limiter, [0.05], status=429)  # 1.05 s after the last: not a cut
    since_cut = loop.time() - cut_at
    assert limiter.cuts == 1
    assert limiter.rate == pytest.approx(
        adaptive.rate(since_cut=since_cut, cut_from=20, ceiling=30), rel=0.01
    )
    assert adaptive.plateau(cut_from=20) == 19


def test_after_a_cut_the_rate_climbs_fast_holds_under_the_old_rate_then_probes_above() -> None:
    adaptive = Adaptive(floor=5, decrease=0.9, recovery=6, hold=20, probe=3, margin=0.025)
    curve = [adaptive.rate(since_cut=t, cut_from=30, ceiling=40) for t in range(40)]
    assert curve[0] == pytest.approx(27)  # 0.9 of 30
    assert curve == sorted(curve)  # never down without a 429
    assert curve[3] - curve[0] > curve[6] - curve[3]  # fast, then flat
    assert curve[6] == curve[26] == 29  # a spare write under the rate of the 429, held
    assert 29 < curve[27] < curve[28] < curve[29] == pytest.approx(31)  # probing, faster
    assert curve[29] - curve[28] > curve[28] - curve[27]
    assert curve[33] == 40


def test_the_plateau_leaves_a_spare_write_of_the_whole_writes_that_got_through() -> None:
    """The schedule lets ceil(rate) writes into a second: at 19/s, 19 of the 20 left."""
    assert Adaptive(floor=1).plateau(cut_from=20) == 19
    assert Adaptive(floor=1).plateau(cut_from=20.9) == 19
    assert Adaptive(floor=1, spare=2).plateau(cut_from=20) == 18
    assert Adaptive(floor=1, spare=0).plateau(cut_from=20) == 20


async def test_writes_after_a_cut_climb_back_to_the_ceiling() -> None:
    adaptive = Adaptive(floor=5, decrease=0.9, recovery=0.05, hold=0.05, probe=0.05)
    limiter = WriteLimiter(100, max_in_flight=4, adaptive=adaptive)
    _refuse(limiter)
    assert limiter.rate == pytest.approx(90)
    await asyncio.sleep(0.3)
    await _grant(limiter)
    assert limiter.rate == 100


async def test_reads_server_errors_and_a_fixed_pace_leave_the_rate_alone() -> None:
    adaptive = WriteLimiter(30, max_in_flight=4, adaptive=Adaptive(floor=5))
    async with adaptive.slot(write=False) as read:
        adaptive.answered(read, status=429)
        adaptive.answered(read, status=429)
    adaptive.answered(await _grant(adaptive), status=503)
    adaptive.answered(await _grant(adaptive), status=503)
    fixed = WriteLimiter(30, max_in_flight=4)
    _refuse(fixed)
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
    with pytest.raises(ValueError, match="probe"):
        Adaptive(floor=1, probe=0)
    with pytest.raises(ValueError, match="hold"):
        Adaptive(floor=1, hold=-1)
    with pytest.raises(ValueError, match="spare"):
        Adaptive(floor=1, spare=-1)
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
    adaptive = Adaptive(floor=2, decrease=0.9)
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=adaptive)
    _refuse(limiter)  # two answers: too few, a plain cut
    assert limiter.rate == pytest.approx(27, rel=1e-3)
    for status in [201] * 6 + [429] * 2:  # in the cut's window: counted, no second cut
        limiter.answered(await _grant(limiter), status=status)
    assert limiter.cuts == 1
    await asyncio.sleep(1.1)
    before = limiter.rate
    _refuse(limiter)  # 4 of 10 refused since the cut
    assert limiter.cuts == 2
    expected = adaptive.rate(since_cut=0, cut_from=before * 0.6, ceiling=30)
    assert limiter.rate == pytest.approx(expected, rel=0.01)
    assert limiter.rate < before * 0.6


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


async def test_the_arrival_margin_follows_the_jitter_measured_every_few_answers() -> None:
    """The quartiles are read every `SPREAD_EVERY` round trips, not on every answer."""
    rng = random.Random(5)
    limiter = WriteLimiter(30, max_in_flight=4)
    _answer_round_trips(limiter, [rng.gauss(0.1, 0.02) for _ in range(64)])
    wide = limiter.arrival_margin
    assert wide == pytest.approx(3.3 * math.sqrt(2) * 0.02, rel=0.3)
    _answer_round_trips(limiter, [rng.gauss(0.1, 0.005) for _ in range(SPREAD_EVERY - 1)])
    assert limiter.arrival_margin == wide  # not measured again yet
    _answer_round_trips(limiter, [rng.gauss(0.1, 0.005) for _ in range(65 - SPREAD_EVERY)])
    narrow = limiter.arrival_margin
    assert narrow == pytest.approx(3.3 * math.sqrt(2) * 0.005, rel=0.4)
    assert narrow < wide / 2
    _answer_round_trips(limiter, [rng.gauss(0.1, 0.02) for _ in range(64)])
    assert limiter.arrival_margin > 2 * narrow  # and back


async def test_at_the_plateau_the_margin_covers_fewer_deviations_the_spare_write_the_rest() -> None:
    rng = random.Random(11)
    limiter = WriteLimiter(30, max_in_flight=4, adaptive=Adaptive(floor=2))
    _answer_round_trips(limiter, [rng.gauss(0.15, 0.015) for _ in range(64)])
    alone = limiter.arrival_margin
    _refuse(limiter)  # 64 answered in the last second: the plateau is 63, over the ceiling
    assert limiter.arrival_margin == pytest.approx(alone * SPARE_Z / SPREAD_Z)
    assert SPARE_Z < SPREAD_Z
