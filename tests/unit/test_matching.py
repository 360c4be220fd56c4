"""The in-memory matcher: the pairing the SQL join of a full run must reproduce."""

from __future__ import annotations

from service.domain.cases import Case, match_cases
from service.domain.users import SyncStatus
from tests.unit.factories import local, remote, state, user_sid


def test_pairs_a_local_user_with_the_remote_user_of_its_identity_and_its_state() -> None:
    alice, ours = local("alice", user_id="u1"), remote("alice", sid=user_sid(1))
    known = state("u1", remote_sid=user_sid(1))

    cases, orphans = match_cases([alice], [ours], [known])

    assert cases == [Case(local=alice, state=known, remote=ours, previous=None)]
    assert orphans == []


def test_a_local_user_without_remote_or_state_is_a_case_alone() -> None:
    cases, _ = match_cases([local("bob")], [], [])

    assert cases == [Case(local=local("bob"), state=None)]


def test_a_rename_pairs_the_new_identity_and_the_old_remote_user() -> None:
    renamed = local("alice-new", user_id="u1")
    old, new = remote("alice-old", sid=user_sid(1)), remote("alice-new", sid=user_sid(2))
    known = state("u1", remote_sid=old.sid, identity="alice-old")

    with_new, orphans = match_cases([renamed], [old, new], [known])
    without_new, _ = match_cases([renamed], [old], [known])

    assert with_new == [Case(local=renamed, state=known, remote=new, previous=old)]
    assert without_new == [Case(local=renamed, state=known, remote=None, previous=old)]
    assert orphans == []


def test_a_retired_user_is_the_previous_one_until_it_is_gone() -> None:
    alice = local("alice", user_id="u1")
    current, retired = remote("alice", sid=user_sid(1)), remote("alice-old", sid=user_sid(2))
    known = state("u1", remote_sid=current.sid, retired_sid=retired.sid)

    cases, orphans = match_cases([alice], [current, retired], [known])

    assert cases == [Case(local=alice, state=known, remote=current, previous=retired)]
    assert orphans == []


def test_a_removed_user_is_paired_with_the_remote_user_its_state_links() -> None:
    linked = remote("gone", sid=user_sid(1))
    known = state("u9", remote_sid=linked.sid, identity="gone")

    cases, orphans = match_cases([], [linked], [known])

    assert cases == [Case(local=None, state=known, remote=linked, previous=None)]
    assert orphans == []


def test_a_removed_user_already_deleted_is_no_case() -> None:
    deleted = state("u9", remote_sid=None, identity="gone", status=SyncStatus.DELETED)

    cases, _ = match_cases([], [], [deleted])

    assert cases == []


def test_orphans_are_remote_users_no_identity_or_state_refers_to() -> None:
    named = remote("alice", sid=user_sid(1))
    linked = remote("renamed-away", sid=user_sid(2))
    retired = remote("older", sid=user_sid(3))
    strangers = [remote("zed", sid=user_sid(5)), remote("carol", sid=user_sid(4))]
    known = state("u2", remote_sid=linked.sid, identity="renamed-away", retired_sid=retired.sid)

    _, orphans = match_cases(
        [local("alice", user_id="u1"), local("bob", user_id="u2", active=False)],
        [named, linked, retired, *strangers],
        [known],
    )

    assert orphans == sorted(strangers, key=lambda r: r.identity)


def test_an_inactive_local_users_identity_is_not_an_orphan() -> None:
    _, orphans = match_cases([local("alice", active=False)], [remote("alice")], [])

    assert orphans == []


def test_cases_come_ordered_by_user_id_whatever_the_input_order() -> None:
    users = [local(f"i{n}", user_id=f"u{n}") for n in (3, 1, 2)]
    states = [state("u0", remote_sid=None, identity="x")]

    cases, _ = match_cases(users, [], states)

    assert [c.user_id for c in cases] == ["u0", "u1", "u2", "u3"]
