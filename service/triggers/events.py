"""The event consumer: queued user events become reconciles of those users, at least once.

Only the leader consumes. It wakes on NOTIFY (see `leader.py`) and, in case a notification was
missed, every `event_poll_interval` seconds; on start it releases claims a dead leader left and
polls, so events written while no replica ran are handled at once. Each round claims up to
`event_batch_size` pending events (`FOR UPDATE SKIP LOCKED`), coalesces them into one
USERS-scope run of the distinct users they name, and completes them only once the run returned,
that is once every user's outcome is recorded. Runs made here are `urgent()`: their API calls
go ahead of bulk work in the write limiter.

If the run could not start (another process holds the lock) the events are released untried,
and so are the events of users the run left to another run (`RunReport.deferred`: another run
was applying them, or changed them after this one planned), so they are looked at again;
if it failed (the runner recorded and logged why, and the metrics count it) or crashed, the
attempt counts and the events are tried again when their lease expires, until
`event_max_attempts`, after which they are closed with the error (scheduled runs still cover
those users). A database failure ends the consumer with the exception: the leader steps
down and starts again from a fresh session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.conversations.ratelimit import urgent
from service.db import events
from service.db.events import ClaimedEvent
from service.domain.runs import Scope
from service.metrics import Metrics
from service.reconcile.run import RunFailed, RunInProgress, RunReport, RunRequest
from service.reconcile.runner import Runner

log = structlog.get_logger(__name__)

BUSY_RETRY_SECONDS = 0.5
DEFERRED_RETRY = timedelta(seconds=1)
"""How long the events of a user another run holds wait before they are claimed again (the
consumer goes on with other events meanwhile)."""
DUE_MARGIN = 0.05
"""Seconds after a deferred event is due before the consumer looks: the database's clock
started counting when the deferral was written, a moment before the timer."""


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """The consumer's settings (`USERSYNC_EVENT_*`), as the composition root read them."""

    batch_size: int
    """Events claimed, and coalesced into one run, at most at once."""
    poll_interval: float
    """Seconds between looks at the queue when no NOTIFY came."""
    lease: timedelta
    """How long a claim holds before another consumer may take the events again."""
    max_attempts: int
    """Failed attempts after which an event is closed with its error."""


class EventConsumer:
    def __init__(
        self,
        runner: Runner,
        *,
        sessions: async_sessionmaker[AsyncSession],
        config: ConsumerConfig,
        metrics: Metrics,
        owner: str,
    ) -> None:
        self._runner = runner
        self._sessions = sessions
        self._metrics = metrics
        self._owner = owner
        self._batch = config.batch_size
        self._poll = config.poll_interval
        self._lease = config.lease
        self._max_attempts = config.max_attempts
        self._wake = asyncio.Event()
        self._accepting = True

    def wake(self) -> None:
        """Something was queued (a NOTIFY arrived): look now."""
        self._wake.set()

    def stop_intake(self) -> None:
        """Claim nothing more; the batch in progress (if any) finishes, `run()` then returns."""
        self._accepting = False
        self._wake.set()

    async def run(self) -> None:
        async with self._sessions.begin() as session:
            released = await events.release_claims(session)
        if released:
            log.info("released events claimed by a previous leader", count=released)
        while self._accepting:
            self._wake.clear()
            batch = await self._claim()
            if batch:
                await self._process(batch)
            elif self._accepting:
                await self._idle()

    async def _idle(self) -> None:
        try:
            async with asyncio.timeout(self._poll):
                await self._wake.wait()
        except TimeoutError:
            pass  # the periodic poll: a missed NOTIFY costs at most one interval

    async def _claim(self) -> list[ClaimedEvent]:
        async with self._sessions.begin() as session:
            return await events.claim(
                session, owner=self._owner, limit=self._batch, lease=self._lease
            )

    async def _process(self, batch: Sequence[ClaimedEvent]) -> None:
        ids = [e.id for e in batch]
        targets = tuple(dict.fromkeys(e.user_id for e in batch))
        request = RunRequest(trigger="event", scope=Scope.USERS, targets=targets)
        recorded: list[int] = []
        try:
            with urgent():
                report = await self._runner.run(request, on_open=recorded.append)
        except RunInProgress:
            await self._release(ids)
            return
        except RunFailed as e:  # recorded (counted by status) and logged: its line says why
            await self._failed(ids, str(e))
        except Exception as e:  # not a run's failure: recording it (or its lock) failed
            log.exception("event run crashed", events=len(ids), users=len(targets))
            if not recorded:
                self._metrics.observe_unrecorded_run(trigger="event", scope=Scope.USERS.value)
            await self._failed(ids, f"{type(e).__name__}: {e}")
        else:
            retry = [ev.id for ev in batch if ev.user_id in report.deferred_keys]
            done = [ev.id for ev in batch if ev.user_id not in report.deferred_keys]
            await self._completed(done, report)
            if retry:
                await self._defer(retry)

    async def _completed(self, ids: list[int], report: RunReport) -> None:
        async with self._sessions.begin() as session:
            latencies = await events.complete(session, ids, run_id=report.run_id)
        self._metrics.observe_events(latencies)
        log.info(
            "events applied",
            run_id=report.run_id,
            events=len(ids),
            users=len(report.request.targets),
            status=report.status.value,
            slowest_ms=round(max(latencies, default=0.0) * 1000),
        )

    async def _release(self, ids: list[int]) -> None:
        async with self._sessions.begin() as session:
            await events.release(session, ids)
        self._metrics.runs_refused.labels("event").inc()
        await asyncio.sleep(BUSY_RETRY_SECONDS)

    async def _defer(self, ids: list[int]) -> None:
        async with self._sessions.begin() as session:
            await events.defer(session, ids, lease=self._lease, delay=DEFERRED_RETRY)
        # no NOTIFY comes for them: look again once they are due, not at the next poll
        due = DEFERRED_RETRY.total_seconds() + DUE_MARGIN
        asyncio.get_running_loop().call_later(due, self._wake.set)
        log.info("events of users another run holds: tried again shortly", events=len(ids))

    async def _failed(self, ids: list[int], error: str) -> None:
        async with self._sessions.begin() as session:
            closed = await events.fail(session, ids, error=error, max_attempts=self._max_attempts)
        if closed:
            self._metrics.events_done.labels("given_up").inc(closed)
            log.error("events given up after repeated failures", count=closed, error=error)
