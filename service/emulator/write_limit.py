"""Twilio's per-Service write limit: user create, update and delete share N actions per second.

A sliding window, not a token bucket: at most N writes are admitted in any window of one second
(for a fractional N, at most max(1, floor(N)) in any window of that many Nths of a second). A
client pacing itself at N per second is never refused; the (N+1)-th write inside any one second
is. Refused writes are not counted, as Twilio does not process them. The clock is injected so
tests can drive it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable


class WriteLimiter:
    def __init__(
        self, per_second: float | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._admitted: dict[str, deque[float]] = {}
        self._capacity = 0
        self._window = 0.0
        self.per_second = per_second

    @property
    def per_second(self) -> float | None:
        return self._per_second

    @per_second.setter
    def per_second(self, value: float | None) -> None:
        if value is not None and not 0 < value < math.inf:
            raise ValueError(
                f"write limit must be a finite positive number or None (off), not {value}"
            )
        self._per_second = value
        if value is not None:
            self._capacity = max(1, math.floor(value))
            self._window = self._capacity / value
        self._admitted.clear()

    def try_acquire(self, service_sid: str) -> bool:
        """Admits one write to this Service now, or says it would exceed the limit."""
        if self._per_second is None:
            return True
        now = self._clock()
        admitted = self._admitted.setdefault(service_sid, deque())
        while admitted and now - admitted[0] >= self._window:
            admitted.popleft()
        if len(admitted) >= self._capacity:
            return False
        admitted.append(now)
        return True

    def reset(self) -> None:
        self._admitted.clear()
