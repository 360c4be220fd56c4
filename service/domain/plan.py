"""The planner: for one internal user, the actions that make the remote side what it should be.

A pure function of the three sides of one user (the source row, our sync state, the remote
users) plus the policy and the Service's roles, in the manner of cosmicpython's
`determine_actions`. It creates what is missing, updates only the fields that differ, adopts a
remote user with the right identity that our state does not link yet, retires the old identity's
user after a rename, and deletes what the delete mode says may go. Deletions are proposed here
and decided by `guard_deletions`, which sees all of a run's deletions at once.

Runs stream users in batches, so the unit of planning is a `Case` (`domain.batch.plan_batch`
plans a batch of them); the remote users nobody refers to are planned by `plan_orphan`.

Where the rules are silent:
- a local friendly name None leaves the remote name alone; "" clears it (None and "" compare
  equal, since the API may report a cleared name either way);
- a blank local role is no role: the Service's default on create, never touched on update;
- a protected identity is never deleted, not even as a rename's old user: the rename creates
  the new identity and leaves the protected user as it is, no longer linked;
- `never` still retires a renamed user's old identity, since a rename must not leave both;
- an equal user whose stored state is stale (not synced, other sid, identity or managed keys,
  a retired sid already gone) gets a `LinkUser`, so the recorder stores the truth;
- merged attributes over 16 KB are a problem of that user, found before any call;
- a user renamed again before the last rename's old user was deleted first finishes that
  rename (a `LinkUser` to the linked user, retiring the old one): the state keeps one retired
  sid, so starting the second rename would forget a user. The recorder leaves such a user
  pending, and the next run goes on with the new identity;
- a user whose identity another user still holds (its remote user linked, retired or being
  created by that user) waits: no action, `waits_for` names the holder. The identity is free
  once the holder's rename or removal has deleted that remote user, and the waiting user then
  gets a fresh remote user of its own; one person's Twilio user is never handed to another;
- users whose renames wait on each other in a cycle (a swap of identities) would wait forever:
  one of them (`domain.waits.cycle_breakers`) deletes its old user first, then the others go on;
- a source that repeats an id, or gives one identity to several active users, makes those
  users bad input (nothing is written for them; their existing remote users stay as they are);
- with a deletion grace period, a linked user that is removed or inactive is suspended first
  and deleted once the period is over (`domain.suspension`); reactivated before, it is an
  active user like any other, whose role comes back from the source (or, if the source names
  none, the role it had before its suspension).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from service.domain import attributes
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
from service.domain.policy import DeleteMode, Policy
from service.domain.roles import RoleDirectory
from service.domain.suspension import plan_removal, restored_role
from service.domain.users import (
    LocalUser,
    RemoteUser,
    SyncState,
    UserId,
    UserSid,
    claims,
    recorded_as,
)
from service.domain.validation import (
    DesiredUser,
    InvalidUser,
    check_identity,
    desired_user,
    repeated_in_source,
    too_long,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CasePlan:
    user_id: UserId | None
    actions: tuple[Action, ...] = ()
    problems: tuple[InvalidUser, ...] = ()
    waits_for: UserId | None = None
    """Another user holds this user's identity: nothing to do until it lets go."""

    @property
    def problem(self) -> InvalidUser | None:
        return self.problems[0] if self.problems else None

    @property
    def unchanged(self) -> bool:
        return not self.actions and not self.problems and self.waits_for is None


def plan_orphan(remote: RemoteUser, *, policy: Policy) -> DeleteUser | None:
    """A remote user no local user and no state refers to: only mirror mode deletes it."""
    if policy.delete_mode is not DeleteMode.MIRROR or policy.protects(remote.identity):
        return None
    return DeleteUser(
        user_id=None, sid=remote.sid, identity=remote.identity, reason=DeleteReason.UNKNOWN_REMOTE
    )


def plan_case(
    case: Case, *, policy: Policy, roles: RoleDirectory, let_go: bool = False
) -> CasePlan:
    """One user's actions, or its problems (then no action at all).

    Removed users (no local row) are planned from the state alone; inactive users only need
    deleting, so only their identity is checked.
    """
    local = case.local
    if local is None:
        return _deletions(case, reason=DeleteReason.REMOVED, policy=policy, roles=roles)
    if repeated := repeated_in_source(local, copies=case.copies, holders=case.holders):
        return CasePlan(user_id=local.id, problems=(repeated,))
    if (finish := _finish_rename(case)) is not None:
        return CasePlan(user_id=local.id, actions=(finish,))
    if not local.active:
        return _plan_inactive(case, local, policy=policy, roles=roles)
    desired = desired_user(local, roles=roles)
    if isinstance(desired, tuple):
        return CasePlan(user_id=local.id, problems=desired)
    return _plan_active(case, desired, policy=policy, let_go=let_go)


def _wait(case: Case, desired: DesiredUser, *, let_go: bool) -> CasePlan:
    """Wait for the holder; or, `let_go` (this user breaks a cycle of waits, see
    `domain.waits`), delete its own old user first so the others can go on."""
    previous, state = _previous(case), case.state
    linked = previous is not None and state is not None and previous.sid == state.remote_sid
    if let_go and linked and previous is not None:
        swap = _delete(previous, user_id=desired.user_id, reason=DeleteReason.SWAP)
        return CasePlan(user_id=desired.user_id, actions=(swap,))
    return CasePlan(user_id=desired.user_id, waits_for=case.holder)


def _plan_inactive(
    case: Case, local: LocalUser, *, policy: Policy, roles: RoleDirectory
) -> CasePlan:
    problem = check_identity(local)
    if problem is not None:
        return CasePlan(user_id=local.id, problems=(problem,))
    return _deletions(case, reason=DeleteReason.INACTIVE, policy=policy, roles=roles)


def _linked(remote: RemoteUser, state: SyncState | None) -> bool:
    return claims(state, remote)


def _previous(case: Case) -> RemoteUser | None:
    """The case's `previous`, if our state really points at it and it is not `remote`."""
    previous, state = case.previous, case.state
    if previous is None or state is None:
        return None
    if case.remote is not None and previous.sid == case.remote.sid:
        return None
    ours = previous.sid == state.retired_sid or claims(state, previous)
    return previous if ours else None


def _finish_rename(case: Case) -> LinkUser | None:
    """The step before a second rename: retire the first one's old user, stay linked."""
    linked, state = _previous(case), case.state
    if linked is None or state is None or state.retired_sid in (None, linked.sid):
        return None
    if state.remote_sid != linked.sid:  # `previous` is the retired user itself
        return None
    return LinkUser(
        user_id=state.user_id,
        sid=linked.sid,
        identity=linked.identity,
        retires=state.retired_sid,
        managed_keys=state.managed_keys,
    )


def _deletions(
    case: Case, *, reason: DeleteReason, policy: Policy, roles: RoleDirectory
) -> CasePlan:
    """A gone or inactive user: delete (or suspend) what the mode allows, finish any rename."""
    state, user_id = case.state, case.user_id
    found: list[Action] = []
    for remote in (_own_remote(case), _previous(case)):
        if remote is None:
            continue
        if state is not None and remote.sid == state.retired_sid:
            if not policy.protects(remote.identity):
                found.append(_delete(remote, user_id=user_id, reason=DeleteReason.RENAME))
        elif _may_delete(remote, state=state, policy=policy):
            if not _linked(remote, state):  # never ours: nothing to suspend
                found.append(_delete(remote, user_id=user_id, reason=reason))
                continue
            removal = plan_removal(case, remote, reason=reason, policy=policy, roles=roles)
            if isinstance(removal, InvalidUser):
                return CasePlan(user_id=user_id, problems=(removal,))
            found += () if removal is None else (removal,)
    return CasePlan(user_id=user_id, actions=tuple(found))


def _deletable_old(case: Case, policy: Policy) -> bool:
    """Whether a renamed user's old remote user may go: not if its identity is protected (it
    is left as it is, no longer linked)."""
    previous = _previous(case)
    return previous is None or not policy.protects(previous.identity)


def _own_remote(case: Case) -> RemoteUser | None:
    """`case.remote`, unless another user owns it (an inactive user never deletes that)."""
    if case.remote is None or (case.holder is not None and not _linked(case.remote, case.state)):
        return None
    return case.remote


def _may_delete(remote: RemoteUser, *, state: SyncState | None, policy: Policy) -> bool:
    if policy.delete_mode is DeleteMode.NEVER or policy.protects(remote.identity):
        return False
    return policy.delete_mode is DeleteMode.MIRROR or _linked(remote, state)


def _delete(remote: RemoteUser, *, user_id: UserId | None, reason: DeleteReason) -> DeleteUser:
    return DeleteUser(user_id=user_id, sid=remote.sid, identity=remote.identity, reason=reason)


def _plan_active(
    case: Case, desired: DesiredUser, *, policy: Policy, let_go: bool = False
) -> CasePlan:
    if case.holder is not None:
        return _wait(case, desired, let_go=let_go and _deletable_old(case, policy))
    previous = _previous(case)
    retires = previous.sid if _deletable_old(case, policy) and previous is not None else None
    if case.remote is None:
        return CasePlan(user_id=desired.user_id, actions=(_create(desired, retires=retires),))
    return _plan_existing(case, case.remote, desired, policy=policy, retires=retires)


def _create(desired: DesiredUser, *, retires: UserSid | None) -> CreateUser:
    return CreateUser(
        user_id=desired.user_id,
        identity=desired.identity,
        friendly_name=desired.friendly_name or None,
        attributes_json=desired.attributes.text,
        role_sid=desired.role_sid,
        retires=retires,
        managed_keys=desired.attributes.keys,
    )


def _plan_existing(
    case: Case,
    remote: RemoteUser,
    desired: DesiredUser,
    *,
    policy: Policy,
    retires: UserSid | None,
) -> CasePlan:
    state = case.state
    if desired.role_sid is None and (restore := restored_role(state)) is not None:
        desired = replace(desired, role_sid=restore)
    current = attributes.from_remote(remote.attributes)
    wanted = attributes.desired(
        desired.attributes,
        current,
        mode=policy.attributes_mode,
        managed_before=state.managed_keys if state is not None else frozenset(),
    )
    if wanted.size > attributes.MAX_ATTRIBUTES_BYTES:
        return CasePlan(user_id=desired.user_id, problems=(_merged_too_long(desired, wanted),))
    changes = _changes(remote, desired, current=current, wanted=wanted)
    action = _update_or_link(remote, desired, state=state, changes=changes, retires=retires)
    return CasePlan(user_id=desired.user_id, actions=() if action is None else (action,))


def _update_or_link(
    remote: RemoteUser,
    desired: DesiredUser,
    *,
    state: SyncState | None,
    changes: tuple[FieldChange, ...],
    retires: UserSid | None,
) -> UpdateUser | LinkUser | None:
    """Send the changes; with none, link when there is something to record."""
    keys = desired.attributes.keys
    if changes:
        return UpdateUser(
            user_id=desired.user_id,
            sid=remote.sid,
            identity=remote.identity,
            changes=changes,
            adopted=not _linked(remote, state),
            retires=retires,
            managed_keys=keys,
        )
    if retires is None and recorded_as(
        state, sid=remote.sid, identity=remote.identity, managed_keys=keys
    ):
        return None
    return LinkUser(
        user_id=desired.user_id,
        sid=remote.sid,
        identity=remote.identity,
        retires=retires,
        managed_keys=keys,
    )


def _changes(
    remote: RemoteUser,
    desired: DesiredUser,
    *,
    current: attributes.Attributes | None,
    wanted: attributes.Attributes,
) -> tuple[FieldChange, ...]:
    """The fields to send. Attributes compare as JSON values, never as texts."""
    changes = []
    name = desired.friendly_name
    if name is not None and name != (remote.friendly_name or ""):
        changes.append(FieldChange("friendly_name", remote.friendly_name, name))
    if desired.role_sid is not None and desired.role_sid != remote.role_sid:
        changes.append(FieldChange("role_sid", remote.role_sid, desired.role_sid))
    if current != wanted:
        changes.append(FieldChange("attributes", remote.attributes, wanted.text))
    return tuple(changes)


def _merged_too_long(desired: DesiredUser, wanted: attributes.Attributes) -> InvalidUser:
    return InvalidUser(
        user_id=desired.user_id,
        identity=desired.identity,
        field="attributes",
        message=(
            f"user {desired.user_id}: attributes merged with the keys others set remotely"
            f" {too_long(wanted.size)}."
        ),
    )
