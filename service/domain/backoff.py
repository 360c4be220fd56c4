"""When to try a failing user again, and when to call it quarantined.

Pure arithmetic on the attempt count: the caller owns the clock (adds the delay to "now") and
any jitter. A quarantined user is still retried, at the capped interval, and shown in status.
"""

from __future__ import annotations

from dataclasses import dataclass

_MAX_EXPONENT = 62
"""2**62 times any sane base is past every cap; stops float overflow on absurd counts."""


def next_attempt_delay(attempts: int, *, base: float, cap: float) -> float:
    """Seconds to wait after the `attempts`-th consecutive failure: base, 2·base, 4·base… ≤ cap."""
    if attempts <= 0:
        return 0.0
    exponent = min(attempts - 1, _MAX_EXPONENT)
    return float(min(cap, base * 2.0**exponent))


def is_quarantined(attempts: int, *, quarantine_after: int) -> bool:
    """True once a user has failed `quarantine_after` times in a row (0 or less: never)."""
    return quarantine_after > 0 and attempts >= quarantine_after


@dataclass(frozen=True, slots=True)
class FailureBackoff:
    """A failing user's retry schedule (`USERSYNC_FAILURE_BACKOFF_*`, `USERSYNC_QUARANTINE_AFTER`):
    not the client's retries of one call (`conversations.retry.CallRetry`), but when a later
    run tries the user again."""

    base_seconds: float
    cap_seconds: float
    quarantine_after: int

    def delay(self, attempts: int) -> float:
        """Seconds until the user is due again after its `attempts`-th failure in a row."""
        return next_attempt_delay(attempts, base=self.base_seconds, cap=self.cap_seconds)

    def quarantined(self, attempts: int) -> bool:
        return is_quarantined(attempts, quarantine_after=self.quarantine_after)
