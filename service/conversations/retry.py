"""When to try a failed call again, and how long to wait first.

Only transient failures are retried (see `ConversationsError.transient`): connection errors,
timeouts, 5xx and 429. Waits follow "full jitter" exponential backoff (a uniform draw in
[0, min(max, base * 2**attempt)]), which spreads out clients that failed together. A 429's
`Retry-After` is the server telling us when it will accept the call, so the wait is at least
that, even above `backoff_max`, up to `RETRY_AFTER_CEILING` in case of a nonsensical header.
The sleep and the random source are constructor arguments so tests neither wait nor guess.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

Sleep = Callable[[float], Awaitable[None]]

RETRY_AFTER_CEILING = 300.0
"""Longest wait a Retry-After header can impose on one attempt, in seconds."""


@dataclass(frozen=True, slots=True)
class CallRetry:
    max_retries: int = 5
    """Further attempts after the first; 0 disables retries."""
    backoff_base: float = 0.25
    backoff_max: float = 20.0
    sleep: Sleep = field(default=asyncio.sleep, compare=False)
    jitter: Callable[[], float] = field(default=random.random, compare=False)
    """A draw in [0, 1): the fraction of the backoff cap to wait."""

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must not be negative, not {self.max_retries}")
        if not 0 < self.backoff_base <= self.backoff_max:
            raise ValueError("need 0 < backoff_base <= backoff_max")

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (0 is the first attempt)."""
        cap = min(self.backoff_max, self.backoff_base * 2.0**attempt)
        jittered = self.jitter() * cap
        if retry_after is None:
            return jittered
        return max(min(retry_after, RETRY_AFTER_CEILING), jittered)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delay-seconds or an HTTP date); None if unusable."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        return _seconds_until(value, now=now)
    return seconds if seconds >= 0 else None


def _seconds_until(http_date: str, *, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
