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
- **Adaptive** (`Adaptive`): r starts at the ceiling. A write answered 429 (20429, 50063,
  50074: all say "too many writes") alone is the jitter the margins allow for; two granted
  within a second of each other are congestion, and cut r, at most once per window (a write
  granted within a second of the last cut still meets the old rate's writes in the Service's
  window: its 429 is the same congestion). The cut is to what got through: the rate less the
  share of writes refused since the last cut, and no more than the writes answered in the
  last second (the Service's window was full when the 429'd write arrived: what of it was ours
  is what the others left), the least such count of the cut's window. From there r climbs as
  TCP CUBIC does, from `decrease` of it (deep, so that our writes of the old rate leave the
  Service's window sooner), quickly at first, to a **plateau** in `recovery` s: the whole
  writes that got through less a `spare` one. With K = ceil(r) writes in any second, the
  other clients keep every write they had when the 429 came and one more, as theirs jitter
  too (without it, one of theirs arriving early finds the window full: beside a client
  writing 10/s, a pacer at 20 per window gave it 3-5 % of 429s and met almost none itself).
  The spare write also takes the crowding of our own arrivals, so at or under the plateau the
  margin covers only `SPARE_Z` deviations: it takes ours crowding and theirs at the same
  instant for a 429. Two 429s there within `PLATEAU_PAIR` s say the spare is not there
  (the count took in a write the others had just lost): the plateau goes down a write. r
  holds there for `hold` s, then probes above it, ever faster (`probe` s to climb as far
  above as the climb started under), up to the ceiling. A probe must take the spare write
  (and a write per window more, to meet its own 429) to learn that the others have gone,
  which costs them a 429 or two: so it comes rarely, and quickly.
  Additive increase (AIMD) spends most of its time well under the limit; this spends it just
  under what is left. So when another client shares the Service's 30/s the pacer settles a
  write per second under what that client leaves, instead of taking 429s from it (and giving
  it 429s) at a fixed rate.

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
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from service.conversations.adaptive import (
    ARRIVAL_MARGIN,
    PLATEAU_PAIR,
    SHARE_SAMPLE,
    SPARE_Z,
    SPREAD_Z,
    WINDOW,
    Adaptive,
    Answers,
    Spread,
    Through,
)

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
        self._last_refused = -math.inf
        self._lowered = -math.inf
        self._cut_from = ceiling
        self._since_cut = Answers()
        self._through = Through()
        self._spread = Spread()
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
        """What the Service answered a call: a write's round trip feeds the arrival margin,
        and its 429 may cut the rate (`_refused`)."""
        if not grant.write or status >= 500:
            return
        now = asyncio.get_running_loop().time()
        refused = status == TOO_MANY_WRITES
        if not refused:
            self._spread.add(now - grant.at)
            self._turns.margin = self._spread.margin(z=self._z())
            self._through.add(now)
        if self._adaptive is None:
            return
        if grant.at > self._last_cut:
            self._since_cut.count(refused=refused)
        if refused:
            self._refused(grant, now=now)

    def _refused(self, grant: Grant, *, now: float) -> None:
        """A 429 granted within a second of the last cut is the same congestion (it met the
        old rate's writes in the Service's window), and may only say less was left. After
        that, two 429s granted within a second of each other cut the rate; at or under the
        plateau, two within `PLATEAU_PAIR` s say the spare write is not there (what got
        through counted a write the others had lost): the plateau goes down a write, at most
        once a second."""
        since = grant.at - self._last_refused
        self._last_refused = max(self._last_refused, grant.at)
        if grant.at <= self._last_cut + WINDOW:
            self._cut_from = min(self._cut_from, self._left(now))
        elif since <= WINDOW:
            self._cut(now)
            return
        elif self._at_plateau() and since <= PLATEAU_PAIR and grant.at > self._lowered + WINDOW:
            self._cut_from -= 1
            self._lowered = now
        self._follow(now)

    def _at_plateau(self) -> bool:
        """After a cut, not probing above the plateau (where a spare write is left)."""
        if self._adaptive is None or not self.cuts:
            return False
        return self._turns.rate <= self._adaptive.plateau(cut_from=self._cut_from)

    def _cut(self, now: float) -> None:
        """To what got through: the rate less the share of writes refused since the last cut,
        and no more than what the others left."""
        self._follow(now)
        got_through = self._turns.rate * (1 - self._since_cut.refused_share)
        self._cut_from = min(got_through, self._left(now))
        self._last_cut = now
        self._since_cut = Answers()
        self.cuts += 1
        self._follow(now)  # the curve's start

    def _left(self, now: float) -> float:
        """The writes answered in the last second: the Service's window was full when a 429'd
        write arrived, and what of it was ours is what the others left; if the pacer was busy
        enough for that count to say (else infinity: no bound)."""
        through = self._through.count(now)
        return through if through >= SHARE_SAMPLE else math.inf

    def _follow(self, now: float) -> None:
        """The rate on its way back since the last cut."""
        if self._adaptive is not None and self.cuts:
            since = now - self._last_cut
            self._turns.rate = self._adaptive.rate(
                since_cut=since,
                cut_from=self._cut_from,
                ceiling=self.ceiling,
            )
            self._turns.margin = self._spread.margin(z=self._z())

    def _z(self) -> float:
        """The standard deviations of the arrival gap the margin covers now: `SPARE_Z` at or
        under the plateau, where a spare write is left in every window, else `SPREAD_Z`."""
        return SPARE_Z if self._at_plateau() else SPREAD_Z

    def __repr__(self) -> str:
        return (
            f"WriteLimiter(rate={self.rate:g}, ceiling={self.ceiling:g}, "
            f"max_in_flight={self.max_in_flight}, in_flight={self.in_flight})"
        )


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
