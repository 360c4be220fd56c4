"""Reversible offboarding: a grace period between a user leaving and its remote user's deletion.

With `Policy.delete_grace` set, a remote user this service links whose local user is removed or
deactivated is not deleted at once: it is *suspended*, an update giving it the suspended role
(and, in merge mode, a marker attribute set to true), recorded as `suspended` with the moment
it is to go (`SyncState.delete_after`). The first run that sees it after that moment
(`Case.due`) deletes it. A user reactivated before then, or whose removed row comes back with
the same id, is planned like any active user: an update on the same remote user restores its
role and attributes from the source (the marker was recorded as a managed key, so merge mode
drops it), with no deletion and no new sid. The models are authentik's `suspend` delete action
and Entra's soft delete.

Rules:
- a suspension counts against the deletion guards like a deletion (`UpdateUser.guarded`), and
  so does the deletion when the grace period ends;
- a suspended user keeps its claims: its identity stays taken and its remote user is nobody
  else's to adopt, until it is deleted;
- only users this service links are suspended: mirror mode's deletions of remote users it never
  linked are made at once (there is nothing of ours to restore);
- a suspended user whose remote user drifted (its role given back by hand, say) is suspended
  again, without counting again and keeping its date;
- a suspended role the Service does not have is a problem of each user to suspend: nothing is
  written for it, its remote user stays as it is;
- with the grace period set to zero, suspended users are deleted by the next run that looks at
  them (full runs look at everyone; incremental runs at each one once its date has passed).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from service.domain import attributes
from service.domain.actions import DeleteReason, DeleteUser, FieldChange, Suspension, UpdateUser
from service.domain.cases import Case
from service.domain.policy import AttributesMode, Policy
from service.domain.roles import RoleDirectory, UnknownRole
from service.domain.users import (
    UNCONFIRMED,
    LocalUser,
    RemoteUser,
    RoleSid,
    SyncState,
    UserId,
    UserSid,
)
from service.domain.validation import InvalidUser

RemovalPlan = DeleteUser | UpdateUser | InvalidUser | None
"""What becomes of a leaving user's remote user: deleted, suspended, a problem, or nothing."""


def is_suspended(state: SyncState | None) -> bool:
    """Suspended, whatever became of it since: a failed retry of a suspended user (or of its
    deletion) keeps its date, so it is neither suspended twice nor given a new period."""
    return state is not None and state.delete_after is not None


def may_suspend(case: Case) -> bool:
    """Whether planning this case may suspend its user (then the run reads the Roles)."""
    state, local = case.state, case.local
    leaving = local is None or not local.active
    linked = state is not None and (state.remote_sid is not None or state.status in UNCONFIRMED)
    return leaving and linked


def plan_removal(
    case: Case,
    remote: RemoteUser,
    *,
    reason: DeleteReason,
    policy: Policy,
    roles: RoleDirectory,
) -> RemovalPlan:
    """The linked `remote` of a user gone (`removed`) or inactive: delete it, once the grace
    period is over (or when there is none), else suspend it."""
    user_id = case.user_id
    suspended = is_suspended(case.state)
    if not policy.suspends or (suspended and case.due):
        return DeleteUser(user_id=user_id, sid=remote.sid, identity=remote.identity, reason=reason)
    if user_id is None:
        return None
    try:
        role = roles.resolve(policy.suspended_role or "")
    except UnknownRole as e:
        return _unknown_role(case, user_id, str(e))
    changes = _changes(remote, role=role, policy=policy)
    if suspended and not changes:
        return None
    suspends = Suspension(reason=reason, grace=policy.delete_grace, role_before=remote.role_sid)
    return UpdateUser(
        user_id=user_id,
        sid=remote.sid,
        identity=remote.identity,
        changes=changes,
        managed_keys=_managed(case.state, policy),
        suspends=None if suspended else suspends,
    )


def _changes(remote: RemoteUser, *, role: RoleSid, policy: Policy) -> tuple[FieldChange, ...]:
    changes = []
    if remote.role_sid != role:
        changes.append(FieldChange("role_sid", remote.role_sid, role))
    marker = policy.suspended_marker
    if marker is not None and policy.attributes_mode is AttributesMode.MERGE:
        current = attributes.from_remote(remote.attributes) or attributes.from_value({})
        if current.value.get(marker) is not True:
            marked = current.value | {marker: True}
            changes.append(FieldChange("attributes", remote.attributes, attributes.compact(marked)))
    return tuple(changes)


def _managed(state: SyncState | None, policy: Policy) -> frozenset[str]:
    """The keys the state manages, with the marker: reactivation's merge then removes it."""
    keys = state.managed_keys if state is not None else frozenset()
    marker = policy.suspended_marker
    if marker is None or policy.attributes_mode is not AttributesMode.MERGE:
        return keys
    return keys | {marker}


def _unknown_role(case: Case, user_id: UserId, why: str) -> InvalidUser:
    identity = case.local.identity if case.local else (case.state.identity if case.state else "")
    return InvalidUser(
        user_id=user_id,
        identity=identity or "",
        field="role",
        message=(
            f"user {user_id}: cannot be suspended: USERSYNC_SUSPENDED_ROLE: {why}; its remote"
            " user is left as it is"
        ),
    )


def restored_role(state: SyncState | None) -> RoleSid | None:
    """A reactivated user whose source names no role gets back the role it had before."""
    if state is None or not is_suspended(state):
        return None
    return state.restore_role_sid


def still_suspended(
    state: SyncState | None,
    *,
    local: LocalUser | None,
    remote_sid: UserSid | None,
    suspension: Suspension | None,
) -> bool:
    """Whether a user's next state is suspended: it was just suspended, or it was before and
    is still linked to that remote user while its source row remains gone or inactive (a
    drifted suspension applied again, an inactive row changed)."""
    if suspension is not None:
        return True
    return (
        state is not None
        and is_suspended(state)
        and (local is None or not local.active)
        and remote_sid == state.remote_sid
    )


def delete_after(
    state: SyncState | None, suspension: Suspension | None, *, now: datetime
) -> datetime:
    """A suspension keeps its first date; a new one ends a grace period from now."""
    if state is not None and state.delete_after is not None:
        return state.delete_after
    return now + (suspension.grace if suspension else timedelta(0))


def role_before(state: SyncState | None, suspension: Suspension | None) -> RoleSid | None:
    """The role to give back on reactivation: the first suspension's."""
    if state is not None and is_suspended(state):
        return state.restore_role_sid
    return suspension.role_before if suspension else None
