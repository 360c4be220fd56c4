"""Counters of what clients did to the emulator, so tests can assert what a client sent.

Every call routed to an operation is counted under the operation's name, whatever its outcome
(faulted, refused by the write limit, 4xx, unauthenticated). Besides: `rate_limited` (429s from
the write limit), `too_many_requests` (every 429, injected ones included), `faults` (injected
faults that fired), `dropped` (connections closed without a response), `unauthorized` (401s),
and `webhook_enabled` / `webhook_disabled` (writes sent with `X-Twilio-Webhook-Enabled: true`
or `false`).
"""

from __future__ import annotations

from collections import Counter

from service.emulator.operations import Operation

EXTRA_COUNTERS = (
    "rate_limited",
    "too_many_requests",
    "faults",
    "dropped",
    "unauthorized",
    "webhook_enabled",
    "webhook_disabled",
)


class CallStats:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def record(self, name: str) -> None:
        self._counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        names = [op.value for op in Operation] + list(EXTRA_COUNTERS)
        return {name: self._counts[name] for name in names}

    def reset(self) -> None:
        self._counts.clear()
