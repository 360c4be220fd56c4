"""One reconcile: lock, gather, plan, apply, record.

Triggers only say what to look at (`Scope`): every user, the users that changed, or named
users. Whatever the trigger, a reconcile re-reads both sides. One run at a time per Service
(a Postgres advisory lock); a run found still `running` when the lock is taken was killed and
is closed as aborted. Deletions are applied last, after the guard has seen all of them.

The runner plans and sequences; `sides` reads both sides, `pool` applies plans concurrently
through the executor, `recorder` writes intents and outcomes as they come.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from service.conversations.client import ConversationsClient
from service.db import gather, locks, records
from service.db.gather import Gathered
from service.domain.plan import (
    Action,
    DeleteUser,
    InvalidUser,
    describe,
    guard_deletions,
    plan_case,
    plan_orphan,
)
from service.domain.policy import Policy
from service.reconcile.executor import Executor, case_of, unchanged
from service.reconcile.outcome import Failure, Outcome, Result, RetryPolicy
from service.reconcile.pool import ApplyPool
from service.reconcile.progress import Phase, RunProgress
from service.reconcile.recorder import Recorder
from service.reconcile.run import RunInProgress, RunReport, RunRequest, RunStatus, Scope
from service.reconcile.sides import Sides

log = structlog.get_logger(__name__)

PLAN_SLICE = 100
"""Users planned between yields to the event loop: planning a batch of 1,000 takes 15-30 ms of
CPU, long enough to bunch the writes the limiter spaced out (a 429 at Twilio's edge)."""


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    service_key: str
    source_table: str
    policy: Policy
    retry: RetryPolicy
    error_retention: timedelta


def _lock_kind(scope: Scope) -> str:
    """Bulk runs exclude each other; runs of named users (events, operators) may overlap them,
    so a changed user is not kept waiting behind a long full run."""
    return "users" if scope is Scope.USERS else "run"


def _same_lock(scope: Scope) -> tuple[str, ...]:
    return tuple(s.value for s in Scope if _lock_kind(s) == _lock_kind(scope))


class Runner:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        client: ConversationsClient,
        config: RunnerConfig,
        clock: Callable[[], datetime],
    ) -> None:
        self._engine = engine
        self._sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self._client = client
        self._config = config
        self._clock = clock
        self._sides = Sides(client, source_table=config.source_table, clock=clock)
        self._recorder = Recorder(self._sessions, retry=config.retry, clock=clock)

    async def run(
        self,
        request: RunRequest,
        *,
        on_open: Callable[[int], None] | None = None,
        progress: RunProgress | None = None,
    ) -> RunReport:
        """Reconcile; `on_open` gets the run id as soon as the run is recorded (before work);
        `progress`, if given, is kept up to date as the run goes."""
        key = locks.lock_key(_lock_kind(request.scope), self._config.service_key)
        try:
            async with locks.holding(self._engine, key) as connection:
                report = RunReport(run_id=await self._open(request), request=request)
                if progress is not None:
                    report.progress = progress
                if on_open is not None:
                    on_open(report.run_id)
                return await self._locked_run(connection, report)
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

    async def _locked_run(self, connection: AsyncConnection, report: RunReport) -> RunReport:
        request = report.request
        structlog.contextvars.bind_contextvars(
            run_id=report.run_id, trigger=request.trigger, scope=request.scope.value
        )
        calls_before = self._client.stats.total
        try:
            await self._reconcile(connection, request, report)
        except asyncio.CancelledError:
            report.status, report.error = RunStatus.ABORTED, "the run was cancelled"
            raise
        except Exception as e:
            report.status, report.error = RunStatus.FAILED, f"{type(e).__name__}: {e}"
            log.exception("run failed")
            raise
        finally:
            report.api_calls = self._client.stats.total - calls_before
            await asyncio.shield(self._close(report))
            structlog.contextvars.unbind_contextvars("run_id", "trigger", "scope")
        return report

    async def _open(self, request: RunRequest) -> int:
        opening = records.RunOpening(
            service_key=self._config.service_key,
            trigger=request.trigger,
            scope=request.scope.value,
            target=",".join(request.targets) or None,
            dry_run=request.dry_run,
            allow_deletes=request.allow_deletes,
        )
        async with self._sessions.begin() as session:
            aborted = await records.abort_stale_runs(
                session, service_key=opening.service_key, scopes=_same_lock(request.scope)
            )
            if aborted:
                log.warning("closed runs left running by a stopped process", count=aborted)
            await records.prune_errors(session, before=self._clock() - self._config.error_retention)
            return await records.open_run(session, opening)

    async def _close(self, report: RunReport) -> None:
        if (
            report.status is RunStatus.SUCCEEDED
            and report.counts[Result.FAILED] + report.counts[Result.INVALID]
        ):
            report.status = RunStatus.PARTIAL
        closing = records.RunClosing(
            status=report.status.value,
            counts=dict(report.counts),
            api_calls=report.api_calls,
            deletions_held=len(report.held),
            held_reason=report.held_reason,
            held_deletions=tuple(_held_row(d) for d in report.held[:1000]),
            error=report.error,
        )
        async with self._sessions.begin() as session:
            await records.close_run(session, report.run_id, closing)
        log.info(
            "run finished",
            status=report.status.value,
            api_calls=report.api_calls,
            deletions_held=len(report.held),
            **{k: v for k, v in report.counts.items()},
        )

    async def _reconcile(
        self, connection: AsyncConnection, request: RunRequest, report: RunReport
    ) -> None:
        pool: ApplyPool | None = None
        deletions: list[tuple[Gathered, DeleteUser]] = []
        try:
            async for batch in self._sides.batches(connection, report):
                if pool is None:
                    pool = self._pool(self._executor(), report)
                deletions += await self._process(batch, pool, request, report)
            if pool is not None:
                await self._recorder.outcomes(await pool.drain(), report, dry_run=request.dry_run)
        finally:
            if pool is not None:
                await pool.close()
        if request.scope is Scope.FULL:
            orphans = await self._orphan_deletions(connection)
            if report.progress.total is not None:
                report.progress.total += len(orphans)
            deletions += orphans
        if deletions:
            executor = pool.executor if pool is not None else self._executor()
            await self._delete(deletions, executor, request, report)

    def _pool(self, executor: Executor, report: RunReport) -> ApplyPool:
        """Users in progress: enough that every in-flight slot has a request waiting for it."""
        size = 2 * self._client.limiter.max_in_flight
        return ApplyPool(executor, size=size, progress=report.progress)

    def _executor(self) -> Executor:
        return Executor(self._client, policy=self._config.policy)

    async def _process(
        self,
        batch: Sequence[Gathered],
        pool: ApplyPool,
        request: RunRequest,
        report: RunReport,
    ) -> list[tuple[Gathered, DeleteUser]]:
        """Plan a batch and start applying it, all but guarded deletions (returned for the
        guard); record what is known by now: users with nothing to do, and users of earlier
        batches the pool has finished."""
        deferred: list[tuple[Gathered, DeleteUser]] = []
        ready: list[Outcome] = []
        submit: list[tuple[Gathered, tuple[Action, ...]]] = []
        roles = await pool.executor.roles_for(batch)
        for n, g in enumerate(batch):
            if n and n % PLAN_SLICE == 0:
                await asyncio.sleep(0)
            plan = plan_case(case_of(g), policy=self._config.policy, roles=roles)
            guarded = [a for a in plan.actions if isinstance(a, DeleteUser) and a.guarded]
            deferred += [(g, a) for a in guarded]
            actions = tuple(a for a in plan.actions if a not in guarded)
            if plan.problem is not None:
                ready.append(_invalid(g, plan.problem))
            elif not actions:
                if not guarded:  # a guarded deletion is counted once the guard has seen it
                    ready.append(unchanged(g))
            elif request.dry_run:
                report.planned += [describe(a) for a in actions]
                ready.append(Outcome(gathered=g, result=Result.PLANNED))
            else:
                submit.append((g, actions))
        report.progress.done += len(ready)
        await self._recorder.intents(submit)
        for g, actions in submit:
            await pool.submit(g, actions)
        await self._recorder.outcomes(ready + pool.finished(), report, dry_run=request.dry_run)
        return deferred

    async def _orphan_deletions(
        self, connection: AsyncConnection
    ) -> list[tuple[Gathered, DeleteUser]]:
        found = []
        async for page in gather.stream_orphans(connection, source_table=self._config.source_table):
            for remote in page:
                action = plan_orphan(remote, policy=self._config.policy)
                if action is not None:
                    found.append((Gathered(None, None, remote, None, None), action))
        return found

    async def _delete(
        self,
        deletions: list[tuple[Gathered, DeleteUser]],
        executor: Executor,
        request: RunRequest,
        report: RunReport,
    ) -> None:
        verdict = guard_deletions(
            [d for _, d in deletions],
            policy=self._config.policy,
            remote_total=await self._remote_total(report),
            source_complete=True,
            remote_complete=request.scope is Scope.FULL,
            allow_deletes=request.allow_deletes,
        )
        report.held, report.held_reason = list(verdict.held), verdict.reason
        report.progress.phase = Phase.DELETING
        report.progress.done += len(verdict.held)
        if verdict.held:
            report.counts[Result.HELD] += len(verdict.held)
        released = set(verdict.allowed)
        allowed = [(g, d) for g, d in deletions if d in released]
        if request.dry_run:
            report.planned += [describe(d) for _, d in allowed]
            report.counts[Result.PLANNED] += len(allowed)
            report.progress.done += len(allowed)
            return
        pool = self._pool(executor, report)
        try:
            for g, d in allowed:
                await pool.submit(g, (d,))
            outcomes = await pool.drain()
        finally:
            await pool.close()
        await self._recorder.outcomes(outcomes, report, dry_run=False)

    async def _remote_total(self, report: RunReport) -> int:
        if report.remote_total is not None:
            return report.remote_total
        async with self._sessions() as session:
            return await records.count_linked_remote_users(session)


def _invalid(g: Gathered, problem: InvalidUser) -> Outcome:
    failure = Failure(message=problem.message, action="validate", field=problem.field)
    return Outcome(gathered=g, result=Result.INVALID, failures=(failure,))


def _held_row(action: DeleteUser) -> dict[str, str | None]:
    return {
        "user_id": action.user_id,
        "sid": action.sid,
        "identity": action.identity,
        "reason": str(action.reason),
    }


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
