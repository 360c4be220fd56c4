"""Pacing of calls to one Service: one write schedule, events first, adapting to what is left.

Twilio allows 30 user creates, updates and deletes per second per Service, counted over any
one-second window and shared with every other client of the Service (the customer's own app;
Conversation and Role writes count too); going over costs a 429 and a retry. `WriteLimiter` is
the one pacer of the CLI and of `serve`:

- **One schedule.** Write turns are granted on a fixed grid, one every 1/r s, counted from the
  grid and not from each grant, so a turn granted late (a timer fires after its time, the event
  loop stalls) does not push every later turn back and the rate holds under stalls. Catching up
  must not crowd writes together, so with K = ceil(r) any K+1 consecutive turns span at least
  K/r s and at least 1 s + a margin: at most K writes fall in any one-second window. The
  margin follows the network: arrivals jitter as round trips do, so it covers `SPREAD_Z`
  standard deviations of the gap between two writes' arrivals, estimated from the spread of
  recent write round trips (a round trip varies at least as much as its way in), and is
  never under `ARRIVAL_MARGIN`. Alone on the Service the schedule thus settles at
  K / (1 + margin), as close to the limit as the jitter allows, and meets almost no 429s.
- **Events first.** Callers inside `urgent()` (event runs) take the next free slot and the next
  turn ahead of bulk callers; `reserved` in-flight slots are kept for them, so an urgent read
  never waits behind bulk writes that hold slots while they wait for turns. Bulk is delayed by
  the few urgent calls, never starved.
- **Adaptive** (`Adaptive`): r starts at the ceiling. When a write is answered 429 (20429,
  50063, 50074: all say "too many writes"), r is cut to what got through since the last cut
  (the rate less the share of writes refused), times `decrease`, at most once per window (a
  write granted within a second of the last cut still meets the old rate's writes in the
  Service's window), never below `floor`. It then climbs back as TCP CUBIC does: quickly at
  first, flat just under the rate it was cut from (reached after `recovery` seconds: the last
  429 says the limit is there; under by the arrival margin's share, so that our jittering
  arrivals leave the other clients' writes room), then probing above it ever faster, up to
  the ceiling.
  Additive increase (AIMD) spends most of its time well under the limit; the cubic spends it
  just under. So when another client shares the Service's 30/s, or arrivals jitter with the
  network, the pacer settles just under what is left instead of taking 429s from it (and
  giving it 429s) at a fixed rate.

Reads are not rate-limited; reads and writes together are bounded by `max_in_flight`. A write
takes its in-flight slot *before* waiting for its turn, so turns are used at once and can never
pile up into a burst behind busy slots.

One `WriteLimiter` per Service, shared by every client and task that writes to it, on one
event loop (its times are that loop's clock). Urgency travels in a context variable, so it
follows a reconcile into every task it spawns without the reconcile knowing about it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import statistics
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

ARRIVAL_MARGIN = 0.01
"""Seconds added to a one-second window at least: Twilio counts arrivals, which jitter with the
network, so at r = 30 writes paced exactly 1/30 s apart would sometimes arrive 31 in a second.
How much more is measured (`_Spread`)."""

SPREAD_SAMPLES = 64
"""Write round trips the arrival margin is measured over (about two seconds of writes)."""

SPREAD_MIN_SAMPLES = 16
"""Round trips needed before their spread is trusted; until then the margin is the minimum."""

SPREAD_Z = 3.3
"""Standard deviations of the arrival gap between two writes the margin covers: the 31st of 31
consecutive writes arrives inside the 1st's second for at most about 0.05 % of writes."""

WINDOW = 1.0
"""Seconds: Twilio counts writes over any one-second window."""

SHARE_SAMPLE = 10
"""Answers since the last cut before their share of 429s sizes the next cut."""

TOO_MANY_WRITES = 429
"""The status of every "too many writes" answer (Twilio codes 20429, 50063 and 50074)."""

URGENT: ContextVar[bool] = ContextVar("usersync_urgent", default=False)


@contextmanager
def urgent() -> Iterator[None]:
    """Calls made in this block (and tasks it starts) go ahead of bulk work."""
    token = URGENT.set(True)
    try:
        yield
    finally:
        URGENT.reset(token)


@dataclass(frozen=True, slots=True, kw_only=True)
class Adaptive:
    """How the write rate follows what the Service has left (AIMD)."""

    floor: float
    """Writes per second the pacer never goes below, however many 429s it meets."""
    decrease: float = 0.95
    """The rate is multiplied by this on a 429 (at most once per round of writes)."""
    recovery: float = 10.0
    """Seconds after a cut at which the rate is back just under the rate it was cut from."""
    margin: float = 0.03
    """How far under the rate a 429 was met at the rate settles, as a share of the ceiling:
    arrivals jitter by the same milliseconds at any rate, so the margin is one rate, not a
    share of the rate left (at 30/s, 0.9 writes/s, 1 s spans 31 ms more than 30 writes)."""

    def __post_init__(self) -> None:
        if not 0 < self.floor < math.inf:
            raise ValueError(f"floor must be a positive number, not {self.floor}")
        if not 0 < self.decrease < 1:
            raise ValueError(f"decrease must be in (0, 1), not {self.decrease}")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1), not {self.margin}")
        if not 0 < self.recovery < math.inf:
            raise ValueError(f"recovery must be a positive number, not {self.recovery}")

    def rate(
        self, *, since_cut: float, cut_from: float, ceiling: float, arrival_margin: float = 0.0
    ) -> float:
        """The rate `since_cut` seconds after a cut from `cut_from` writes/s: CUBIC's curve,
        flat under `cut_from` (the rate a 429 said is too much) by `margin` of the ceiling, or
        by the arrival margin if more: writes spread over 1 s + that margin to stay clear of
        the other clients' writes as ours jitter, so they take no more than cut_from /
        (1 + margin) of the second."""
        plateau = min(cut_from - self.margin * ceiling, cut_from / (1 + arrival_margin))
        start = min(cut_from * self.decrease, plateau - self.margin * ceiling)
        growth = (plateau - start) / self.recovery**3
        rate = plateau + growth * (since_cut - self.recovery) ** 3
        return min(ceiling, max(self.floor, rate))


@dataclass(frozen=True, slots=True)
class Grant:
    """One call's permission to go: whether it is a write, and when its turn was granted."""

    write: bool
    at: float


class WriteLimiter:
    """At most `rate` writes per second (up to `ceiling`), `max_in_flight` requests at once."""

    def __init__(
        self,
        ceiling: float,
        *,
        max_in_flight: int,
        reserved: int = 0,
        adaptive: Adaptive | None = None,
    ) -> None:
        if not 0 < ceiling < math.inf:
            raise ValueError(f"the write rate must be a positive number, not {ceiling}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        if not 0 <= reserved < max_in_flight:
            raise ValueError(f"reserved must be in [0, {max_in_flight}), not {reserved}")
        if adaptive is not None and adaptive.floor > ceiling:
            raise ValueError(f"the floor {adaptive.floor:g} is over the ceiling {ceiling:g}")
        self.ceiling = ceiling
        self.max_in_flight = max_in_flight
        self._adaptive = adaptive
        self._slots = _Slots(max_in_flight, reserved=reserved)
        self._turns = _Turns(ceiling)
        self._last_cut = -math.inf
        self._cut_from = ceiling
        self._since_cut = _Answers()
        self._spread = _Spread()
        self.write_wait_seconds = 0.0
        """Cumulative seconds writes spent waiting for their turn (not for a slot)."""
        self.writes = 0
        self.cuts = 0
        """Times the rate was cut after a 429."""

    @property
    def rate(self) -> float:
        """The writes per second the schedule paces at now."""
        return self._turns.rate

    @property
    def arrival_margin(self) -> float:
        """Seconds beyond one second that K+1 consecutive writes span at least, now."""
        return self._turns.margin

    @property
    def in_flight(self) -> int:
        return self._slots.busy

    @property
    def peak_in_flight(self) -> int:
        """The most requests ever in flight at once."""
        return self._slots.peak

    @asynccontextmanager
    async def slot(self, *, write: bool) -> AsyncIterator[Grant]:
        """Hold one in-flight slot for the body; for a write, also wait for its turn first."""
        is_urgent = URGENT.get()
        await self._slots.acquire(urgent=is_urgent)
        try:
            if write:
                self._follow(asyncio.get_running_loop().time())
                waited = await self._turns.take(urgent=is_urgent)  # then add: others add too
                self.write_wait_seconds += waited
                self.writes += 1
            yield Grant(write, asyncio.get_running_loop().time())
        finally:
            self._slots.leave()

    def answered(self, grant: Grant, *, status: int) -> None:
        """What the Service answered a call: a write's 429 cuts the rate, once per window
        (writes granted within a second of the last cut still meet the old rate's writes in
        the Service's one-second window: their 429s are the same congestion)."""
        if not grant.write or status >= 500:
            return
        if status != TOO_MANY_WRITES:
            self._spread.add(asyncio.get_running_loop().time() - grant.at)
            self._turns.margin = self._spread.margin()
        if self._adaptive is None:
            return
        if grant.at > self._last_cut:
            self._since_cut.count(refused=status == TOO_MANY_WRITES)
        if status == TOO_MANY_WRITES and grant.at > self._last_cut + WINDOW:
            self._cut(self._adaptive, now=asyncio.get_running_loop().time())

    def _cut(self, adaptive: Adaptive, *, now: float) -> None:
        """From the rate that got through since the last cut: the share of writes refused
        says how far over what is left the pacer was, so one cut gets near it at once."""
        self._follow(now)
        self._cut_from = self._turns.rate * (1 - self._since_cut.refused_share)
        self._last_cut = now
        self._since_cut = _Answers()
        self.cuts += 1
        self._follow(now)  # the curve's start

    def _follow(self, now: float) -> None:
        """The rate on its way back since the last cut."""
        if self._adaptive is not None and self.cuts:
            since = now - self._last_cut
            self._turns.rate = self._adaptive.rate(
                since_cut=since,
                cut_from=self._cut_from,
                ceiling=self.ceiling,
                arrival_margin=self._turns.margin,
            )

    def __repr__(self) -> str:
        return (
            f"WriteLimiter(rate={self.rate:g}, ceiling={self.ceiling:g}, "
            f"max_in_flight={self.max_in_flight}, in_flight={self.in_flight})"
        )


class _Spread:
    """The spread of recent write round trips, and the arrival margin it asks for."""

    def __init__(self) -> None:
        self._seconds: deque[float] = deque(maxlen=SPREAD_SAMPLES)

    def add(self, seconds: float) -> None:
        self._seconds.append(seconds)

    def margin(self) -> float:
        """`SPREAD_Z` standard deviations of the difference of two arrivals' delays (sqrt 2
        times one's), the deviation read off the interquartile range, so that the odd slow
        answer (a retry, a pause) does not widen it."""
        if len(self._seconds) < SPREAD_MIN_SAMPLES:
            return ARRIVAL_MARGIN
        first, _, third = statistics.quantiles(self._seconds, n=4)
        deviation = (third - first) / IQR_PER_DEVIATION
        return max(ARRIVAL_MARGIN, SPREAD_Z * math.sqrt(2) * deviation)


IQR_PER_DEVIATION = 1.349
"""The interquartile range of a normal law, in standard deviations."""


@dataclass(slots=True)
class _Answers:
    """Writes answered since the last cut, and how many of them were 429s."""

    answered: int = 0
    refused: int = 0

    def count(self, *, refused: bool) -> None:
        self.answered += 1
        self.refused += refused

    @property
    def refused_share(self) -> float:
        """The share of 429s, once there are enough answers to say (else 0: a plain cut); the
        first answers after a cut are too few, and one 429 of one would cut to the floor."""
        return self.refused / self.answered if self.answered >= SHARE_SAMPLE else 0.0


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


class _Slots:
    """At most `size` holders, the last `reserved` of them for urgent callers only."""

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
    """Write turns on a grid of 1/rate s, the first in line first; K+1 turns span the window.

    `_next_at` is the grid time of the next turn. A turn granted late is counted from its grid
    time, not from the grant, with at most one interval of credit (so a long stall is followed
    by at most two turns back to back, never a burst); the window rule holds when each write
    goes (checked again after the wait, as a stalled loop may run a granted write late).
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next_at = -math.inf
        self._line = _Line()
        self._timer: asyncio.TimerHandle | None = None
        self._recent: deque[float] = deque(maxlen=math.ceil(rate) + 1)
        self.margin = ARRIVAL_MARGIN
        """Seconds beyond one second that K+1 consecutive turns span at least."""

    async def take(self, *, urgent: bool) -> float:
        """Wait for a turn; returns the seconds waited."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not self._line and self._ready_in(started) <= 0:
            self._book(started, credit=0.0)  # nobody was waiting: no turn was missed
        else:
            turn = self._line.join(urgent=urgent)
            self._arm(loop)
            await turn
        # the window rule must hold when the write goes, which a stalled loop may delay
        # past its grant: look again after every wait, and record the turn as it is used
        while (wait := self._window_wait(loop.time())) > 0:  # noqa: ASYNC110 - a time, no event
            await asyncio.sleep(wait)
        self._recent.append(loop.time())
        return loop.time() - started

    def _ready_in(self, now: float) -> float:
        """Seconds until the next turn may be granted: its grid time and the window rule."""
        return max(self._next_at - now, self._window_wait(now))

    def _window_wait(self, now: float) -> float:
        """Seconds until one more write keeps the last K + 1 within the window."""
        k = math.ceil(self.rate)
        if len(self._recent) < k:
            return 0.0
        return self._recent[-k] + max(k / self.rate, WINDOW + self.margin) - now

    def _book(self, now: float, *, credit: float) -> None:
        """Grant a turn now; the next is one interval after this turn's grid time, which may
        lie up to `credit` seconds before now."""
        self._next_at = max(self._next_at, now - credit) + 1 / self.rate

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None:
            self._timer = loop.call_at(loop.time() + self._ready_in(loop.time()), self._grant, loop)

    def _grant(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        if self._ready_in(now) > 0:  # the rate was cut while the timer was set
            self._arm(loop)
        elif self._line.serve():
            self._book(now, credit=1 / self.rate)
            if self._line:
                self._arm(loop)
