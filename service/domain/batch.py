"""Planning one batch of users, and sorting each into what the run does with it (pure).

`plan_batch` plans every case of a batch (`plan.plan_case`) and says, for each user, which of
these it is:
- `ready`: nothing to write (an unchanged user whose state already says it all, or a dry run's
  plan), counted only;
- `direct`: an outcome known without any API call that must be written (bad input, a user
  waiting for its identity, an unchanged user whose state is out of date): leased, then
  recorded;
- `work`: actions to apply (with the lease, and the claims, to take first);
- `deletions`: a user with a guarded deletion (or a suspension, which the guard counts like
  one): all its actions wait for the deletion phase, where the guard has seen every deletion
  of the run, so each user has one outcome.

A dry run's lines (`planned`) and the users it would write (`would_write`) are counted here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from service.domain.actions import Action, CreateUser, UpdateUser, describe, guarded
from service.domain.audit import AuditEntry, planned_entries
from service.domain.cases import Case
from service.domain.outcome import Failure, Outcome, Result, already_recorded, unchanged
from service.domain.plan import CasePlan, plan_case
from service.domain.policy import Policy
from service.domain.roles import RoleDirectory
from service.domain.validation import InvalidUser


@dataclass(frozen=True, slots=True)
class Planned:
    """A user and the actions planned for it."""

    case: Case
    actions: tuple[Action, ...]


@dataclass(slots=True, kw_only=True)
class BatchPlan:
    ready: list[Outcome] = field(default_factory=list)
    direct: list[Outcome] = field(default_factory=list)
    work: list[Planned] = field(default_factory=list)
    deletions: list[Planned] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    """A dry run's lines, in user order."""
    would_write: int = 0
    """A dry run's users that would be created or updated."""
    writers: list[Case] = field(default_factory=list)
    """Those users (the write guard decides whether they would be held)."""
    audit: list[AuditEntry] = field(default_factory=list)
    """A dry run's audit trail entries: what the run would record."""

    def extend(self, later: BatchPlan) -> None:
        """Add the plan of the users after these (each list stays in user order)."""
        self.ready += later.ready
        self.direct += later.direct
        self.work += later.work
        self.deletions += later.deletions
        self.planned += later.planned
        self.would_write += later.would_write
        self.writers += later.writers
        self.audit += later.audit


def writes_user(actions: Sequence[Action]) -> bool:
    """Whether these actions edit a user record (a create or an update: what Twilio bills)."""
    return any(isinstance(a, CreateUser | UpdateUser) for a in actions)


def plan_batch(
    cases: Iterable[Case],
    *,
    policy: Policy,
    roles: RoleDirectory,
    let_go: frozenset[str] = frozenset(),
    dry_run: bool,
) -> BatchPlan:
    """Plan each case (the users in `let_go` break a cycle of waits, `domain.waits`) and sort
    it; `roles` also names the role sids of a dry run's lines."""
    out = BatchPlan()
    for case in cases:
        plan = plan_case(case, policy=policy, roles=roles, let_go=case.user_id in let_go)
        _sort(out, case, plan, dry_run=dry_run, roles=roles)
    return out


def _sort(
    out: BatchPlan, case: Case, plan: CasePlan, *, dry_run: bool, roles: RoleDirectory
) -> None:
    if any(guarded(a) for a in plan.actions):
        out.deletions.append(Planned(case, plan.actions))
    elif plan.actions and dry_run:
        out.planned += [describe(a, roles) for a in plan.actions]
        out.audit += planned_entries(plan.actions, roles=roles)
        if writes_user(plan.actions):
            out.would_write += 1
            out.writers.append(case)
        out.ready.append(Outcome(case=case, result=Result.PLANNED))
    elif plan.actions:
        out.work.append(Planned(case, plan.actions))
    else:
        outcome = _without_actions(case, plan)
        known = dry_run or already_recorded(outcome)
        (out.ready if known else out.direct).append(outcome)


def _without_actions(case: Case, plan: CasePlan) -> Outcome:
    if plan.unchanged:
        return unchanged(case)
    if plan.problem is not None:
        return _invalid(case, plan.problem)
    return replace(unchanged(case), result=Result.WAITING, waits_for=plan.waits_for)


def _invalid(case: Case, problem: InvalidUser) -> Outcome:
    failure = Failure(message=problem.message, action="validate", field=problem.field)
    return replace(unchanged(case), result=Result.INVALID, failures=(failure,))
