"""Properties of the whole pipeline over generated worlds.

A world is a source table, a remote user list and our sync states, built so that every kind of
situation shows up: new users, synced ones, adoptable ones, renames (with and without the new
identity already remote), unfinished renames, removed and inactive users, stale states, unknown
remote users, invalid rows, unicode identities and arbitrary JSON attributes. `apply` plays a
plan against the remote list and the states the way the executor and the recorder would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import count
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.actions import Action, CreateUser, DeleteReason, DeleteUser, UpdateUser
from service.domain.cases import match_cases
from service.domain.guards import guard_deletions
from service.domain.policy import AttributesMode, DeleteMode, Policy
from service.domain.users import (
    LocalUser,
    RemoteUser,
    RoleSid,
    SyncState,
    SyncStatus,
    UserId,
    UserSid,
    claims,
)
from tests.unit.factories import ADMIN, DEFAULT_ROLE, MODERATOR, ROLES, USER, user_sid
from tests.unit.planning import Plan, plan

THOROUGH = settings(max_examples=200, deadline=None, database=None)
BOUNDED = settings(max_examples=100, deadline=None, database=None)
"""`database=None`: no example database on disk, so the unit tier does no I/O."""
KINDS = ("new", "synced", "adoptable", "renamed", "retired", "removed", "vanished", "stale")
PROTECTED = re.compile(r"^keep")

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=4,
)
json_objects = st.dictionaries(
    st.sampled_from("abcdé") | st.text(max_size=4), json_values, max_size=4
)
local_attributes = st.one_of(
    json_objects,
    json_objects,
    json_objects.map(lambda o: json.dumps(o, indent=1)),
    st.sampled_from([None, [1, 2], "not json", 7]),
)
remote_attributes = (
    json_objects.map(lambda o: json.dumps(o, ensure_ascii=True))
    | json_objects.map(lambda o: json.dumps(o, separators=(",", ":"), sort_keys=True))
    | st.just("not json")
)
printable = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))
identities = (
    st.text(printable, min_size=1, max_size=10)
    | st.text(printable, max_size=6).map(lambda s: "keep" + s)
    | st.from_regex(r"[a-z]{1,6}(@example\.com)?", fullmatch=True)
    | st.text(min_size=0, max_size=10)
)
local_roles = st.sampled_from(
    [None, None, None, "user", "ADMIN", "Admin", ADMIN.sid, "moderator", "channel admin", "ghost"]
)
remote_roles: st.SearchStrategy[RoleSid | None] = st.sampled_from(
    [USER.sid, ADMIN.sid, MODERATOR.sid]
)
names = st.none() | st.just("") | st.text(max_size=8)
policies = st.builds(
    Policy,
    delete_mode=st.sampled_from(DeleteMode),
    attributes_mode=st.sampled_from(AttributesMode),
    protected_identity=st.sampled_from([None, PROTECTED]),
    max_deletes_per_run=st.integers(0, 20),
    max_deletes_percent=st.floats(0, 100),
)


@dataclass
class World:
    local: list[LocalUser]
    remote: dict[UserSid, RemoteUser]
    states: dict[UserId, SyncState]
    policy: Policy
    sids: Iterator[UserSid]

    def plan(self) -> Plan:
        cases, orphans = match_cases(self.local, self.remote.values(), self.states.values())
        return plan(cases, orphans, policy=self.policy, roles=ROLES)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    kinds = draw(st.lists(st.sampled_from(KINDS), max_size=6))
    strangers = draw(st.integers(0, 3))
    taken = draw(st.lists(identities, min_size=2 * len(kinds) + strangers, unique=True))
    world = World([], {}, {}, draw(policies), (user_sid(n) for n in count(1)))
    for n, kind in enumerate(kinds):
        _add_user(draw, world, kind, user_id=UserId(f"u{n:02d}"), pair=taken[2 * n : 2 * n + 2])
    for identity in taken[2 * len(kinds) :]:
        _remote(draw, world, identity)
    return world


def _remote(draw: st.DrawFn, world: World, identity: str, like: LocalUser | None = None) -> UserSid:
    """A remote user with this identity: random, or (often) already equal to `like`."""
    sid = next(world.sids)
    user = RemoteUser(
        sid=sid,
        identity=identity,
        friendly_name=draw(names),
        role_sid=draw(remote_roles),
        attributes=draw(remote_attributes),
    )
    if like is not None and isinstance(like.attributes, dict) and draw(st.booleans()):
        resolved = ROLES.resolve(like.role) if like.role in EQUAL_ROLES else user.role_sid
        user = replace(
            user,
            friendly_name=like.friendly_name,
            role_sid=resolved,
            attributes=json.dumps(like.attributes, indent=draw(st.sampled_from([None, 2]))),
        )
    world.remote[sid] = user
    return sid


EQUAL_ROLES = ("user", "ADMIN", "Admin", ADMIN.sid, "moderator")


def _add_user(
    draw: st.DrawFn, world: World, kind: str, *, user_id: UserId, pair: list[str]
) -> None:
    identity, old = pair
    user = None
    if kind not in ("removed", "vanished"):
        user = LocalUser(
            id=user_id,
            identity=identity,
            friendly_name=draw(names),
            role=draw(local_roles),
            attributes=draw(local_attributes),
            active=draw(st.sampled_from([True, True, False])),
        )
        world.local.append(user)
    linked: UserSid | None = None
    retired: UserSid | None = None
    linked_identity = identity
    if kind in ("synced", "retired", "removed"):
        linked = _remote(draw, world, identity, user)
    if kind == "adoptable" or (kind in ("renamed", "stale") and draw(st.booleans())):
        _remote(draw, world, identity, user)
    if kind == "renamed":
        linked, linked_identity = _remote(draw, world, old, user), old
    if kind == "retired":
        retired = _remote(draw, world, old)
    if kind in ("vanished", "stale"):
        linked = UserSid(f"US{'f' * 28}{len(world.states):04x}")
    if kind not in ("new", "adoptable") or draw(st.booleans()):
        world.states[user_id] = SyncState(
            user_id=user_id,
            remote_sid=linked,
            identity=linked_identity,
            fingerprint=None,
            status=draw(st.sampled_from([SyncStatus.SYNCED, SyncStatus.SYNCED, SyncStatus.FAILED])),
            retired_sid=retired,
            managed_keys=_managed_keys(draw, user),
        )


def _managed_keys(draw: st.DrawFn, user: LocalUser | None) -> frozenset[str]:
    """Usually what we last wrote (the local keys), sometimes something older."""
    if user is not None and isinstance(user.attributes, dict) and draw(st.booleans()):
        return frozenset(user.attributes)
    return draw(st.frozensets(st.sampled_from("abcdz"), max_size=3))


def apply(world: World, actions: tuple[Action, ...]) -> None:
    """Play actions as the executor and recorder would (all deletions allowed)."""
    for action in actions:
        if isinstance(action, DeleteUser):
            _delete(world, action)
            continue
        if isinstance(action, CreateUser):
            assert action.identity not in {r.identity for r in world.remote.values()}
            sid = next(world.sids)
            world.remote[sid] = RemoteUser(
                sid=sid,
                identity=action.identity,
                friendly_name=action.friendly_name,
                role_sid=action.role_sid or DEFAULT_ROLE,
                attributes=action.attributes_json,
            )
        else:
            sid = action.sid
            assert sid in world.remote
        if isinstance(action, UpdateUser):
            world.remote[sid] = replace(world.remote[sid], **action.parameters())  # type: ignore[arg-type]
        if action.retires is not None:
            del world.remote[action.retires]
        world.states[action.user_id] = SyncState(
            user_id=action.user_id,
            remote_sid=sid,
            identity=action.identity,
            fingerprint=None,
            status=SyncStatus.SYNCED,
            managed_keys=action.managed_keys,
        )


def _delete(world: World, action: DeleteUser) -> None:
    del world.remote[action.sid]
    state = world.states.get(action.user_id) if action.user_id else None
    if state is None:
        return
    if state.remote_sid == action.sid:
        state = replace(state, remote_sid=None, status=SyncStatus.DELETED)
    if state.retired_sid == action.sid:
        state = replace(state, retired_sid=None)
    world.states[state.user_id] = state


@THOROUGH
@given(worlds())
def test_applying_a_plan_leaves_nothing_to_do_and_every_valid_user_in_place(world: World) -> None:
    planned = world.plan()
    invalid = {p.user_id for p in planned.problems}

    apply(world, planned.actions)

    assert world.plan().actions == ()
    by_identity = {r.identity: r.sid for r in world.remote.values()}
    for user in world.local:
        if user.active and user.id not in invalid:
            assert world.states[user.id].remote_sid == by_identity[user.identity]


@BOUNDED
@given(worlds(), st.randoms(use_true_random=False))
def test_planning_is_deterministic_whatever_the_input_order(world: World, rng: Random) -> None:
    first = world.plan()
    shuffled_local = list(world.local)
    shuffled_remote = list(world.remote.values())
    shuffled_states = list(world.states.values())
    for items in (shuffled_local, shuffled_remote, shuffled_states):
        rng.shuffle(items)
    cases, orphans = match_cases(shuffled_local, shuffled_remote, shuffled_states)

    assert world.plan() == first
    assert plan(cases, orphans, policy=world.policy, roles=ROLES) == first


@BOUNDED
@given(worlds(), st.booleans())
def test_no_deletion_is_allowed_after_an_incomplete_read(world: World, source_ok: bool) -> None:
    """A source read that failed deletes nothing but the old identity of a user the source still
    names (a rename, a swap); a remote listing that did not complete deletes no remote user
    nobody here names (mirror mode). A user the source names as removed or inactive is found
    by sid or in the listing the run did read, so it may still go in mirror mode."""
    deletions = world.plan().deletions

    verdict = guard_deletions(
        deletions,
        policy=world.policy,
        remote_total=len(world.remote),
        source_complete=source_ok,
        remote_complete=False,
        allow_deletes=True,
    )

    if not source_ok:
        assert all(d.reason in (DeleteReason.RENAME, DeleteReason.SWAP) for d in verdict.allowed)
    assert all(d.reason is not DeleteReason.UNKNOWN_REMOTE for d in verdict.allowed)
    assert set(verdict.allowed) | set(verdict.held) == set(deletions)


@BOUNDED
@given(worlds())
def test_only_mirror_mode_deletes_remote_users_our_state_never_linked(world: World) -> None:
    """Ours: linked, retired, or claimed by identity for a create that may have happened
    unrecorded (`users.claims`)."""
    linked = {s.remote_sid for s in world.states.values()}
    retired = {s.retired_sid for s in world.states.values()}
    claimed = {r.sid for r in world.remote.values() for s in world.states.values() if claims(s, r)}

    for deletion in world.plan().deletions:
        if world.policy.delete_mode is not DeleteMode.MIRROR:
            assert deletion.sid in linked | retired | claimed
        if world.policy.delete_mode is DeleteMode.NEVER:
            assert deletion.reason is DeleteReason.RENAME
        assert not world.policy.protects(deletion.identity)  # not even a rename's old user
