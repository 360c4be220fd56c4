"""The pacer's priority: urgent calls overtake queued bulk calls, pace and bound hold."""

from __future__ import annotations

import asyncio
import itertools

from service.conversations.ratelimit import WriteLimiter, urgent


async def test_an_urgent_write_overtakes_a_queue_of_bulk_writes():
    limiter = WriteLimiter(100, max_in_flight=2, reserved=0)
    order: list[str] = []

    async def write(name: str) -> None:
        async with limiter.slot(write=True):
            order.append(name)

    bulk = [asyncio.create_task(write(f"bulk{n}")) for n in range(10)]
    await asyncio.sleep(0.015)  # a couple of bulk writes went through; the rest queue

    async def event() -> None:
        with urgent():
            await write("event")

    await asyncio.gather(event(), *bulk)
    assert order.index("event") <= 4
    assert sorted(order) == sorted([f"bulk{n}" for n in range(10)] + ["event"])
    assert limiter.writes == 11


async def test_writes_are_paced_and_in_flight_is_bounded():
    limiter = WriteLimiter(50, max_in_flight=3, reserved=0)
    loop = asyncio.get_running_loop()
    stamps: list[float] = []

    async def write(*, important: bool) -> None:
        if important:
            with urgent():
                await write(important=False)
            return
        async with limiter.slot(write=True):
            stamps.append(loop.time())
            await asyncio.sleep(0.01)

    await asyncio.gather(*(write(important=n % 3 == 0) for n in range(20)))
    # 50/s on a grid: 19 intervals of 20 ms, and a late turn is never followed by a burst
    assert stamps[-1] - stamps[0] >= 19 * 0.02 - 0.005
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.005
    assert limiter.peak_in_flight <= 3
    assert limiter.in_flight == 0
    assert limiter.write_wait_seconds > 0


async def test_a_cancelled_waiter_gives_its_place_to_the_next():
    limiter = WriteLimiter(1000, max_in_flight=1, reserved=0)
    release = asyncio.Event()

    async def hold() -> None:
        async with limiter.slot(write=False):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter.cancel()
    release.set()
    await holder
    async with asyncio.timeout(1):
        async with limiter.slot(write=True):
            pass
    assert waiter.cancelled()
    assert limiter.in_flight == 0


async def test_urgent_reads_find_a_reserved_slot_while_bulk_writes_fill_the_rest():
    limiter = WriteLimiter(1, max_in_flight=4, reserved=1)  # 1 write/s: bulk writes pile up
    bulk = [asyncio.create_task(_hold_write(limiter)) for _ in range(6)]
    await asyncio.sleep(0.01)
    assert limiter.in_flight == 3  # the fourth slot is kept for urgent calls

    with urgent():
        async with asyncio.timeout(0.1):
            async with limiter.slot(write=False):
                pass
    for task in bulk:
        task.cancel()
    await asyncio.gather(*bulk, return_exceptions=True)
    assert limiter.in_flight == 0


async def _hold_write(limiter: WriteLimiter) -> None:
    async with limiter.slot(write=True):
        pass
