"""Adopting remote users we did not create, and renames that never leave both or neither."""

from __future__ import annotations

import pytest

from service.domain.actions import (
    Action,
    CreateUser,
    DeleteReason,
    DeleteUser,
    FieldChange,
    LinkUser,
    UpdateUser,
)
from service.domain.cases import Case
from service.domain.plan import plan_case
from service.domain.policy import DeleteMode, Policy
from service.domain.users import LocalUser, SyncState, SyncStatus, UserSid
from tests.unit.factories import CURRENT, OLD, RETIRED, ROLES, local, remote, state, user_sid

POLICY = Policy()


def actions_for(case: Case, policy: Policy = POLICY) -> tuple[Action, ...]:
    planned = plan_case(case, policy=policy, roles=ROLES)
    assert planned.problems == ()
    return planned.actions


def retires(action: Action) -> UserSid | None:
    assert not isinstance(action, DeleteUser)
    return action.retires


@pytest.mark.parametrize(
    "known",
    [
        pytest.param(None, id="with no state at all"),
        pytest.param(state(remote_sid=None, status=SyncStatus.FAILED), id="after a failed create"),
        pytest.param(state(remote_sid=user_sid(99)), id="when the linked user was deleted"),
    ],
)
def test_adopts_an_equal_remote_user_by_linking_it_without_an_api_call(
    known: SyncState | None,
) -> None:
    user = local(attributes={"a": 1})
    other = remote(attributes='{"a":1}')

    actions = actions_for(Case(local=user, state=known, remote=other))

    assert actions == (
        LinkUser(user_id=user.id, sid=CURRENT, identity="alice", managed_keys=frozenset({"a"})),
    )


def test_adopts_a_differing_remote_user_by_updating_it() -> None:
    user = local(friendly_name="Alice")

    actions = actions_for(Case(local=user, state=None, remote=remote(friendly_name="A.")))

    assert actions == (
        UpdateUser(
            user_id=user.id,
            sid=CURRENT,
            identity="alice",
            changes=(FieldChange("friendly_name", "A.", "Alice"),),
            adopted=True,
        ),
    )


def renamed_state() -> SyncState:
    return state(remote_sid=OLD, identity="alice-old")


def test_a_rename_creates_the_new_identity_and_retires_the_old_user() -> None:
    user = local("alice-new")
    old = remote("alice-old", sid=OLD)

    actions = actions_for(Case(local=user, state=renamed_state(), remote=None, previous=old))

    assert len(actions) == 1
    assert isinstance(actions[0], CreateUser)
    assert (actions[0].identity, actions[0].retires) == ("alice-new", OLD)


@pytest.mark.parametrize(
    ("new_attributes", "expected_kind"),
    [
        pytest.param("{}", LinkUser, id="an equal new identity is adopted by a link"),
        pytest.param('{"x":1}', UpdateUser, id="a differing new identity is adopted by an update"),
    ],
)
def test_a_rename_to_an_identity_that_exists_remotely_adopts_it_and_retires_the_old(
    new_attributes: str, expected_kind: type
) -> None:
    new = remote("alice-new", sid=CURRENT, attributes=new_attributes)
    old = remote("alice-old", sid=OLD)

    actions = actions_for(
        Case(local=local("alice-new"), state=renamed_state(), remote=new, previous=old)
    )

    assert len(actions) == 1
    assert isinstance(actions[0], expected_kind)
    assert retires(actions[0]) == OLD
    assert not isinstance(actions[0], CreateUser)
    assert actions[0].sid == CURRENT


def test_a_rename_whose_old_user_is_already_gone_only_creates() -> None:
    actions = actions_for(Case(local=local("alice-new"), state=renamed_state(), remote=None))

    assert [type(a) for a in actions] == [CreateUser]
    assert retires(actions[0]) is None


@pytest.mark.parametrize("mode", [pytest.param(m, id=f"in {m} delete mode") for m in DeleteMode])
def test_a_rename_retires_the_old_user_whatever_the_delete_mode(mode: DeleteMode) -> None:
    policy = Policy(delete_mode=mode)

    actions = actions_for(
        Case(
            local=local("alice-new"),
            state=renamed_state(),
            previous=remote("alice-old", sid=OLD),
        ),
        policy,
    )

    assert retires(actions[0]) == OLD


def test_a_leftover_retired_user_is_retired_with_the_link_of_the_current_user() -> None:
    leftover = state(remote_sid=CURRENT, identity="alice", retired_sid=RETIRED)

    actions = actions_for(
        Case(local=local(), state=leftover, remote=remote(), previous=remote("a0", sid=RETIRED))
    )

    assert actions == (
        LinkUser(user_id=local().id, sid=CURRENT, identity="alice", retires=RETIRED),
    )


def test_a_retired_user_that_is_already_gone_is_forgotten_by_a_link() -> None:
    leftover = state(remote_sid=CURRENT, identity="alice", retired_sid=RETIRED)

    actions = actions_for(Case(local=local(), state=leftover, remote=remote()))

    assert actions == (LinkUser(user_id=local().id, sid=CURRENT, identity="alice"),)


@pytest.mark.parametrize(
    "user",
    [
        pytest.param(None, id="after the local user was removed"),
        pytest.param(local(active=False), id="after the local user became inactive"),
    ],
)
def test_a_leftover_retired_user_is_deleted_even_in_never_mode(user: LocalUser | None) -> None:
    leftover = state(remote_sid=CURRENT, identity="alice", retired_sid=RETIRED)
    retired = remote("a0", sid=RETIRED)

    actions = actions_for(
        Case(local=user, state=leftover, remote=remote(), previous=retired),
        Policy(delete_mode=DeleteMode.NEVER),
    )

    assert actions == (
        DeleteUser(
            user_id=leftover.user_id, sid=RETIRED, identity="a0", reason=DeleteReason.RENAME
        ),
    )


def test_a_previous_user_our_state_does_not_point_at_is_never_retired() -> None:
    stranger = remote("someone", sid=user_sid(77))

    actions = actions_for(Case(local=local(), state=None, remote=None, previous=stranger))

    assert [type(a) for a in actions] == [CreateUser]
    assert retires(actions[0]) is None


def test_a_renamed_and_deactivated_user_deletes_its_old_remote_user_as_inactive() -> None:
    actions = actions_for(
        Case(
            local=local("alice-new", active=False),
            state=renamed_state(),
            previous=remote("alice-old", sid=OLD),
        )
    )

    assert actions == (
        DeleteUser(user_id=local().id, sid=OLD, identity="alice-old", reason=DeleteReason.INACTIVE),
    )


@pytest.mark.parametrize(
    "user",
    [
        pytest.param(local(identity="third"), id="renamed again"),
        pytest.param(local(identity="third", active=False), id="renamed again, then inactive"),
        pytest.param(local(identity="third", role="no such role"), id="even with a bad row"),
    ],
)
def test_a_second_rename_first_retires_the_first_renames_old_user(user: LocalUser) -> None:
    """The state keeps one retired sid: starting the second rename now would forget one."""
    midway = state(
        remote_sid=OLD, identity="second", retired_sid=RETIRED, managed_keys=frozenset({"k"})
    )
    linked = remote("second", sid=OLD)

    actions = actions_for(Case(local=user, state=midway, remote=None, previous=linked))

    assert actions == (
        LinkUser(
            user_id=user.id,
            sid=OLD,
            identity="second",
            retires=RETIRED,
            managed_keys=frozenset({"k"}),
        ),
    )
