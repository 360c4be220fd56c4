"""The deletion grace period: leaving users are suspended first, deleted when it ends, and
restored on the same remote user if they come back before."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from service.domain.actions import (
    DeleteReason,
    DeleteUser,
    FieldChange,
    LinkUser,
    Suspension,
    UpdateUser,
    describe,
)
from service.domain.backoff import FailureBackoff
from service.domain.batch import plan_batch
from service.domain.cases import Case, match_cases
from service.domain.guards import guard_deletions
from service.domain.outcome import Outcome, Result, already_recorded, state_record
from service.domain.plan import plan_case
from service.domain.policy import AttributesMode, DeleteMode, Policy
from service.domain.suspension import may_suspend
from service.domain.users import SyncState, SyncStatus, UserId
from tests.unit.factories import ADMIN, CURRENT, DEFAULT_ROLE, ROLES, local, remote, state

GRACE = timedelta(days=7)
SUSPENDED_ROLE = ADMIN  # any user role of the Service will do for the planner
POLICY = Policy(delete_grace=GRACE, suspended_role="Admin")
MERGE = replace(POLICY, attributes_mode=AttributesMode.MERGE, suspended_marker="suspended")
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
BACKOFF = FailureBackoff(base_seconds=60, cap_seconds=3600, quarantine_after=8)


def suspended_state(**kwargs: object) -> SyncState:
    return replace(
        state(status=SyncStatus.SUSPENDED),
        delete_after=NOW + GRACE,
        restore_role_sid=DEFAULT_ROLE,
        **kwargs,
    )


SUSPENSION = UpdateUser(
    user_id=UserId("u1"),
    sid=CURRENT,
    identity="alice",
    changes=(FieldChange("role_sid", DEFAULT_ROLE, SUSPENDED_ROLE.sid),),
    suspends=Suspension(reason=DeleteReason.INACTIVE, grace=GRACE, role_before=DEFAULT_ROLE),
)


def test_an_inactive_linked_user_is_suspended_not_deleted() -> None:
    case = Case(local=local(active=False), state=state(), remote=remote())

    assert plan_case(case, policy=POLICY, roles=ROLES).actions == (SUSPENSION,)


def test_a_removed_linked_user_is_suspended_not_deleted() -> None:
    case = Case(local=None, state=state(), remote=remote())

    (action,) = plan_case(case, policy=POLICY, roles=ROLES).actions
    assert isinstance(action, UpdateUser)
    assert action.suspends is not None and action.suspends.reason is DeleteReason.REMOVED


def test_without_a_grace_period_the_user_is_deleted_as_before() -> None:
    case = Case(local=local(active=False), state=state(), remote=remote())

    (action,) = plan_case(case, policy=Policy(), roles=ROLES).actions
    assert isinstance(action, DeleteUser)


def test_a_suspended_user_is_left_alone_until_its_grace_period_ends() -> None:
    remote_now = remote(role_sid=SUSPENDED_ROLE.sid)
    case = Case(local=local(active=False), state=suspended_state(), remote=remote_now)

    assert plan_case(case, policy=POLICY, roles=ROLES).unchanged


def test_a_suspended_user_is_deleted_once_due_and_the_guard_counts_it() -> None:
    remote_now = remote(role_sid=SUSPENDED_ROLE.sid)
    case = Case(local=None, state=suspended_state(), remote=remote_now, due=True)

    (action,) = plan_case(case, policy=POLICY, roles=ROLES).actions
    assert action == DeleteUser(
        user_id=UserId("u1"), sid=CURRENT, identity="alice", reason=DeleteReason.REMOVED
    )
    assert action.guarded


def test_a_suspended_user_whose_role_was_given_back_is_suspended_again_without_counting() -> None:
    case = Case(local=local(active=False), state=suspended_state(), remote=remote())

    (action,) = plan_case(case, policy=POLICY, roles=ROLES).actions
    assert isinstance(action, UpdateUser)
    assert action.changes == (FieldChange("role_sid", DEFAULT_ROLE, SUSPENDED_ROLE.sid),)
    assert not action.guarded


def test_reactivation_restores_the_role_from_the_source_on_the_same_remote_user() -> None:
    remote_now = remote(role_sid=SUSPENDED_ROLE.sid)
    case = Case(local=local(role="user"), state=suspended_state(), remote=remote_now)

    (action,) = plan_case(case, policy=POLICY, roles=ROLES).actions
    assert isinstance(action, UpdateUser) and action.sid == CURRENT
    assert action.changes == (FieldChange("role_sid", SUSPENDED_ROLE.sid, DEFAULT_ROLE),)
    assert not action.guarded


def test_reactivation_without_a_source_role_gives_back_the_role_it_had_before() -> None:
    remote_now = remote(role_sid=SUSPENDED_ROLE.sid)
    case = Case(local=local(role=None), state=suspended_state(), remote=remote_now)

    (action,) = plan_case(case, policy=POLICY, roles=ROLES).actions
    assert isinstance(action, UpdateUser)
    assert action.changes == (FieldChange("role_sid", SUSPENDED_ROLE.sid, DEFAULT_ROLE),)


def test_merge_mode_marks_a_suspended_user_and_reactivation_removes_the_marker() -> None:
    before = remote(attributes='{"team":"x"}')
    suspended = plan_case(
        Case(local=local(active=False), state=state(), remote=before), policy=MERGE, roles=ROLES
    ).actions[0]
    assert isinstance(suspended, UpdateUser)
    assert suspended.parameters()["attributes"] == '{"suspended":true,"team":"x"}'
    assert suspended.managed_keys == frozenset({"suspended"})

    after = remote(role_sid=SUSPENDED_ROLE.sid, attributes='{"suspended":true,"team":"x"}')
    back = replace(suspended_state(), managed_keys=frozenset({"suspended"}))
    (restore,) = plan_case(
        Case(local=local(role="user"), state=back, remote=after), policy=MERGE, roles=ROLES
    ).actions
    assert isinstance(restore, UpdateUser)
    assert restore.parameters() == {"role_sid": DEFAULT_ROLE, "attributes": '{"team":"x"}'}


def test_a_suspended_role_the_service_lacks_is_a_problem_naming_the_setting() -> None:
    case = Case(local=local(active=False), state=state(), remote=remote())
    policy = replace(POLICY, suspended_role="no such role")

    planned = plan_case(case, policy=policy, roles=ROLES)
    assert planned.actions == ()
    assert planned.problem is not None and "USERSYNC_SUSPENDED_ROLE" in planned.problem.message


@pytest.mark.parametrize(
    ("case", "policy"),
    [
        pytest.param(Case(local=local(active=False), state=None, remote=remote()),
                     replace(POLICY, delete_mode=DeleteMode.MIRROR),
                     id="mirror mode deletes an unlinked remote user at once"),
        pytest.param(Case(local=None, state=state(), remote=remote()),
                     replace(POLICY, delete_mode=DeleteMode.NEVER),
                     id="never mode neither deletes nor suspends"),
    ],
)  # fmt: skip
def test_only_linked_users_are_suspended(case: Case, policy: Policy) -> None:
    actions = plan_case(case, policy=policy, roles=ROLES).actions

    assert not any(isinstance(a, UpdateUser) for a in actions)


def test_suspended_users_keep_their_identity_so_a_newcomer_waits() -> None:
    newcomer = local(user_id="u2")  # the identity "alice" of the removed, suspended u1
    cases, _ = match_cases([newcomer], [remote()], [suspended_state()])

    waiting = next(c for c in cases if c.user_id == "u2")
    planned = plan_case(waiting, policy=POLICY, roles=ROLES)
    assert planned.waits_for == "u1" and planned.actions == ()


def test_suspensions_go_to_the_deletion_phase_and_count_against_the_guard() -> None:
    cases = [
        Case(local=local(f"user{n}", user_id=f"u{n}", active=False), state=state(f"u{n}",
             identity=f"user{n}", remote_sid=CURRENT), remote=remote(f"user{n}"))
        for n in range(3)
    ]  # fmt: skip
    batch = plan_batch(cases, policy=POLICY, roles=ROLES, dry_run=False)
    assert len(batch.deletions) == 3 and not batch.work

    suspensions = [a for p in batch.deletions for a in p.actions if isinstance(a, UpdateUser)]
    verdict = guard_deletions(
        suspensions,
        policy=replace(POLICY, max_deletes_per_run=2),
        remote_total=100,
        source_complete=True,
        remote_complete=False,
        allow_deletes=False,
    )
    assert verdict.allowed == () and len(verdict.held) == 3


def test_the_state_of_a_suspension_says_when_it_will_be_deleted() -> None:
    case = Case(local=local(active=False), state=state(), remote=remote())
    outcome = Outcome(
        case=case,
        result=Result.SUSPENDED,
        remote_sid=CURRENT,
        identity="alice",
        suspension=SUSPENSION.suspends,
    )

    record = state_record(outcome, now=NOW, backoff=BACKOFF)
    assert record is not None and record.status is SyncStatus.SUSPENDED
    assert record.delete_after == NOW + GRACE and record.restore_role_sid == DEFAULT_ROLE
    assert record.remote_sid == CURRENT


def test_a_suspension_applied_again_keeps_its_first_date() -> None:
    case = Case(local=local(active=False), state=suspended_state(), remote=remote())
    outcome = Outcome(case=case, result=Result.UPDATED, remote_sid=CURRENT, identity="alice")

    record = state_record(outcome, now=NOW + timedelta(days=3), backoff=BACKOFF)
    assert record is not None and record.status is SyncStatus.SUSPENDED
    assert record.delete_after == NOW + GRACE


def test_an_unchanged_suspended_user_needs_no_write() -> None:
    case = Case(local=None, state=suspended_state(), remote=remote(role_sid=ADMIN.sid))
    outcome = Outcome(case=case, result=Result.UNCHANGED, remote_sid=CURRENT, identity="alice")

    assert already_recorded(outcome)


def test_a_reactivated_user_is_synced_again_with_no_date() -> None:
    case = Case(local=local(), state=suspended_state(), remote=remote())
    link = LinkUser(user_id=UserId("u1"), sid=CURRENT, identity="alice")
    outcome = Outcome(case=case, result=Result.LINKED, remote_sid=link.sid, identity="alice")

    record = state_record(outcome, now=NOW, backoff=BACKOFF)
    assert record is not None and record.status is SyncStatus.SYNCED
    assert record.delete_after is None and record.remote_sid == CURRENT


def test_a_dry_run_line_says_the_user_would_be_suspended() -> None:
    line = describe(SUSPENSION, ROLES)

    assert line.startswith("suspend alice (user u1)") and "7 days" in line


@pytest.mark.parametrize(
    ("case", "reads"),
    [
        pytest.param(Case(local=local(active=False), state=state()), True,
                     id="an inactive linked user"),
        pytest.param(Case(local=None, state=state(remote_sid=None, status=SyncStatus.PENDING)),
                     True, id="a removed user whose create may have happened unrecorded"),
        pytest.param(Case(local=local(), state=state()), False, id="an active user"),
        pytest.param(Case(local=None, state=state(remote_sid=None, status=SyncStatus.DELETED)),
                     False, id="a user deleted before"),
    ],
)  # fmt: skip
def test_the_roles_are_read_for_every_user_a_plan_may_suspend(case: Case, reads: bool) -> None:
    assert may_suspend(case) is reads
