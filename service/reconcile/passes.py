"""One pass of a run over the users of a scope: plan and apply them, then their deletions.

Sides come in batches (`reconcile.sides`); each batch is planned a slice at a time
(`domain.batch.plan_batch`), the users whose outcome needs no call are leased and recorded at
once, and the others go to the pool, which leases each user before its first call
(`db.leases`) and hands back what finished. Deletions wait for the end of the pass: the guard
sees every deletion of the pass, and those already made within the window, before any is made
(`reconcile.verdict`). A run makes one pass over its scope, then a few short follow-up passes
over users that waited for an identity (`reconcile.runner`). A full pass writes the changed
users its state remembers while its listing runs (`reconcile.early`), and leaves them out of
the batches that follow the listing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy.ext.asyncio import AsyncConnection

from service.db import deletions, leases, source
from service.db.leases import Lease, LeaseRequest
from service.db.statistics import StateGrowth
from service.domain.actions import DeleteUser, describe
from service.domain.audit import held_entries, planned_entries
from service.domain.batch import BatchPlan, Planned, plan_batch, writes_user
from service.domain.cases import Case
from service.domain.outcome import Outcome, deferred
from service.domain.roles import RoleDirectory, names_a_role
from service.domain.runs import Scope
from service.domain.suspension import may_suspend
from service.reconcile.early import EARLY_SLOTS, EarlyDone, EarlyParts, EarlyWrites
from service.reconcile.gate import GateConfig, WriteGate
from service.reconcile.parts import RunnerConfig, RunnerParts
from service.reconcile.pool import ApplyPool, Work, lease_for
from service.reconcile.progress import Phase
from service.reconcile.run import RunReport, RunRequest
from service.reconcile.sides import Listing
from service.reconcile.verdict import (
    Decision,
    decide,
    not_deleted,
    not_tried,
    orphan_deletions,
)

PLAN_SLICE = 100
"""Users planned between yields to the event loop: planning a batch of 1,000 takes 15-30 ms of
CPU, long enough to bunch the writes the limiter spaced out (a 429 at Twilio's edge)."""


@dataclass(slots=True)
class RunState:
    """What one run carries from pass to pass (made by the runner once it holds its lock)."""

    connection: AsyncConnection
    report: RunReport
    source: source.Source
    roles: RoleDirectory = field(default_factory=RoleDirectory.unread)
    """The Service's roles, once a user of the run names one (`_roles`)."""
    let_go: Mapping[str, int] = field(default_factory=dict)
    """Users that break a cycle of waits in this pass, each with the number of users of its
    cycle (`domain.waits`)."""
    growth: StateGrowth = field(default_factory=StateGrowth)
    """The state rows the run's leases made, for the table's statistics (`db.statistics`)."""
    listing: Listing | None = None
    """A full run's listing started before the run opened (`service.headstart`), until its
    full pass takes it."""


class Passes:
    """The passes of a runner's runs; nothing is kept between runs but the parts."""

    def __init__(self, parts: RunnerParts, *, config: RunnerConfig) -> None:
        self._parts = parts
        self._client = parts.client
        self._sessions = parts.sessions
        self._recorder = parts.recorder
        self._config = config
        self._gate = GateConfig(
            policy=config.policy,
            window=config.deletion_window,
            service_key=config.service_key,
        )

    async def apply(self, run: RunState, request: RunRequest) -> list[Planned]:
        """Plan and apply the users of `request`'s scope; the users with guarded deletions,
        for the deletion phase."""
        pool = self._pool(run)
        pending: list[Planned] = []
        held = not request.dry_run and await self._any_held()
        named = request.scope is Scope.USERS
        gate = await WriteGate.begin(
            self._sessions,
            config=self._gate,
            report=run.report,
            named=named,
            recorder=self._recorder,
            let_go=run.let_go,
        )
        early = self._early(run, request, gate)
        try:
            batches = self._parts.sides.batches(
                run.connection,
                run.report,
                source=run.source,
                request=request,
                roles=lambda: self._read_roles(run),
                listing=self._listing(run, request),
            )
            async for batch in batches:
                if rest := await early.without(batch):
                    pending += await self._process(run, rest, pool, held=held, gate=gate)
            pending += await self._again(run, await early.finish(), pool, held=held, gate=gate)
            await gate.forget_vanished(run.source)
            await pool.submit([Work.of(p.case, p.actions) for p in await gate.settle()])
            await self._recorder.outcomes(await pool.drain(), run.report, dry_run=request.dry_run)
        finally:
            try:
                await early.close()
            finally:
                await self._close_pool(pool, run.report, dry_run=request.dry_run)
        return pending

    @staticmethod
    def _listing(run: RunState, request: RunRequest) -> Listing | None:
        """The listing started for this run, taken by its full pass (once)."""
        listing = run.listing if request.scope is Scope.FULL else None
        if listing is not None:
            run.listing = None
        return listing

    def _early(self, run: RunState, request: RunRequest, gate: WriteGate) -> EarlyWrites:
        """A full pass's writes that need no listing, started now (`reconcile.early`)."""
        sides = self._parts.sides
        if request.scope is not Scope.FULL or request.dry_run or not self._config.early_writes:
            return EarlyWrites.none()
        if not sides.plans_from_state:  # merge mode, or every user is read before its write
            return EarlyWrites.none()

        async def plan(cases: Sequence[Case]) -> BatchPlan:
            return await self._plan(run, cases)

        parts = EarlyParts(
            sessions=self._sessions,
            sides=sides,
            recorder=self._recorder,
            report=run.report,
            source=run.source,
            gate=gate,
            pool=self._pool(run, share=EARLY_SLOTS),
            plan=plan,
        )
        return EarlyWrites(parts)

    async def _again(
        self, run: RunState, done: EarlyDone, pool: ApplyPool, *, held: bool, gate: WriteGate
    ) -> list[Planned]:
        """The users written early, planned once more from what their writes answered (newer
        than the listing): drift in the fields the source did not change is written now; and
        those another run held then, planned now from what is there. Each is counted once,
        by its last outcome (`RunReport.replacing`)."""
        if held:  # chosen users have no deletion planned: their held ones go, as in a pass
            await self._forget_held(done.chosen, keep=[])
        pending: list[Planned] = []
        if not done.again:
            return pending
        run.report.replacing = {u: done.outcomes[u] for u in done.again if u in done.outcomes}
        batches = self._parts.sides.named_batches(run.connection, source=run.source, ids=done.again)
        async for batch in batches:
            pending += await self._process(run, batch, pool, held=held, gate=gate, again=True)
        return pending

    async def _close_pool(self, pool: ApplyPool, report: RunReport, *, dry_run: bool) -> None:
        """Whatever ends the run (a SIGTERM, a failure), what was applied is recorded."""
        unrecorded = await pool.close()
        if unrecorded:
            await asyncio.shield(self._recorder.outcomes(unrecorded, report, dry_run=dry_run))

    def _pool(self, run: RunState, *, share: float = 2.0, keeps_started: bool = False) -> ApplyPool:
        """Users in progress: enough that every in-flight slot has a request waiting for it
        (`share` of the slots: fewer leave the rest to other calls of the run);
        `keeps_started`: the pool remembers whom it started (`ApplyPool.started`)."""
        size = max(1, int(share * self._client.limiter.max_in_flight))

        async def lease(requests: Sequence[Lease]) -> set[str]:
            return await self._lease(run, requests)

        executor = self._parts.executor(lambda: run.roles)
        return ApplyPool(
            executor,
            size=size,
            progress=run.report.progress,
            lease=lease,
            keeps_started=keeps_started,
        )

    async def _roles(self, run: RunState, batch: Sequence[Case]) -> RoleDirectory:
        """The Service's roles, read the first time a user of the run names one: a run whose
        users all take the default role makes no Roles call (a no-change run only lists)."""
        named = any(c.local is not None and names_a_role(c.local.role) for c in batch)
        if self._config.policy.suspends:  # the suspended role, for users who may be suspended
            named = named or any(may_suspend(c) for c in batch)
        return await self._read_roles(run) if named else run.roles

    async def _read_roles(self, run: RunState) -> RoleDirectory:
        """The Service's roles, read once per run."""
        if not run.roles.read:
            run.roles = RoleDirectory(await self._client.list_roles())
        return run.roles

    async def _lease(self, run: RunState, requests: Sequence[Lease]) -> set[str]:
        """Lease what can be leased now; a lease of a user with no state row makes its row."""
        async with self._sessions.begin() as session:
            leased = await leases.take(
                session,
                requests,
                run_id=run.report.run_id,
                source=run.source,
                service_key=self._config.service_key,
            )
        made = [r for r in requests if isinstance(r, LeaseRequest) and r.version is None]
        await run.growth.grew(self._sessions, sum(r.key in leased for r in made))
        return leased

    async def _any_held(self) -> bool:
        async with self._sessions() as session:
            return await deletions.any_held(session, service_key=self._config.service_key)

    async def _process(
        self,
        run: RunState,
        batch: Sequence[Case],
        pool: ApplyPool,
        *,
        held: bool,
        gate: WriteGate,
        again: bool = False,
    ) -> list[Planned]:
        """Plan a batch; lease and record the users whose outcome needs no call, start applying
        the others, record the users of earlier batches the pool has finished; the users with
        guarded deletions, for the deletion phase. `again`: users this run applied already
        (`_again`), whose outcome is not counted twice when nothing is left to do."""
        report, dry_run = run.report, run.report.request.dry_run
        plan = await self._plan(run, batch)
        report.would_do(plan.planned, would_write=plan.would_write, audit=plan.audit)
        direct = await self._leased(run, plan.direct)
        ready = [o for o in plan.ready if o.user_id in report.replacing] if again else plan.ready
        if again and report.progress.total is not None:
            report.progress.total += len(batch) - len(plan.ready)
        report.progress.done += (0 if again else len(ready)) + len(direct)
        await gate.forget(batch, keep=[p.case for p in plan.work if writes_user(p.actions)])
        admitted = await gate.admit(plan.work, counted=plan.writers)
        await pool.submit([Work.of(p.case, p.actions) for p in admitted])
        await self._recorder.outcomes(ready + direct + pool.finished(), report, dry_run=dry_run)
        if held:
            await self._forget_held(batch, keep=[p.case for p in plan.deletions])
        return plan.deletions

    async def _plan(self, run: RunState, batch: Sequence[Case]) -> BatchPlan:
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
                    let_go=frozenset(run.let_go),
                    dry_run=run.report.request.dry_run,
                )
            )
        return plan

    async def _leased(self, run: RunState, outcomes: list[Outcome]) -> list[Outcome]:
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

    async def orphans(self, run: RunState) -> list[tuple[Case, DeleteUser]]:
        found = await orphan_deletions(
            run.connection, source=run.source, policy=self._config.policy
        )
        if run.report.progress.total is not None:
            run.report.progress.total += len(found)
        return found

    async def delete(
        self,
        run: RunState,
        pending: list[Planned],
        orphans: list[tuple[Case, DeleteUser]],
        *,
        full: bool,
        named: bool,
    ) -> None:
        """Let the guard see every deletion of the pass, then apply what it allows; `named`:
        the pass looked at named users only (it never deletes a user another run holds)."""
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
            named=named,
        )
        await self._recorder.held(held_entries(report.held[held_before:]), report)
        if pending:
            report.progress.phase = Phase.DELETING
        if report.request.dry_run:
            self._would_delete(run, verdict.work)
        else:
            await self._apply_deletions(run, verdict)

    def _would_delete(self, run: RunState, work: list[Work]) -> None:
        """A dry run's deletion phase: the lines and the audit entries it would make."""
        report = run.report
        actions = [a for w in work for a in w.actions]
        report.would_do(
            [describe(a, run.roles) for a in actions],
            would_write=sum(writes_user(w.actions) for w in work),
            users=len(work),
            audit=planned_entries(actions, roles=run.roles) + held_entries(report.held),
        )
        report.progress.done += len(work)

    async def _apply_deletions(self, run: RunState, verdict: Decision) -> None:
        report = run.report
        pool = self._pool(run, keeps_started=True)
        try:
            await pool.submit(verdict.work)
            outcomes = await pool.drain()
        finally:
            await self._close_pool(pool, report, dry_run=False)
            untried = not_tried(
                self._sessions, verdict.logged, started=pool.started, run_id=report.run_id
            )
            await asyncio.shield(untried)
        await self._recorder.outcomes(outcomes, report, dry_run=False)
        await not_deleted(self._sessions, outcomes, verdict.logged, run_id=report.run_id)
