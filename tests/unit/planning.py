"""A whole world planned at once: every case, then the remote users nobody refers to.

Runs plan a batch at a time (`domain.batch.plan_batch`) and the orphans after it; the unit
properties state their invariants over one world, so they plan it in one call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.domain.actions import Action, DeleteUser
from service.domain.cases import Case
from service.domain.plan import CasePlan, plan_case, plan_orphan
from service.domain.policy import Policy
from service.domain.roles import RoleDirectory
from service.domain.users import RemoteUser
from service.domain.validation import InvalidUser


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    cases: tuple[CasePlan, ...]
    orphans: tuple[DeleteUser, ...] = ()

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(a for c in self.cases for a in c.actions) + self.orphans

    @property
    def problems(self) -> tuple[InvalidUser, ...]:
        return tuple(p for c in self.cases for p in c.problems)

    @property
    def deletions(self) -> tuple[DeleteUser, ...]:
        return tuple(a for a in self.actions if isinstance(a, DeleteUser))


def plan(
    cases: Iterable[Case],
    orphans: Iterable[RemoteUser] = (),
    *,
    policy: Policy,
    roles: RoleDirectory,
) -> Plan:
    planned = tuple(plan_case(case, policy=policy, roles=roles) for case in cases)
    deletions = (plan_orphan(remote, policy=policy) for remote in orphans)
    return Plan(cases=planned, orphans=tuple(d for d in deletions if d is not None))
