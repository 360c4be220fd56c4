"""Events ahead of bulk work: a write limiter that serves urgent callers first.

A full run queues a thousand writes at a time behind the Service's one write limiter; a plain
FIFO would make a changed user wait for all of them (40 s at 25 writes/s). `PriorityLimiter` is
a drop-in `WriteLimiter` (same pace, same in-flight bound, same counters) whose waiting lines
are ordered by urgency, then arrival: a call made inside `urgent()` takes the next free slot
and the next write turn, and a quarter of the in-flight slots are kept for urgent calls. Bulk
work is never starved, only delayed by the few urgent calls (an event is two or three calls
per user), so a full run still finishes.

Urgency travels in a context variable, so it follows a reconcile into every task it spawns
(asyncio copies the context into new tasks) without the reconcile knowing about it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar

from service.conversations.ratelimit import WriteLimiter

URGENT: ContextVar[bool] = ContextVar("usersync_urgent", default=False)


@contextmanager
def urgent() -> Iterator[None]:
    """Calls made in this block (and tasks it starts) go ahead of bulk work."""
    token = URGENT.set(True)
    try:
        yield
    finally:
        URGENT.reset(token)


class _Line:
    """Waiters ordered by (not urgent, arrival); cancelled ones are dropped as they surface."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    def __bool__(self) -> bool:
        """True if someone is still waiting (the first live waiter is at the top)."""
        while self._heap and self._heap[0][2].done():
            heapq.heappop(self._heap)
        return bool(self._heap)

    def first_is_urgent(self) -> bool | None:
        """Whether the first live waiter is urgent; None if nobody waits."""
        return self._heap[0][0] == 0 if self else None

    def join(self, *, urgent: bool) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (0 if urgent else 1, next(self._arrivals), future))
        return future

    def serve(self) -> bool:
        """Wake the first waiter still waiting; False if there is none."""
        if not self:
            return False
        _, _, future = heapq.heappop(self._heap)
        future.set_result(None)
        return True


class _ReservedSlots:
    """At most `size` holders, the last `reserved` of them for urgent callers only.

    The reserve matters during bulk writes: every bulk write holds its slot while it waits
    for its turn, so without a reserve an urgent read (fetch, list roles) would wait for a bulk
    write's turn just to get a slot.
    """

    def __init__(self, size: int, *, reserved: int) -> None:
        self._free = size
        self._reserved = reserved
        self._line = _Line()
        self.busy = 0
        self.peak = 0

    def _admits(self, *, urgent: bool) -> bool:
        return self._free > (0 if urgent else self._reserved)

    async def acquire(self, *, urgent: bool) -> None:
        first = self._line.first_is_urgent()
        ahead = first is not None and (first or not urgent)
        if not ahead and self._admits(urgent=urgent):
            self._free -= 1
        else:
            granted = self._line.join(urgent=urgent)
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._leave_slot()  # handed to us as we were cancelled: pass it on
                raise
        self.busy += 1
        self.peak = max(self.peak, self.busy)

    def leave(self) -> None:
        self.busy -= 1
        self._leave_slot()

    def _leave_slot(self) -> None:
        self._free += 1
        while (first := self._line.first_is_urgent()) is not None and self._admits(urgent=first):
            self._free -= 1
            self._line.serve()


class _Turns:
    """One write every `interval` seconds, never bursting; the first in line gets the turn."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next_at = float("-inf")
        self._line = _Line()
        self._timer: asyncio.TimerHandle | None = None

    async def take(self, *, urgent: bool) -> float:
        """Wait for a turn; returns the seconds waited."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not self._line and started >= self._next_at:
            self._next_at = started + self._interval
            return 0.0
        turn = self._line.join(urgent=urgent)
        self._arm(loop)
        await turn
        return loop.time() - started

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None:
            self._timer = loop.call_at(max(self._next_at, loop.time()), self._grant, loop)

    def _grant(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if self._line.serve():
            self._next_at = loop.time() + self._interval
            if self._line:
                self._arm(loop)


class PriorityLimiter(WriteLimiter):
    """A `WriteLimiter` whose slots and write turns go to urgent callers first."""

    def __init__(self, writes_per_second: float, *, max_in_flight: int) -> None:
        super().__init__(writes_per_second, max_in_flight=max_in_flight)
        self._priority_slots = _ReservedSlots(max_in_flight, reserved=max_in_flight // 4)
        self._turns = _Turns(1 / writes_per_second)

    @property
    def in_flight(self) -> int:
        return self._priority_slots.busy

    @property
    def peak_in_flight(self) -> int:
        return self._priority_slots.peak

    @asynccontextmanager
    async def slot(self, *, write: bool) -> AsyncIterator[None]:
        is_urgent = URGENT.get()
        await self._priority_slots.acquire(urgent=is_urgent)
        try:
            if write:
                self.write_wait_seconds += await self._turns.take(urgent=is_urgent)
                self.writes += 1
            yield
        finally:
            self._priority_slots.leave()
