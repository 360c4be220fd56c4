"""Accounting of calls: what the client sent, what came back, how often it retried.

Every HTTP attempt becomes one `CallEvent`, counted in `CallStats` and handed to an optional
observer, so the app can feed Prometheus (or a log) without this package knowing about either.
An observer must be quick and must not raise: it runs inline on every attempt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One HTTP attempt of an operation (`create_user`, `list_users`, ...)."""

    operation: str
    status: int | None
    """The HTTP status, or None when no answer came (see `error`)."""
    seconds: float
    """From sending to the end of the body; waits in the limiter are not included."""
    attempt: int
    """0 for the first attempt of a call, 1 for its first retry, ..."""
    error: str | None = None
    """The exception class name when the attempt failed (`ConnectError`, `NotFound`, ...)."""


Observer = Callable[[CallEvent], None]


class CallStats:
    """Counters since the client was made; read them, never write them from outside."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, int | None]] = Counter()
        """Attempts per (operation, status); status None for transport failures."""
        self.retries = 0
        self.rate_limited = 0
        """Answers with status 429."""

    @property
    def total(self) -> int:
        """HTTP attempts made, retries included."""
        return sum(self.calls.values())

    def attempts(self, operation: str) -> int:
        """Attempts of `operation` whatever their status; `calls[(op, status)]` for one status."""
        return sum(n for (op, _), n in self.calls.items() if op == operation)

    def record(self, event: CallEvent) -> None:
        self.calls[(event.operation, event.status)] += 1
        if event.attempt > 0:
            self.retries += 1
        if event.status == 429:
            self.rate_limited += 1

    def __repr__(self) -> str:
        return (
            f"CallStats(total={self.total}, retries={self.retries}, "
            f"rate_limited={self.rate_limited})"
        )
