"""Value objects for both sides of a reconcile.

`LocalUser` is a row of the source of truth (`internal_users` or an operator's view);
`RemoteUser` is a Conversations User as the API returns it; `SyncState` is what we stored the
last time we touched a user. All are frozen: the planner compares them, never mutates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NewType

UserId = NewType("UserId", str)
"""The identity system's stable key for a user (`internal_users.id`)."""

UserSid = NewType("UserSid", str)
"""A Conversations User sid, `US` followed by 32 hex digits."""

RoleSid = NewType("RoleSid", str)
"""A Role sid, `RL` followed by 32 hex digits."""

JsonObject = dict[str, object]


@dataclass(frozen=True, slots=True)
class LocalUser:
    """One row of the source of truth.

    `attributes` is whatever the source held: normally a JSON object already decoded (from the
    database, `attributes.Attributes`: parsed and rendered as read); a view may hand us
    anything (a list, a string that is not JSON), which validation reports per user.
    `role` is an `RL...` sid, a role's friendly name, or None for the Service's default role.
    """

    id: UserId
    identity: str
    friendly_name: str | None
    role: str | None
    attributes: object
    active: bool = True


@dataclass(frozen=True, slots=True)
class RemoteUser:
    """A Conversations (or Chat v2) User as listed or fetched. `attributes` is the raw JSON text."""

    sid: UserSid
    identity: str
    friendly_name: str | None
    role_sid: RoleSid | None
    attributes: str


@dataclass(frozen=True, slots=True)
class Role:
    """A Role of the Service; users take roles of type `service` (Chat v2: `deployment`)."""

    sid: RoleSid
    friendly_name: str
    type: str


class SyncStatus(StrEnum):
    SYNCED = "synced"
    PENDING = "pending"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    DELETED = "deleted"
    WAITING = "waiting"
    """The user's identity is still held by another user's remote user (being renamed away or
    deleted); nothing new is claimed until it is free."""
    SUSPENDED = "suspended"
    """Gone or inactive locally, within the deletion grace period: the remote user is kept,
    in the suspended role, still linked (its identity stays taken) until `delete_after`."""


@dataclass(frozen=True, slots=True)
class SyncState:
    """What this service last did for one internal user (`sync_state` row)."""

    user_id: UserId
    remote_sid: UserSid | None
    identity: str | None
    fingerprint: str | None
    status: SyncStatus
    attempts: int = 0
    last_error_code: int | None = None
    last_error_message: str | None = None
    next_attempt_at: datetime | None = None
    last_synced_at: datetime | None = None
    retired_sid: UserSid | None = None
    """After a rename: the old remote user, still to be deleted once the new one exists."""
    managed_keys: frozenset[str] = frozenset()
    """Attribute keys this service wrote last time (merge mode removes them when dropped)."""
    attempted_fingerprint: str | None = None
    """The source row's fingerprint the last attempt was made from (it failed if it differs
    from `fingerprint`): a failed user is tried again early when the row changes since."""
    delete_after: datetime | None = None
    """A suspended user: when its grace period ends and it is deleted."""
    restore_role_sid: RoleSid | None = None
    """A suspended user: the role it had before, given back on reactivation when the source
    names no role (a blank role is never sent otherwise)."""
    seen_friendly_name: str | None = None
    """The linked remote user as we last left it (the answer of our last write, or what the
    run that last recorded it read): its friendly name, role and attributes text. Incremental
    and targeted runs plan from it instead of reading the user (`remembered`); None
    `seen_attributes` means unknown (read it)."""
    seen_role_sid: RoleSid | None = None
    seen_attributes: str | None = None


def remembered(state: SyncState | None) -> RemoteUser | None:
    """The remote user our state links, as we last left it, when the state knows it: synced,
    linked, no rename to finish, its fields recorded. Anything else is read from the API."""
    if (
        state is None
        or state.status is not SyncStatus.SYNCED
        or state.remote_sid is None
        or state.identity is None
        or state.retired_sid is not None
        or state.seen_attributes is None
    ):
        return None
    return RemoteUser(
        sid=state.remote_sid,
        identity=state.identity,
        friendly_name=state.seen_friendly_name,
        role_sid=state.seen_role_sid,
        attributes=state.seen_attributes,
    )


UNCONFIRMED = frozenset({SyncStatus.PENDING, SyncStatus.FAILED, SyncStatus.QUARANTINED})
"""States whose create may have happened without its sid being recorded (a killed run, an
ambiguous failure): the remote user with the state's identity is taken to be ours."""


def claims_identity(state: SyncState) -> bool:
    """Whether the state holds its `identity` against every other user: it links the remote
    user with that identity, or a create of it may have happened unrecorded."""
    if state.status is SyncStatus.DELETED:
        return False
    return state.remote_sid is not None or state.status in UNCONFIRMED


def recorded_as(
    state: SyncState | None,
    *,
    sid: UserSid | None,
    identity: str | None,
    managed_keys: frozenset[str],
) -> bool:
    """Whether the stored state already says exactly this: synced, linked to `sid` under
    `identity`, these managed keys, no rename left to finish. If not, the run records it."""
    return (
        state is not None
        and state.status is SyncStatus.SYNCED
        and state.remote_sid == sid
        and state.identity == identity
        and state.retired_sid is None
        and state.managed_keys == managed_keys
    )


def claims(state: SyncState | None, remote: RemoteUser) -> bool:
    """Whether our state refers to this remote user: by sid, or by identity when a create of
    ours may have happened unrecorded."""
    if state is None:
        return False
    if state.remote_sid is not None:
        return remote.sid == state.remote_sid
    return state.status in UNCONFIRMED and state.identity == remote.identity
