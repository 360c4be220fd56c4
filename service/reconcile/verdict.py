"""The deletion phase's decision: the guard over this pass's deletions and the window's.

The runner hands over every user with a guarded deletion (with all of that user's actions, so
each user gets one outcome). Under the Service's deletion lock, the deletions already made
within the window are counted, the guard decides, allowed deletions are logged before they are
made and held ones are kept as held rows; a full run, having looked at everyone, also drops
held rows it no longer plans. What is left to apply comes back as pool work: a user whose
deletion is held still gets its other actions (a rename's retirement is never held).
Suspensions (`domain.suspension`) are decided, logged and held exactly like deletions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from service.db import deletions, gather, records
from service.db.source import Source
from service.domain.actions import DeleteUser, Removal, UpdateUser, guarded, removal_reason
from service.domain.batch import Planned
from service.domain.cases import Case
from service.domain.guards import DeletionVerdict, guard_deletions
from service.domain.outcome import Outcome, Result
from service.domain.plan import plan_orphan
from service.domain.policy import DeleteMode, Policy
from service.reconcile.pool import Work
from service.reconcile.run import RunReport


@dataclass(frozen=True, slots=True)
class Decision:
    work: list[Work]
    logged: set[str] = field(default_factory=set)
    """Sids of the deletions logged `applied` (marked failed if they do not happen)."""


async def decide(
    sessions: async_sessionmaker[AsyncSession],
    pending: list[Planned],
    *,
    policy: Policy,
    window: timedelta,
    service_key: str,
    report: RunReport,
    full: bool,
    named: bool = False,
) -> Decision:
    request = report.request
    counted: list[Removal] = [
        a
        for d in pending
        for a in d.actions
        if isinstance(a, DeleteUser | UpdateUser) and a.guarded
    ]
    async with sessions.begin() as session:
        if not request.dry_run:
            await deletions.lock_window(session, service_key=service_key)
        recent = await deletions.applied_within(
            session, service_key=service_key, window=window, run_id=report.run_id
        )
        verdict = guard_deletions(
            counted,
            policy=policy,  # in reach: the users linked now, and those deleted in the window
            remote_total=await _base(session, policy=policy, report=report) + recent,
            source_complete=True,
            remote_complete=full,
            allow_deletes=request.allow_deletes,
            deleted_recently=recent,
            held_earlier=await _held_earlier(
                session, counted, named=named, service_key=service_key
            ),
        )
        if not request.dry_run:
            await _log(session, verdict, service_key=service_key, run_id=report.run_id, full=full)
    _report(verdict, report)
    allowed = set(verdict.allowed)
    return Decision(
        work=_work(pending, allowed),
        logged={d.sid for d in verdict.allowed if d.guarded},
    )


async def _held_earlier(
    session: AsyncSession, counted: list[Removal], *, named: bool, service_key: str
) -> int:
    """How many of a run of named users' deletions a run holds already. Such a run (an event,
    the follow-up pass of a user waiting for a held user's identity) is under every limit on
    its own, so what is held stays held for it; bulk runs look at every held user again and
    count them together, so they decide afresh (a zero window, say, lets them go)."""
    if not named:
        return 0
    return await deletions.held_among(
        session, service_key=service_key, sids=[a.sid for a in counted]
    )


async def orphan_deletions(
    connection: AsyncConnection, *, source: Source, policy: Policy
) -> list[tuple[Case, DeleteUser]]:
    """A full run's deletions of remote users nobody here names or owns (mirror mode)."""
    found = []
    async for page in gather.stream_orphans(connection, source=source):
        for remote in page:
            action = plan_orphan(remote, policy=policy)
            if action is not None:
                found.append((Case(local=None, state=None, remote=remote), action))
    return found


async def not_deleted(
    sessions: async_sessionmaker[AsyncSession],
    outcomes: list[Outcome],
    logged: set[str],
    *,
    run_id: int,
) -> None:
    """Logged deletions that surely did not happen stop counting against the window: not
    tried (deferred), or refused with a 4xx. A timeout, a dropped connection or a 5xx may have
    deleted the user anyway, so those still count. The same goes for suspensions (updates)."""
    missed = [
        r.sid
        for o in outcomes
        for r in (o.case.remote, o.case.previous)
        if r is not None and r.sid in logged and _surely_not_deleted(o)
    ]
    if missed:
        async with sessions.begin() as session:
            await deletions.mark_failed(session, run_id=run_id, sids=missed)


async def not_tried(
    sessions: async_sessionmaker[AsyncSession],
    logged: set[str],
    *,
    started: Sequence[Case],
    run_id: int,
) -> None:
    """Logged deletions whose work never started (the run was stopped first) surely did not
    happen: they stop counting, and the log does not say they were made."""
    tried = {r.sid for c in started for r in (c.remote, c.previous) if r is not None}
    missed = sorted(logged - tried)
    if missed:
        async with sessions.begin() as session:
            await deletions.mark_failed(session, run_id=run_id, sids=missed)


def _surely_not_deleted(outcome: Outcome) -> bool:
    if outcome.result is Result.DEFERRED:
        return True
    refused = [f for f in outcome.failures if f.action in ("delete", "update")]
    return bool(refused) and all(
        f.http_status is not None and 400 <= f.http_status < 500 for f in refused
    )


async def _base(session: AsyncSession, *, policy: Policy, report: RunReport) -> int:
    """The percent guard's base: the remote users this service links (in mirror mode a full
    run may delete any remote user: then every one listed)."""
    if policy.delete_mode is DeleteMode.MIRROR and report.remote_total is not None:
        return report.remote_total
    return await records.count_linked_remote_users(session)


async def _log(
    session: AsyncSession, verdict: DeletionVerdict, *, service_key: str, run_id: int, full: bool
) -> None:
    applied = [_deletion(d) for d in verdict.allowed if d.guarded]
    await deletions.log_applied(session, applied, service_key=service_key, run_id=run_id)
    held = [_deletion(d) for d in verdict.held]
    await deletions.hold(session, held, service_key=service_key, run_id=run_id, why=verdict.reason)
    if full:
        await deletions.forget_held(
            session, service_key=service_key, user_ids=None, keep=[d.sid for d in held]
        )


def _report(verdict: DeletionVerdict, report: RunReport) -> None:
    """Each held deletion counts once, however many passes of the run held it again."""
    report.progress.done += report.hold(verdict.held, reason=verdict.reason)


def _work(pending: list[Planned], allowed: set[Removal]) -> list[Work]:
    work = []
    for d in pending:
        kept = tuple(a for a in d.actions if not (guarded(a) and a not in allowed))
        if kept:
            work.append(Work.of(d.case, kept))
    return work


def _deletion(action: Removal) -> deletions.Deletion:
    return deletions.Deletion(
        sid=action.sid,
        user_id=action.user_id,
        identity=action.identity,
        reason=removal_reason(action),
    )
