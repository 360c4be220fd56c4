"""What only the leader does: the bulk lane, the schedule, the event consumer, housekeeping.

A fresh `Duties` is made each time a replica becomes leader and dropped when it steps down, so
nothing carries over from one term to the next. `run()` returns once every part has stopped
after `stop_intake()`; it raises if a part failed (the leader then steps down and starts
over); cancelling it cancels the runs in flight, which the runner records as aborted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db import events, status
from service.domain.runs import Scope
from service.metrics import Metrics
from service.reconcile.run import RunRequest
from service.reconcile.runner import Runner
from service.triggers.events import ConsumerConfig, EventConsumer
from service.triggers.lane import BulkLane
from service.triggers.scheduler import Cadence, Clock, Scheduler

log = structlog.get_logger(__name__)

HOUSEKEEPING_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class DutiesConfig:
    """The leader's settings, as the composition root read them."""

    consumer: ConsumerConfig
    cadence: Mapping[Scope, Cadence]
    """When each scope's scheduled run is due (`USERSYNC_FULL_SYNC_*`, `USERSYNC_INCREMENTAL_*`)."""
    schedule_enabled: bool
    event_retention: timedelta
    """How long done events are kept (`USERSYNC_EVENT_RETENTION_HOURS`)."""


class Duties:
    def __init__(
        self,
        runner: Runner,
        *,
        sessions: async_sessionmaker[AsyncSession],
        config: DutiesConfig,
        metrics: Metrics,
        clock: Clock,
        owner: str,
    ) -> None:
        self._sessions = sessions
        self._config = config
        self.lane = BulkLane(runner, metrics=metrics)
        self.consumer = EventConsumer(
            runner, sessions=sessions, config=config.consumer, metrics=metrics, owner=owner
        )
        self._scheduler = Scheduler(
            submit=self.lane.submit,
            cadence=dict(config.cadence),
            last_success=self._last_success,
            clock=clock,
        )
        self._idle_parts: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        self.consumer.wake()

    async def start_run(self, request: RunRequest) -> int:
        """Start an on-demand run on the bulk lane; its id once recorded (`BulkLane.start`)."""
        return await self.lane.start(request)

    def stop_intake(self) -> None:
        """Start nothing new; runs in progress go on until done (or cancelled)."""
        self.lane.stop_intake()
        self.consumer.stop_intake()
        for task in self._idle_parts:
            task.cancel()

    async def run(self) -> None:
        busy = [
            self._start(self.lane.run(), "bulk-lane"),
            self._start(self.consumer.run(), "events"),
        ]
        self._idle_parts = [self._start(self._housekeeping(), "housekeeping")]
        if self._config.schedule_enabled:
            self._idle_parts.append(self._start(self._scheduler.run(), "scheduler"))
        parts = busy + self._idle_parts
        try:
            await _until_all_stop(parts)
        finally:
            for task in parts:
                task.cancel()
            await asyncio.wait(parts)

    @staticmethod
    def _start(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return asyncio.create_task(work, name=name)

    async def _last_success(self, scope: Scope) -> datetime | None:
        async with self._sessions() as session:
            return await status.last_success(session, scope=scope)

    async def _housekeeping(self) -> None:
        retention = self._config.event_retention
        while True:
            async with self._sessions.begin() as session:
                pruned = await events.prune(session, older_than=retention)
            if pruned:
                log.info("pruned done events", count=pruned)
            await asyncio.sleep(HOUSEKEEPING_SECONDS)


async def _until_all_stop(parts: list[asyncio.Task[None]]) -> None:
    """Wait for every part; the first one to fail raises its exception here."""
    pending = set(parts)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error
