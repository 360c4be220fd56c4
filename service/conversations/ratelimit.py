"""Pacing of calls to one Service: a write rate and a bound on requests in flight.

Twilio allows 30 user creates, updates and deletes per second per Service, counted over any
one-second window; going over costs a 429 and a retry. `WriteLimiter` gives writes turns on a
fixed schedule, one every 1/N s (`_Schedule`), so it never bursts. A turn that starts late
(timers fire a little after their time, the event loop may be busy) does not push every later
turn back: a leaky bucket of capacity one counts from each grant, and so lost about 3% of the
rate to timer lateness. Catching up after a late turn must not crowd writes together, so the
schedule keeps the bucket's guarantee as a hard rule: with K = ceil(N), any K+1 consecutive
writes span at least K/N s (and at least 1.01 s), so at most K (30 at N = 29.5) fall in any
one-second window. Arrival times at Twilio jitter by network latency, so the default rate
(25/s) keeps a margin below 30; 29.5/s keeps about 17 ms.

Reads are not rate-limited; reads and writes together are bounded by `max_in_flight`. A write
takes its in-flight slot *before* waiting for its turn, so turns are used at once and can never
pile up into a burst behind busy slots.

One `WriteLimiter` per Service, shared by every client and task that writes to it, on one
event loop (its times are that loop's clock).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class WriteLimiter:
    """At most `writes_per_second` writes, `max_in_flight` requests at once; counts the waits."""

    def __init__(self, writes_per_second: float, *, max_in_flight: int) -> None:
        if writes_per_second <= 0:
            raise ValueError(f"writes_per_second must be positive, not {writes_per_second}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.writes_per_second = writes_per_second
        self.max_in_flight = max_in_flight
        self._schedule = _Schedule(writes_per_second)
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
        await self._schedule.take()
        self.write_wait_seconds += loop.time() - started
        self.writes += 1

    def __repr__(self) -> str:
        return (
            f"WriteLimiter(writes_per_second={self.writes_per_second:g}, "
            f"max_in_flight={self.max_in_flight}, in_flight={self.in_flight})"
        )


ARRIVAL_MARGIN = 0.01
"""Seconds added to a one-second window: Twilio counts arrivals, which jitter with the network,
so at N = 30 writes paced exactly 1/30 s apart would sometimes arrive 31 in a second."""


class _Schedule:
    """Turns one every `1 / per_second` s on a fixed grid; K+1 turns span at least K/N s.

    Each caller books the next free turn at once (first come, first served) and sleeps until
    it; a caller cancelled while waiting leaves its turn unused. With K = ceil(N), the second
    rule is the leaky bucket's own guarantee over a second (at most K writes in any K/N >= 1 s,
    and never less than 1 s plus `ARRIVAL_MARGIN`), kept at the moment of each grant: a late
    turn may be caught up, but never by crowding more than K writes into that window.
    """

    def __init__(self, per_second: float) -> None:
        self._interval = 1 / per_second
        self._next = -math.inf
        self._recent: deque[float] = deque(maxlen=math.ceil(per_second))
        self._window = max(math.ceil(per_second) / per_second, 1.0 + ARRIVAL_MARGIN)

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        turn = max(loop.time(), self._next)
        self._next = turn + self._interval
        await asyncio.sleep(turn - loop.time())
        # the cap must hold at the moment of the grant, so look again after every wait
        while (wait := self._window_wait(loop.time())) > 0:  # noqa: ASYNC110 - a time, no event
            await asyncio.sleep(wait)
        self._recent.append(loop.time())

    def _window_wait(self, now: float) -> float:
        """Seconds until one more turn keeps the last K turns within the window."""
        if len(self._recent) < (self._recent.maxlen or 0):
            return 0.0
        return self._recent[0] + self._window - now


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
