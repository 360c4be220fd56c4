"""The schedule: a full run on an interval or a cron expression, an incremental one more often.

Only the leader runs it. The first full run after taking over is due one cadence after the
last successful full run on record (at once if there is none, or if a cron slot was missed
while no replica led); the first incremental run is due at once. Due runs are handed to the
bulk lane (`submit`), which coalesces them, so a schedule faster than the runs never stacks
work. The clock and the sleep are injected: tests step through days without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from service.config import Settings
from service.domain.runs import Scope
from service.reconcile.run import RunRequest

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Cadence:
    """Every `interval` seconds or, when `cron` is set, at its times (UTC)."""

    interval: float
    cron: str | None = None

    def next_after(self, when: datetime) -> datetime:
        if self.cron is not None:
            return croniter(self.cron, when).get_next(datetime)
        return when + timedelta(seconds=self.interval)


def cadences(settings: Settings) -> dict[Scope, Cadence]:
    return {
        Scope.FULL: Cadence(settings.full_sync_interval, settings.full_sync_cron),
        Scope.INCREMENTAL: Cadence(settings.incremental_interval),
    }


def first_due(cadence: Cadence, *, last_success: datetime | None, now: datetime) -> datetime:
    """When the first run after taking over is due (now, if one is overdue)."""
    if last_success is None:
        return now
    return min(cadence.next_after(last_success), cadence.next_after(now))


class Scheduler:
    def __init__(
        self,
        *,
        submit: Callable[[RunRequest], None],
        cadence: dict[Scope, Cadence],
        last_success: Callable[[Scope], Awaitable[datetime | None]],
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._submit = submit
        self._cadence = cadence
        self._last_success = last_success
        self._clock = clock
        self._sleep = sleep

    async def run(self) -> None:
        due = await self._first_due()
        while True:
            now = self._clock()
            for scope, at in due.items():
                if at <= now:
                    self._submit(RunRequest(trigger="schedule", scope=scope))
                    due[scope] = self._cadence[scope].next_after(now)
            wait = (min(due.values()) - self._clock()).total_seconds()
            await self._sleep(max(0.0, wait))

    async def _first_due(self) -> dict[Scope, datetime]:
        now = self._clock()
        full = first_due(
            self._cadence[Scope.FULL], last_success=await self._last_success(Scope.FULL), now=now
        )
        return {Scope.FULL: full, Scope.INCREMENTAL: now}
