"""What the pacer is measured against: jittered latency, and another client of the Service.

Twilio counts its 30 writes/s at arrival, and arrivals jitter with the network; the Service's
budget is shared with the customer's own app. The emulator draws each call's latency around a
mean, and can spend the write budget at a set rate the way another client would.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import aiohttp
import pytest

from service.conversations.adaptive import Adaptive
from service.conversations.ratelimit import WriteLimiter
from service.emulator import RunningEmulator
from service.emulator.faults import FaultPlan
from tests.fixtures.emulator import account_auth
from tests.integration.client_factory import fast_retry, target
from tests.integration.test_emulator_control import control


def test_jittered_latency_is_drawn_around_its_mean_and_never_below_zero() -> None:
    draws = random.Random(7)
    plan = FaultPlan(chance=draws.random, spread=draws.gauss)
    plan.set_latency(0.05, jitter=0.02)
    delays = [plan.latency("list_users") for _ in range(2000)]
    assert statistics.mean(delays) == pytest.approx(0.05, abs=0.003)
    assert statistics.stdev(delays) == pytest.approx(0.02, abs=0.003)
    assert min(delays) >= 0
    plan.set_latency(0.05)
    assert {plan.latency("list_users") for _ in range(10)} == {0.05}
    with pytest.raises(ValueError, match="jitter"):
        plan.set_latency(0.05, jitter=-1)


async def test_jitter_is_set_through_the_control_api(emulator: RunningEmulator) -> None:
    status, body = await control(
        emulator, "POST", "faults", {"kind": "latency", "seconds": 0.01, "jitter": 0.005}
    )
    assert (status, body["jitter"]) == (201, 0.005)
    status, body = await control(
        emulator, "POST", "faults", {"kind": "latency", "seconds": 0.01, "jitter": -0.5}
    )
    assert status == 400 and "jitter" in body["error"]


async def test_another_client_spends_the_budget_and_counts_its_refusals(
    emulator: RunningEmulator,
) -> None:
    status, started = await control(emulator, "PUT", "load", {"writes_per_second": 20})
    assert (status, started["attempted"]) == (201, 0)
    await asyncio.sleep(1.05)
    status, counts = await control(emulator, "GET", "load")
    assert status == 200 and 19 <= counts["attempted"] <= 23 and counts["refused"] == 0
    async with aiohttp.ClientSession(base_url=emulator.base_url) as http:
        answers = []
        for n in range(40):  # 40 writes at once on top of its 20/s: over the 30/s
            form = {"Identity": f"u{n}"}
            async with http.post("/v1/Users", data=form, headers=account_auth(emulator)) as reply:
                answers.append(reply.status)
    assert answers.count(429) >= 10
    status, stopped = await control(emulator, "PUT", "load", {"writes_per_second": None})
    assert status == 200 and stopped["attempted"] >= counts["attempted"]
    assert (await control(emulator, "GET", "load"))[1] is None


async def test_a_load_on_an_unknown_service_or_at_no_rate_is_refused(
    emulator: RunningEmulator,
) -> None:
    unknown = {"writes_per_second": 5, "service_sid": "IS" + "0" * 32}
    assert (await control(emulator, "PUT", "load", unknown))[0] == 404
    assert (await control(emulator, "PUT", "load", {"writes_per_second": 0}))[0] == 400
    assert emulator.emulator.load is None


async def test_the_adaptive_pacer_backs_off_when_another_client_takes_the_budget(
    emulator: RunningEmulator,
) -> None:
    """Another client writes 20/s: at a fixed 30/s about a third of our writes would be
    refused; the pacer cuts its rate, every user is created, and the refusals stay few."""
    emulator.emulator.start_load(20)
    limiter = WriteLimiter(30, max_in_flight=16, adaptive=Adaptive(floor=2))
    async with aiohttp.ClientSession() as http:
        t = target(emulator, http, limiter=limiter, retry=fast_retry(max_retries=8))
        started = time.monotonic()
        await asyncio.gather(*(t.client.create_user(f"a{n:03d}") for n in range(120)))
        seconds = time.monotonic() - started
    other = emulator.emulator.stop_load()
    assert other is not None
    assert len(emulator.emulator.users()) == 120
    assert limiter.cuts >= 1 and limiter.rate < 30
    assert t.client.stats.rate_limited <= 0.15 * 120, (seconds, t.client.stats.rate_limited)


async def test_a_refused_load_leaves_the_running_one_alone(emulator: RunningEmulator) -> None:
    assert (await control(emulator, "PUT", "load", {"writes_per_second": 5}))[0] == 201
    for refused in (0, 1e9, -1):
        status, _ = await control(emulator, "PUT", "load", {"writes_per_second": refused})
        assert status == 400
    status, running = await control(emulator, "GET", "load")
    assert status == 200 and running is not None and running["writes_per_second"] == 5
