"""How the write pacer's rate follows the Service (`Adaptive`), and what it measures to do so.

The design is told in `service.conversations.ratelimit`; this module holds its numbers: the
curve a cut starts (cut, climb, hold at the plateau, probe), the spread of write round trips
the arrival margin is read off, and the writes that got through in the last second.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

ARRIVAL_MARGIN = 0.01
"""Seconds added to a one-second window at least: Twilio counts arrivals, which jitter with the
network, so at r = 30 writes paced exactly 1/30 s apart would sometimes arrive 31 in a second.
How much more is measured (`Spread`)."""

SPREAD_SAMPLES = 64
"""Write round trips the arrival margin is measured over (about two seconds of writes)."""

SPREAD_MIN_SAMPLES = 16
"""Round trips needed before their spread is trusted; until then the margin is the minimum."""

SPREAD_EVERY = 8
"""Round trips between two measures of their spread once there are `SPREAD_SAMPLES` (an eighth
of them is new each time)."""

SPREAD_Z = 3.3
"""Standard deviations of the arrival gap between two writes the margin covers: the 31st of 31
consecutive writes arrives inside the 1st's second for at most about 0.05 % of writes."""

SPARE_Z = 2.0
"""The same at or under the plateau after a cut, where every window keeps a spare write for the
other clients: our K+1 consecutive writes arriving in one second (2 % of them) then take the
spare, which costs a 429 only if one of the others' writes jitters into that same instant."""

WINDOW = 1.0
"""Seconds: Twilio counts writes over any one-second window."""

PLATEAU_PAIR = 15.0
"""Seconds within which two 429s at the plateau say its spare write is not there: one there is
the rare crowding of ours and the others' arrivals at one instant (one in a minute or two at
19 writes/s beside 10), a write too many gives one every few seconds."""

SHARE_SAMPLE = 10
"""Answers since the last cut before their share of 429s sizes the next cut, and answers in the
last second before their count bounds it (fewer: the pacer was not using the Service's budget,
and a 429 then says the others took it, not how much they left)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Adaptive:
    """How the write rate follows what the Service has left: cut, climb, hold, probe."""

    floor: float
    """Writes per second the pacer never goes below, however many 429s it meets."""
    decrease: float = 0.7
    """The climb after a cut starts at most at this share of the rate that got through: deep,
    so that our writes of the second before the cut, still in the Service's window, leave
    it sooner."""
    recovery: float = 3.0
    """Seconds after a cut at which the rate is back at the plateau: the old rate's writes
    have left the Service's window a second after the cut, so the climb need not be long."""
    hold: float = 60.0
    """Seconds the rate then stays at the plateau before it probes above it: a probe has to
    take the others' spare write to learn whether they are still there, which costs them a
    429 or two, so it comes rarely."""
    probe: float = 3.0
    """Seconds a probe takes to climb as far above the plateau as the climb started under it:
    short, as the probe's first writes over the plateau cost the others their 429s and only
    the ones after tell the pacer (its own 429)."""
    margin: float = 0.03
    """How far under the plateau the climb starts at least, as a share of the ceiling (the
    cubic's depth: with none, there is no curve to climb or probe along)."""
    spare: float = 1.0
    """Writes of each one-second window the plateau leaves to the other clients, beyond what
    they took when the 429 came: their writes jitter too, and one of theirs arriving a little
    early would otherwise find the window full."""

    def __post_init__(self) -> None:
        if not 0 < self.floor < math.inf:
            raise ValueError(f"floor must be a positive number, not {self.floor}")
        if not 0 < self.decrease < 1:
            raise ValueError(f"decrease must be in (0, 1), not {self.decrease}")
        if not 0 < self.margin < 1:
            raise ValueError(f"margin must be in (0, 1), not {self.margin}")
        if not 0 <= self.spare < math.inf:
            raise ValueError(f"spare must be a number of writes >= 0, not {self.spare}")
        for name in ("recovery", "probe"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a positive number, not {getattr(self, name)}")
        if not 0 <= self.hold < math.inf:
            raise ValueError(f"hold must be a number of seconds >= 0, not {self.hold}")

    def plateau(self, *, cut_from: float) -> float:
        """Where the rate holds after a cut from `cut_from` writes/s (what got through, so
        what the others left): the whole writes of that less a `spare` write. The schedule
        lets K = ceil(rate) writes into a second, so at this rate K is what the others left
        less the spare, and the window rule spreads them over a second and the margin."""
        return float(math.floor(cut_from - self.spare))

    def rate(self, *, since_cut: float, cut_from: float, ceiling: float) -> float:
        """The rate `since_cut` seconds after a cut from `cut_from` writes/s: up to the
        plateau along CUBIC's concave curve in `recovery` s, flat there for `hold` s, then up
        along its convex mirror, `probe` s to the depth, ever faster up to the ceiling."""
        plateau = self.plateau(cut_from=cut_from)
        depth = plateau - min(cut_from * self.decrease, plateau - self.margin * ceiling)
        if since_cut < self.recovery:
            rate = plateau - depth * (1 - since_cut / self.recovery) ** 3
        else:
            probing = max(0.0, since_cut - self.recovery - self.hold)
            rate = plateau + depth * (probing / self.probe) ** 3
        return min(ceiling, max(self.floor, rate))


class Spread:
    """The spread of recent write round trips, and the arrival margin it asks for."""

    def __init__(self) -> None:
        self._seconds: deque[float] = deque(maxlen=SPREAD_SAMPLES)
        self._added = 0
        self._gap = 0.0
        """The standard deviation of the gap between two arrivals, as last measured: on each
        round trip until there are `SPREAD_SAMPLES`, then every `SPREAD_EVERY`, as its
        quartiles cost more than the rest of an answer's bookkeeping and it moves slowly."""

    def add(self, seconds: float) -> None:
        self._seconds.append(seconds)
        self._added += 1
        filling = len(self._seconds) < SPREAD_SAMPLES  # every new one counts: measure each
        if len(self._seconds) >= SPREAD_MIN_SAMPLES and (
            filling or self._added % SPREAD_EVERY == 0
        ):
            self._gap = self._measure()

    def margin(self, *, z: float) -> float:
        """`z` standard deviations of the gap between two arrivals, never under the minimum."""
        return max(ARRIVAL_MARGIN, z * self._gap)

    def _measure(self) -> float:
        """The difference of two arrivals' delays varies sqrt 2 times as much as one's; the
        deviation is read off the interquartile range, so that the odd slow answer (a retry,
        a pause) does not widen it."""
        first, _, third = statistics.quantiles(self._seconds, n=4)
        return math.sqrt(2) * (third - first) / IQR_PER_DEVIATION


IQR_PER_DEVIATION = 1.349
"""The interquartile range of a normal law, in standard deviations."""


class Through:
    """When the writes answered in the last second were answered (all but 429s)."""

    def __init__(self) -> None:
        self._at: deque[float] = deque()

    def add(self, now: float) -> None:
        self._at.append(now)
        self._forget(now)

    def count(self, now: float) -> int:
        self._forget(now)
        return len(self._at)

    def _forget(self, now: float) -> None:
        while self._at and self._at[0] <= now - WINDOW:
            self._at.popleft()


@dataclass(slots=True)
class Answers:
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
