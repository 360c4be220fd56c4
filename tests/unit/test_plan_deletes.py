"""Which remote users each delete mode removes, and which identities are protected."""

from __future__ import annotations

import re

import pytest

from service.domain.actions import DeleteReason, DeleteUser
from service.domain.cases import Case
from service.domain.plan import plan_case, plan_orphan
from service.domain.policy import DeleteMode, Policy
from service.domain.users import SyncStatus
from tests.unit.factories import CURRENT, ROLES, local, remote, state

MANAGED, MIRROR, NEVER = DeleteMode.MANAGED, DeleteMode.MIRROR, DeleteMode.NEVER

INACTIVE_LINKED = Case(local=local(active=False), state=state(), remote=remote())
INACTIVE_UNLINKED = Case(local=local(active=False), state=None, remote=remote())
REMOVED_LINKED = Case(local=None, state=state(), remote=remote())


def deletion_reason(case: Case, mode: DeleteMode) -> DeleteReason | None:
    planned = plan_case(case, policy=Policy(delete_mode=mode), roles=ROLES)
    assert planned.problems == ()
    deletions = [a for a in planned.actions if isinstance(a, DeleteUser)]
    assert len(deletions) == len(planned.actions) <= 1
    return deletions[0].reason if deletions else None


@pytest.mark.parametrize(
    ("case", "mode", "expected"),
    [
        pytest.param(INACTIVE_LINKED, MANAGED, DeleteReason.INACTIVE,
                     id="managed deletes the user it links when the local user is inactive"),
        pytest.param(INACTIVE_UNLINKED, MANAGED, None,
                     id="managed leaves an inactive user's remote user it never linked"),
        pytest.param(REMOVED_LINKED, MANAGED, DeleteReason.REMOVED,
                     id="managed deletes the user it links when the local row is gone"),
        pytest.param(INACTIVE_LINKED, MIRROR, DeleteReason.INACTIVE,
                     id="mirror deletes a linked inactive user"),
        pytest.param(INACTIVE_UNLINKED, MIRROR, DeleteReason.INACTIVE,
                     id="mirror deletes an unlinked inactive user too"),
        pytest.param(REMOVED_LINKED, MIRROR, DeleteReason.REMOVED,
                     id="mirror deletes a removed user"),
        pytest.param(INACTIVE_LINKED, NEVER, None, id="never keeps an inactive user"),
        pytest.param(REMOVED_LINKED, NEVER, None, id="never keeps a removed user"),
    ],
)  # fmt: skip
def test_each_delete_mode_deletes_only_what_it_may(
    case: Case, mode: DeleteMode, expected: DeleteReason | None
) -> None:
    assert deletion_reason(case, mode) == expected


def test_deletes_remote_user_missing_locally() -> None:
    planned = plan_case(REMOVED_LINKED, policy=Policy(), roles=ROLES)

    assert planned.actions == (
        DeleteUser(
            user_id=state().user_id, sid=CURRENT, identity="alice", reason=DeleteReason.REMOVED
        ),
    )


@pytest.mark.parametrize(
    ("mode", "deleted"),
    [
        pytest.param(MIRROR, True, id="mirror deletes a remote user nobody here knows"),
        pytest.param(MANAGED, False, id="managed never deletes what it did not create or adopt"),
        pytest.param(NEVER, False, id="never deletes nothing"),
    ],
)
def test_only_mirror_mode_deletes_unknown_remote_users(mode: DeleteMode, deleted: bool) -> None:
    action = plan_orphan(remote("stranger"), policy=Policy(delete_mode=mode))

    expected = DeleteUser(
        user_id=None, sid=CURRENT, identity="stranger", reason=DeleteReason.UNKNOWN_REMOTE
    )
    assert action == (expected if deleted else None)


PROTECTED = re.compile(r"^(admin|bot)-")


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            Case(local=None, state=state(identity="admin-1"), remote=remote("admin-1")),
            id="a removed user with a protected identity is kept",
        ),
        pytest.param(
            Case(local=local("bot-7", active=False), state=None, remote=remote("bot-7")),
            id="an inactive user with a protected identity is kept",
        ),
    ],
)
@pytest.mark.parametrize("mode", [pytest.param(m, id=f"in {m} mode") for m in (MANAGED, MIRROR)])
def test_protected_identities_are_never_deleted(case: Case, mode: DeleteMode) -> None:
    policy = Policy(delete_mode=mode, protected_identity=PROTECTED)

    assert plan_case(case, policy=policy, roles=ROLES).unchanged


def test_a_protected_unknown_remote_user_survives_mirror_mode() -> None:
    policy = Policy(delete_mode=MIRROR, protected_identity=PROTECTED)

    assert plan_orphan(remote("admin-root"), policy=policy) is None
    assert plan_orphan(remote("user-admin-x"), policy=policy) is not None


def test_a_removed_user_already_deleted_plans_nothing() -> None:
    gone = state(remote_sid=None, status=SyncStatus.DELETED)

    assert plan_case(Case(local=None, state=gone), policy=Policy(), roles=ROLES).unchanged


def test_an_inactive_user_is_deleted_even_with_attributes_that_would_not_validate() -> None:
    user = local(active=False, attributes=[1, 2], role="no such role", friendly_name="x" * 999)

    planned = plan_case(
        Case(local=user, state=state(), remote=remote()), policy=Policy(), roles=ROLES
    )

    assert planned.problems == ()
    assert [a.kind for a in planned.actions] == ["delete"]


def test_an_inactive_user_with_nothing_remote_plans_nothing() -> None:
    case = Case(local=local(active=False), state=None)

    assert plan_case(case, policy=Policy(delete_mode=MIRROR), roles=ROLES).unchanged
