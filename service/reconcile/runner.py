"""One reconcile: lock, gather, plan, apply, record.

Triggers only say what to look at (`Scope`): every user, the users that changed, or named
users. Whatever the trigger, a reconcile re-reads both sides. Runs of the same kind exclude each
other (a Postgres advisory lock per Service); runs of named users may overlap bulk runs, and
they are safe together because nothing is written for a user without its lease
(`db.leases`): the plan must still match the source row and the state, and no other live run
may hold the user. A run found `running` whose process is gone is closed as aborted.

The source relation is checked first (`db.source.inspect`), before any API call. Deletions are
applied after the main pass, once the guard has seen all of them and the deletions already made
within the window (`db.deletions`). Users that waited for an identity another user of the run
let go of are looked at again at the end of the run (a few passes at most), so batching
changes into one run ends where running them one at a time would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from service.conversations.client import ConversationsClient
from service.db import deletions, gather, leases, locks, source
from service.db.gather import Probe
from service.db.leases import Lease
from service.domain.actions import DeleteUser, describe
from service.domain.audit import AuditPolicy, held_entries, planned_entries
from service.domain.batch import BatchPlan, Planned, plan_batch, writes_user
from service.domain.cases import Case
from service.domain.outcome import Outcome, RetryPolicy, deferred
from service.domain.policy import Policy
from service.domain.roles import RoleDirectory, names_a_role
from service.domain.users import RemoteUser, UserId
from service.domain.waits import cycle_breakers
from service.reconcile import failure
from service.reconcile.executor import Executor
from service.reconcile.pool import ApplyPool, Work, lease_for
from service.reconcile.progress import Phase, RunProgress
from service.reconcile.recorder import Recorder
from service.reconcile.run import (
    RunFailed,
    RunInProgress,
    RunReport,
    RunRequest,
    RunStatus,
    Scope,
)
from service.reconcile.sides import Sides
from service.reconcile.verdict import decide, not_deleted, orphan_deletions

log = structlog.get_logger(__name__)

PLAN_SLICE = 100
"""Users planned between yields to the event loop: planning a batch of 1,000 takes 15-30 ms of
CPU, long enough to bunch the writes the limiter spaced out (a 429 at Twilio's edge)."""
FOLLOW_UPS = 8
"""At most this many passes over users that waited for an identity, after the run's other work,
while they make progress (a swap of two identities needs three: one lets go, the other takes
its new identity, then the first; a cycle of n renames about n + 1)."""
FOLLOW_UP_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    service_key: str
    source_table: str
    policy: Policy
    retry: RetryPolicy
    error_retention: timedelta
    deletion_window: timedelta = timedelta(hours=1)
    audit: AuditPolicy = field(default_factory=AuditPolicy)

    @property
    def trail(self) -> AuditPolicy | None:
        """The audit trail's settings, None when it is off."""
        return self.audit if self.audit.enabled else None


def _lock_kind(scope: Scope) -> str:
    """Bulk runs exclude each other; runs of named users (events, operators) may overlap them,
    so a changed user is not kept waiting behind a long full run."""
    return "users" if scope is Scope.USERS else "run"


@dataclass(slots=True)
class _Pass:
    """What one run carries from pass to pass."""

    connection: AsyncConnection
    report: RunReport
    source: source.Source
    roles: RoleDirectory = field(default_factory=RoleDirectory.unread)
    """The Service's roles, once a user of the run names one (`_roles`)."""
    let_go: frozenset[str] = frozenset()
    """Users that break a cycle of waits in this pass (`domain.waits`)."""


class Runner:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        client: ConversationsClient,
        config: RunnerConfig,
        clock: Callable[[], datetime],
        lock_engine: AsyncEngine | None = None,
        on_close: Callable[[RunReport], None] | None = None,
        sessions: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        """`lock_engine` gives each run its lock connection (session advisory locks, the temp
        table of remote users), when it must not be the pooled `engine` (a transaction pooler
        in front of the main URL); unset, `engine` does both. `on_close` sees each run's
        report once it is closed, whatever its status. `sessions` is the composition root's
        sessionmaker of `engine`; unset, the runner makes one."""
        self._engine = engine
        self._lock_engine = lock_engine or engine
        self._sessions = sessions or async_sessionmaker(engine, expire_on_commit=False)
        self._client = client
        self._config = config
        self._clock = clock
        self._sides = Sides(
            client, sessions=self._sessions, clock=clock, service_key=config.service_key
        )
        self._recorder = Recorder(
            self._sessions, retry=config.retry, clock=clock, on_close=on_close, audit=config.trail
        )

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
            async with locks.holding(self._lock_engine, key) as connection:
                run_id = await self._open(connection, request)
                watching = progress or RunProgress(watched=False)
                report = RunReport(run_id=run_id, request=request, progress=watching)
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
        bug: Exception | None = None
        try:
            await self._reconcile(connection, report)
        except asyncio.CancelledError as e:
            report.end(RunStatus.ABORTED, error=_why_cancelled(e))
            raise
        except Exception as e:
            report.end(RunStatus.FAILED, error=failure.explain(e, api_url=self._client.base_url))
            bug = None if failure.expected(e) else e
            raise RunFailed(report) from e
        finally:
            report.close(api_calls=self._client.stats.total - calls_before)
            await asyncio.shield(self._recorder.close_run(report, bug=bug))
            structlog.contextvars.unbind_contextvars("run_id", "trigger", "scope")
        return report

    async def _open(self, connection: AsyncConnection, request: RunRequest) -> int:
        run_id = await self._recorder.open_run(
            request,
            service_key=self._config.service_key,
            retention=self._config.error_retention,
        )
        await locks.hold_alive(connection, run_id)
        return run_id

    async def _reconcile(self, connection: AsyncConnection, report: RunReport) -> None:
        checked = await source.inspect(connection, self._config.source_table)
        run = _Pass(connection, report, checked)
        request = report.request
        pending = await self._pass(run, request)
        orphans = await self._orphans(run) if request.scope is Scope.FULL else []
        await self._delete(run, pending, orphans, full=request.scope is Scope.FULL)
        before: dict[str, str] | None = None
        for _ in range(FOLLOW_UPS):
            if report.waiting == before and not run.let_go:
                break  # the same users wait for the same users: nothing will move this run
            before = dict(report.waiting)
            holders, waiting = self._follow_up(report, also=run.let_go)
            if waiting is None:
                break
            waits = report.look_again()
            run.let_go = cycle_breakers(waits)
            log.info("waiting users again", users=len(waits), let_go=len(run.let_go))
            for follow_up in (holders, waiting):
                if follow_up is not None:
                    await self._delete(run, await self._pass(run, follow_up), [], full=False)

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

    async def _pass(self, run: _Pass, request: RunRequest) -> list[Planned]:
        """Plan and apply the users of `request`'s scope; the users with guarded deletions,
        for the deletion phase."""
        pool = self._pool(run)
        pending: list[Planned] = []
        held = not request.dry_run and await self._any_held()
        try:
            batches = self._sides.batches(
                run.connection, run.report, source=run.source, request=request
            )
            async for batch in batches:
                pending += await self._process(run, batch, pool, held=held)
            await self._recorder.outcomes(await pool.drain(), run.report, dry_run=request.dry_run)
        finally:
            await self._close_pool(pool, run.report, dry_run=request.dry_run)
        return pending

    async def _close_pool(self, pool: ApplyPool, report: RunReport, *, dry_run: bool) -> None:
        """Whatever ends the run (a SIGTERM, a failure), what was applied is recorded."""
        unrecorded = await pool.close()
        if unrecorded:
            await asyncio.shield(self._recorder.outcomes(unrecorded, report, dry_run=dry_run))

    def _pool(self, run: _Pass) -> ApplyPool:
        """Users in progress: enough that every in-flight slot has a request waiting for it."""
        size = 2 * self._client.limiter.max_in_flight

        async def lease(requests: Sequence[Lease]) -> set[str]:
            return await self._lease(run, requests)

        executor = Executor(
            self._client,
            policy=self._config.policy,
            holder_of=self._holder_of,
            roles=lambda: run.roles,
            audit=self._config.trail,
        )
        return ApplyPool(executor, size=size, progress=run.report.progress, lease=lease)

    async def _roles(self, run: _Pass, batch: Sequence[Case]) -> RoleDirectory:
        """The Service's roles, read the first time a user of the run names one: a run whose
        users all take the default role makes no Roles call (a no-change run only lists)."""
        named = any(c.local is not None and names_a_role(c.local.role) for c in batch)
        if named and not run.roles.read:
            run.roles = RoleDirectory(await self._client.list_roles())
        return run.roles

    async def _holder_of(self, me: UserId, remote: RemoteUser) -> UserId | None:
        async with self._sessions() as session:
            connection = await session.connection()
            probe = Probe(me=me, sid=remote.sid, identity=remote.identity)
            return (await gather.owners(connection, [probe]))[0]

    async def _lease(self, run: _Pass, requests: Sequence[Lease]) -> set[str]:
        async with self._sessions.begin() as session:
            return await leases.take(
                session,
                requests,
                run_id=run.report.run_id,
                source=run.source,
                service_key=self._config.service_key,
            )

    async def _any_held(self) -> bool:
        async with self._sessions() as session:
            return await deletions.any_held(session, service_key=self._config.service_key)

    async def _process(
        self, run: _Pass, batch: Sequence[Case], pool: ApplyPool, *, held: bool
    ) -> list[Planned]:
        """Plan a batch; lease and record the users whose outcome needs no call, start applying
        the others, record the users of earlier batches the pool has finished; the users with
        guarded deletions, for the deletion phase."""
        report, dry_run = run.report, run.report.request.dry_run
        plan = await self._plan(run, batch)
        report.would_do(plan.planned, would_write=plan.would_write, audit=plan.audit)
        direct = await self._leased(run, plan.direct)
        report.progress.done += len(plan.ready) + len(direct)
        await pool.submit([Work.of(p.case, p.actions) for p in plan.work])
        await self._recorder.outcomes(
            plan.ready + direct + pool.finished(), report, dry_run=dry_run
        )
        if held:
            await self._forget_held(batch, keep=[p.case for p in plan.deletions])
        return plan.deletions

    async def _plan(self, run: _Pass, batch: Sequence[Case]) -> BatchPlan:
        """`plan_batch` a slice at a time, yielding to the event loop in between."""
        roles = await self._roles(run, batch)
        plan = BatchPlan()
        for start in range(0, len(batch), PLAN_SLICE):
            if start:
                await asyncio.sleep(0)
            plan.extend(
                plan_batch(
                    batch[start : start + PLAN_SLICE],
                    policy=self._config.policy,
                    roles=roles,
                    let_go=run.let_go,
                    dry_run=run.report.request.dry_run,
                )
            )
        return plan

    async def _leased(self, run: _Pass, outcomes: list[Outcome]) -> list[Outcome]:
        """Outcomes without actions that must be written: leased first (else deferred)."""
        requests = [lease_for(o.case, ()) for o in outcomes]
        leased = await self._lease(run, [r for r in requests if r is not None])
        return [
            replace(o, leased=True) if o.user_id in leased else deferred(o.case) for o in outcomes
        ]

    async def _forget_held(self, batch: Sequence[Case], *, keep: list[Case]) -> None:
        kept = {g.user_id for g in keep}
        users = [g.user_id for g in batch if g.user_id is not None and g.user_id not in kept]
        async with self._sessions.begin() as session:
            await deletions.forget_held(
                session, service_key=self._config.service_key, user_ids=users
            )

    async def _orphans(self, run: _Pass) -> list[tuple[Case, DeleteUser]]:
        found = await orphan_deletions(
            run.connection, source=run.source, policy=self._config.policy
        )
        if run.report.progress.total is not None:
            run.report.progress.total += len(found)
        return found

    async def _delete(
        self,
        run: _Pass,
        pending: list[Planned],
        orphans: list[tuple[Case, DeleteUser]],
        *,
        full: bool,
    ) -> None:
        """Let the guard see every deletion of the pass, then apply what it allows."""
        report = run.report
        if not pending and not orphans and not full:
            return
        # a user another run deleted since the listing is still in the snapshot: its own
        # (stale) deletion and an orphan there, one deletion
        planned = {a.sid for d in pending for a in d.actions if isinstance(a, DeleteUser)}
        pending += [Planned(g, (d,)) for g, d in orphans if d.sid not in planned]
        held_before = len(report.held)
        verdict = await decide(
            self._sessions,
            pending,
            policy=self._config.policy,
            window=self._config.deletion_window,
            service_key=self._config.service_key,
            report=report,
            full=full,
        )
        await self._recorder.held(report.held[held_before:], report)
        work = verdict.work
        if pending:
            report.progress.phase = Phase.DELETING
        if report.request.dry_run:
            actions = [a for w in work for a in w.actions]
            report.would_do(
                [describe(a, run.roles) for a in actions],
                would_write=sum(writes_user(w.actions) for w in work),
                users=len(work),
                audit=planned_entries(actions, roles=run.roles) + held_entries(report.held),
            )
            report.progress.done += len(work)
            return
        pool = self._pool(run)
        try:
            await pool.submit(work)
            outcomes = await pool.drain()
        finally:
            await self._close_pool(pool, report, dry_run=False)
        await self._recorder.outcomes(outcomes, report, dry_run=False)
        await not_deleted(self._sessions, outcomes, verdict.logged, run_id=report.run_id)


def _why_cancelled(cancel: asyncio.CancelledError) -> str:
    """The canceller's message (the CLI's names the signal: `stopped by SIGTERM`), if any."""
    return str(cancel) or "the run was cancelled"


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
