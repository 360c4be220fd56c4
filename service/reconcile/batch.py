"""Sorting one batch's plans into what the runner does with each user (no I/O).

Every user of a batch ends in exactly one of these:
- `ready`: nothing to write (an unchanged user whose state already says it all, or a dry run's
  plan), counted only;
- `direct`: an outcome known without any API call that must be written (bad input, a user
  waiting for its identity, an unchanged user whose state is out of date): leased, then
  recorded;
- `work`: actions to apply, with the lease (and the claims) to take first;
- `deletions`: a user with a guarded deletion: all its actions wait for the deletion phase,
  where the guard has seen every deletion of the run, so each user has one outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from service.db.leases import Claim, Lease, LeaseRequest, OrphanCheck
from service.domain.cases import Case
from service.domain.outcome import Failure, Outcome, Result, already_recorded, unchanged
from service.domain.plan import (
    Action,
    CasePlan,
    CreateUser,
    DeleteUser,
    InvalidUser,
    LinkUser,
    UpdateUser,
    describe,
)
from service.domain.roles import RoleDirectory
from service.reconcile.pool import Work


@dataclass(slots=True)
class SortedBatch:
    ready: list[Outcome] = field(default_factory=list)
    direct: list[Outcome] = field(default_factory=list)
    work: list[Work] = field(default_factory=list)
    deletions: list[tuple[Case, tuple[Action, ...]]] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    """A dry run's lines, in user order."""
    would_write: int = 0
    """A dry run's users that would be created or updated."""


def writes_user(actions: Sequence[Action]) -> bool:
    """Whether these actions edit a user record (a create or an update: what Twilio bills)."""
    return any(isinstance(a, CreateUser | UpdateUser) for a in actions)


def sort_batch(
    planned: Sequence[tuple[Case, CasePlan]],
    *,
    dry_run: bool,
    roles: RoleDirectory | None = None,
) -> SortedBatch:
    """`roles` names the role sids of a dry run's lines."""
    out = SortedBatch()
    for g, plan in planned:
        if any(isinstance(a, DeleteUser) and a.guarded for a in plan.actions):
            out.deletions.append((g, plan.actions))
        elif plan.actions:
            _act(out, g, plan.actions, dry_run=dry_run, roles=roles)
        else:
            outcome = _without_actions(g, plan)
            known = dry_run or already_recorded(outcome)
            (out.ready if known else out.direct).append(outcome)
    return out


def _act(
    out: SortedBatch,
    g: Case,
    actions: tuple[Action, ...],
    *,
    dry_run: bool,
    roles: RoleDirectory | None,
) -> None:
    if dry_run:
        out.planned += [describe(a, roles) for a in actions]
        out.would_write += writes_user(actions)
        out.ready.append(Outcome(case=g, result=Result.PLANNED))
    else:
        out.work.append(Work(g, actions, lease_for(g, actions)))


def _without_actions(g: Case, plan: CasePlan) -> Outcome:
    if plan.problem is not None:
        return invalid(g, plan.problem)
    if plan.waits_for is not None:
        return replace(unchanged(g), result=Result.WAITING, waits_for=plan.waits_for)
    return unchanged(g)


def invalid(g: Case, problem: InvalidUser) -> Outcome:
    failure = Failure(message=problem.message, action="validate", field=problem.field)
    return replace(unchanged(g), result=Result.INVALID, failures=(failure,))


def lease_for(g: Case, actions: Sequence[Action]) -> Lease | None:
    """The lease to take before applying `actions` (for a remote user nobody here knows, the
    check that nobody knows it yet)."""
    user_id = g.user_id
    if user_id is None:
        remote = g.remote
        return None if remote is None else OrphanCheck(sid=remote.sid, identity=remote.identity)
    return LeaseRequest(
        user_id=user_id,
        fingerprint=g.fingerprint,
        version=g.version,
        claim=_claim(g, actions[0]) if actions else None,
    )


def _claim(g: Case, action: Action) -> Claim | None:
    """What the user's state must hold before the first call: a create's identity (with the
    renamed user's old sid to retire), or a remote user it adopts."""
    if isinstance(action, CreateUser):
        return Claim(identity=action.identity, sid=None, retired_sid=action.retires)
    linked = g.state.remote_sid if g.state is not None else None
    if isinstance(action, UpdateUser | LinkUser) and action.sid != linked:
        return Claim(identity=action.identity, sid=action.sid, retired_sid=action.retires)
    return None
