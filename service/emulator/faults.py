"""Injected failures: what the next matching calls should suffer instead of a normal answer.

Kinds: `status` (an error status with Twilio's body, e.g. 500/503), `rate_limit` (429/20429,
with or without `Retry-After`) and `drop` (the connection is closed without any response). A
rule fires for its next `count` matching calls, or for a `fraction` of them, or both (a fraction
of calls, until `count` have fired), or for every matching call until cleared. Ordinarily a
faulted call is not processed at all, as Twilio's 429s and 5xx promise; a rule made with
`after_processing=True` lets the call change state first and then fails it, which is how a
client's handling of an ambiguous write (the retry meets 409 "already exists") is tested.
Latency is separate: seconds added before every matching call, drawn from a normal
distribution around the set seconds when a `jitter` (its standard deviation) is set, never
below zero, as real networks jitter and Twilio counts its write limit at arrival.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum

from service.emulator.operations import Operation, operations_named


class FaultKind(StrEnum):
    STATUS = "status"
    RATE_LIMIT = "rate_limit"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one call."""

    kind: FaultKind
    status: int
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class Latency:
    """Seconds added to a call: a mean and a standard deviation (0: always the mean)."""

    seconds: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        for name, value in (("latency", self.seconds), ("jitter", self.jitter)):
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value}")


@dataclass(slots=True)
class FaultRule:
    fault: Fault
    remaining: int | None
    fraction: float | None
    operations: frozenset[Operation] | None
    after_processing: bool

    def matches(self, operation: Operation, *, after_processing: bool) -> bool:
        return self.after_processing is after_processing and (
            self.operations is None or operation in self.operations
        )


def fault_rule(
    kind: str,
    *,
    count: int | None = None,
    fraction: float | None = None,
    status: int = 500,
    retry_after: float | None = None,
    operations: Collection[str] | None = None,
    after_processing: bool = False,
) -> FaultRule:
    """Checks the arguments of `Emulator.inject_fault` and builds the rule."""
    fault_kind = FaultKind(kind)
    if count is not None and count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], not {fraction}")
    if fault_kind is FaultKind.STATUS and not 400 <= status <= 599:
        raise ValueError(f"status must be an HTTP error status, not {status}")
    if retry_after is not None and not 0 <= retry_after < math.inf:
        raise ValueError(f"retry_after must be a finite number of seconds >= 0, not {retry_after}")
    if fault_kind is FaultKind.RATE_LIMIT and after_processing:
        raise ValueError("a 429 means 'not processed': rate_limit cannot be after_processing")
    status = 429 if fault_kind is FaultKind.RATE_LIMIT else status
    fault = Fault(fault_kind, status, retry_after)
    return FaultRule(fault, count, fraction, operations_named(operations), after_processing)


class FaultPlan:
    """The injected latency and fault rules in force; rules are tried in the order added."""

    def __init__(
        self, *, chance: Callable[[], float], spread: Callable[[float, float], float]
    ) -> None:
        """`chance()` is uniform in [0, 1); `spread(mu, sigma)` draws from a normal law."""
        self._chance = chance
        self._spread = spread
        self._rules: list[FaultRule] = []
        self._latency = Latency()
        self._latency_by_operation: dict[Operation, Latency] = {}

    def set_latency(
        self, seconds: float, *, jitter: float = 0.0, operations: Collection[str] | None = None
    ) -> None:
        """Seconds added to every matching call (`jitter`: their standard deviation);
        operations=None sets it for all of them."""
        latency = Latency(seconds, jitter)
        named = operations_named(operations)
        if named is None:
            self._latency = latency
            self._latency_by_operation.clear()
        else:
            self._latency_by_operation.update(dict.fromkeys(named, latency))

    def latency(self, operation: Operation) -> float:
        """This call's delay: the set seconds, or a draw around them if they jitter."""
        latency = self._latency_by_operation.get(operation, self._latency)
        if not latency.jitter:
            return latency.seconds
        return max(0.0, self._spread(latency.seconds, latency.jitter))

    def add(self, rule: FaultRule) -> None:
        self._rules.append(rule)

    def clear(self) -> None:
        self._rules.clear()
        self._latency = Latency()
        self._latency_by_operation.clear()

    def take(self, operation: Operation, *, after_processing: bool) -> Fault | None:
        """The fault this call suffers, if any, using up one of its rule's count."""
        for rule in self._rules:
            if not rule.matches(operation, after_processing=after_processing):
                continue
            if rule.fraction is not None and self._chance() >= rule.fraction:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rules.remove(rule)
            return rule.fault
        return None
