"""One reconcile: lock, gather, plan, apply, record.

Triggers only say what to look at (`Scope`): every user, the users that changed, or named
users. Whatever the trigger, a reconcile re-reads both sides. Runs of the same kind exclude each
other (a Postgres advisory lock per Service); runs of named users may overlap bulk runs, and
they are safe together because nothing is written for a user without its lease
(`db.leases`): the plan must still match the source row and the state, and no other live run
may hold the user. A run found `running` whose process is gone is closed as aborted.

The source relation is checked first (`db.source.inspect`), before any API call. Then one pass
over the scope (`reconcile.passes`: its users, then its deletions, once the guard has seen all
of them and the deletions already made within the window; creates and updates pass the
write guard's gate, `reconcile.gate`, which applies none of a pass's writes until it knows it
may apply them all). Users that waited for an identity
another user of the run let go of are looked at again at the end of the run, in follow-up
passes (a few at most), so batching changes into one run ends where running them one at a time
would. The runner's parts (`reconcile.parts`) are wired by the composition root.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db import locks, source
from service.domain.policy import plan_context
from service.domain.runs import RunStatus, Scope
from service.domain.waits import cycle_breakers
from service.reconcile import failure
from service.reconcile.parts import RunnerConfig, RunnerParts
from service.reconcile.passes import Passes, RunState
from service.reconcile.progress import RunProgress
from service.reconcile.run import RunFailed, RunInProgress, RunReport, RunRequest
from service.reconcile.sides import Listing

log = structlog.get_logger(__name__)

FOLLOW_UPS = 8
"""At most this many passes over users that waited for an identity, after the run's other work,
while they make progress (a swap of two identities needs three: one lets go, the other takes
its new identity, then the first; a cycle of n renames about n + 1)."""
FOLLOW_UP_LIMIT = 10_000


def _lock_kind(scope: Scope) -> str:
    """Bulk runs exclude each other; runs of named users (events, operators) may overlap them,
    so a changed user is not kept waiting behind a long full run."""
    return "users" if scope is Scope.USERS else "run"


class Runner:
    def __init__(self, parts: RunnerParts, *, config: RunnerConfig) -> None:
        self._lock_engine = parts.lock_engine
        self._client = parts.client
        self._recorder = parts.recorder
        self._config = config
        self._passes = Passes(parts, config=config)

    async def run(
        self,
        request: RunRequest,
        *,
        on_open: Callable[[int], None] | None = None,
        progress: RunProgress | None = None,
        listing: Listing | None = None,
    ) -> RunReport:
        """Reconcile; `on_open` gets the run id as soon as the run is recorded (before work);
        `progress`, if given, is kept up to date as the run goes; `listing`, a full run's
        listing started before (`service.headstart`), is what the run plans from (its owner
        closes it if the run never gets to it)."""
        key = locks.lock_key(_lock_kind(request.scope), self._config.service_key)
        try:
            async with locks.holding(self._lock_engine, key) as connection:
                run_id = await self._open(request)
                watching = progress or RunProgress(watched=False)
                report = RunReport(run_id=run_id, request=request, progress=watching)
                if on_open is not None:
                    on_open(report.run_id)
                return await self._locked_run(connection, report, listing=listing)
        except locks.LockHeld:
            raise RunInProgress(
                f"a reconcile of {self._config.service_key} is already running"
            ) from None
        except Exception as e:
            if _being_cancelled():
                # Leaving the lock on a killed connection fails its rollback; that error must
                # not replace the cancel, or the caller's catch-all keeps a stepped-down
                # leader's duties running.
                raise asyncio.CancelledError from e
            raise

    async def _locked_run(
        self, connection: AsyncConnection, report: RunReport, *, listing: Listing | None
    ) -> RunReport:
        request = report.request
        structlog.contextvars.bind_contextvars(
            run_id=report.run_id, trigger=request.trigger, scope=request.scope.value
        )
        calls_before = self._client.stats.total if listing is None else listing.calls_before
        bug: Exception | None = None
        watch = await _LockWatch.on(connection, report.run_id)
        try:
            await locks.hold_alive(connection, report.run_id)  # here: a cancel closes the run
            await self._reconcile(connection, report, listing=listing)
        except asyncio.CancelledError as e:
            if not watch.stopped_us():
                report.end(RunStatus.ABORTED, error=_why_cancelled(e))
                raise
            lost = locks.LockLost(report.run_id)
            report.end(RunStatus.FAILED, error=str(lost))
            raise RunFailed(report) from lost
        except Exception as e:
            report.end(RunStatus.FAILED, error=failure.explain(e, api_url=self._client.base_url))
            bug = None if failure.expected(e) else e
            raise RunFailed(report) from e
        finally:
            watch.stop()
            report.close(api_calls=self._client.stats.total - calls_before)
            await asyncio.shield(self._recorder.close_run(report, bug=bug))
            structlog.contextvars.unbind_contextvars("run_id", "trigger", "scope")
        return report

    async def _open(self, request: RunRequest) -> int:
        """Record the run open. Nothing is awaited between its commit and `_locked_run`'s
        `try`, so a cancel from then on records the run `aborted` (a SIGTERM just after the
        run appeared left it `running` while the run's alive lock was being taken)."""
        return await self._recorder.open_run(
            request,
            service_key=self._config.service_key,
            retention=self._config.error_retention,
            window=self._config.deletion_window,
            plan_context=plan_context(self._config.policy),
        )

    async def _reconcile(
        self, connection: AsyncConnection, report: RunReport, *, listing: Listing | None
    ) -> None:
        checked = await source.inspect(connection, self._config.source_table)
        run = RunState(connection, report, checked, listing=listing)
        request, passes = report.request, self._passes
        pending = await passes.apply(run, request)
        orphans = await passes.orphans(run) if request.scope is Scope.FULL else []
        named = request.scope is Scope.USERS
        await passes.delete(run, pending, orphans, full=request.scope is Scope.FULL, named=named)
        before: dict[str, str] | None = None
        for _ in range(FOLLOW_UPS):
            if report.waiting == before and not run.let_go:
                break  # the same users wait for the same users: nothing will move this run
            if report.writes_held:
                break  # every later gate of the run is shut (all or nothing): it would hold again
            before = dict(report.waiting)
            holders, waiting = self._follow_up(report, also=frozenset(run.let_go))
            if waiting is None:
                break
            waits = report.look_again()
            run.let_go = cycle_breakers(waits)
            log.info("waiting users again", users=len(waits), let_go=len(run.let_go))
            for follow_up in (holders, waiting):
                if follow_up is not None:
                    report.follow_up(follow_up.targets, waiting=waits)
                    pending = await passes.apply(run, follow_up)
                    await passes.delete(run, pending, [], full=False, named=True)

    def _follow_up(
        self, report: RunReport, *, also: frozenset[str]
    ) -> tuple[RunRequest | None, RunRequest | None]:
        """What to look at again: first the users others wait for (a holder whose old user
        is gone lets go of its claim), then the waiting users (their identity may be free
        now) with those that let go of their old identity in the last pass."""
        waiting = dict(report.waiting)
        if report.request.dry_run or not (waiting or also) or len(waiting) > FOLLOW_UP_LIMIT:
            return None, None
        holders = tuple(h for h in dict.fromkeys(waiting.values()) if h not in waiting)
        targets = tuple(waiting) + tuple(sorted(also - waiting.keys()))
        first = replace(report.request, scope=Scope.USERS, targets=holders) if holders else None
        return first, replace(report.request, scope=Scope.USERS, targets=targets)


class _LockWatch:
    """Stops the run the moment its lock connection ends: the run then no longer holds the
    Service (a second run may take it at once), so it must make no further call. Its leases
    are refused too (`leases.take` requires the alive lock), should the end go unnoticed."""

    def __init__(self, driver: Any, task: asyncio.Task[Any] | None) -> None:
        self._driver, self._task, self._fired = driver, task, False

    @classmethod
    async def on(cls, connection: AsyncConnection, run_id: int) -> _LockWatch:
        raw = await connection.get_raw_connection()
        watch = cls(raw.driver_connection, asyncio.current_task())
        if watch._driver is not None:
            watch._driver.add_termination_listener(watch._ended)
        log.debug("watching the lock connection", run_id=run_id)
        return watch

    def _ended(self, _driver: Any) -> None:
        if self._task is not None and not self._task.done():
            self._fired = True
            self._task.cancel("the run's lock connection ended")

    def stopped_us(self) -> bool:
        """Whether the cancel being handled is this watch's own (then taken back: the run
        fails, it was not stopped by its caller)."""
        if not self._fired or self._task is None:
            return False
        self._task.uncancel()
        return self._task.cancelling() == 0

    def stop(self) -> None:
        if self._driver is not None:
            self._driver.remove_termination_listener(self._ended)


def _why_cancelled(cancel: asyncio.CancelledError) -> str:
    """The canceller's message (the CLI's names the signal: `stopped by SIGTERM`), if any."""
    return str(cancel) or "the run was cancelled"


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
