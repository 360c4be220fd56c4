"""Pacing of calls to one Service: a write rate and a bound on requests in flight.

Twilio allows 30 user creates, updates and deletes per second per Service, counted over any
one-second window; going over costs a 429 and a retry. `WriteLimiter` spaces writes evenly at
`writes_per_second` with a leaky bucket of capacity one (`AsyncLimiter(1, 1/N)`), so it never
bursts: two writes are at least 1/N s apart, hence at most N (N+1 counting both ends of a closed
window) leave in any second. Arrival times at Twilio jitter by network latency, so the default
rate (25/s) keeps a margin below 30.

Reads are not rate-limited; reads and writes together are bounded by `max_in_flight`. A write
takes its in-flight slot *before* waiting for its turn, so turns granted by the bucket are used
at once and can never pile up into a burst behind busy slots.

One `WriteLimiter` per Service, shared by every client and task that writes to it. It must be
created and used on one event loop (aiolimiter's rule).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter


class WriteLimiter:
    """At most `writes_per_second` writes, `max_in_flight` requests at once; counts the waits."""

    def __init__(self, writes_per_second: float, *, max_in_flight: int) -> None:
        if writes_per_second <= 0:
            raise ValueError(f"writes_per_second must be positive, not {writes_per_second}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.writes_per_second = writes_per_second
        self.max_in_flight = max_in_flight
        self._bucket = AsyncLimiter(1, 1 / writes_per_second)
        self._slots = _Slots(max_in_flight)
        self.write_wait_seconds = 0.0
        """Cumulative seconds writes spent waiting for their turn (not for a slot)."""
        self.writes = 0

    @property
    def in_flight(self) -> int:
        return self._slots.busy

    @property
    def peak_in_flight(self) -> int:
        """The most requests ever in flight at once."""
        return self._slots.peak

    @asynccontextmanager
    async def slot(self, *, write: bool) -> AsyncIterator[None]:
        """Hold one in-flight slot for the body; for a write, also wait for its turn first."""
        async with self._slots.hold():
            if write:
                await self._take_turn()
            yield

    async def _take_turn(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._bucket.acquire()
        self.write_wait_seconds += loop.time() - started
        self.writes += 1

    def __repr__(self) -> str:
        return (
            f"WriteLimiter(writes_per_second={self.writes_per_second:g}, "
            f"max_in_flight={self.max_in_flight}, in_flight={self.in_flight})"
        )


class _Slots:
    """A semaphore that knows how many holders it has and had at most."""

    def __init__(self, size: int) -> None:
        self._semaphore = asyncio.Semaphore(size)
        self.busy = 0
        self.peak = 0

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self._semaphore:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
            try:
                yield
            finally:
                self.busy -= 1
