"""When to try a failing user again, and when to call it quarantined.

Pure arithmetic on the attempt count: the caller owns the clock (adds the delay to "now") and
any jitter. A quarantined user is still retried, at the capped interval, and shown in status.
"""

from __future__ import annotations

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
