"""Small builders for the planner's inputs, so each test states only what it is about."""

from __future__ import annotations

from service.domain.attributes import Attributes
from service.domain.cases import Case
from service.domain.roles import RoleDirectory
from service.domain.users import (
    LocalUser,
    RemoteUser,
    Role,
    RoleSid,
    SyncState,
    SyncStatus,
    UserId,
    UserSid,
)


def role_sid(n: int) -> RoleSid:
    return RoleSid(f"RL{n:032x}")


def user_sid(n: int) -> UserSid:
    return UserSid(f"US{n:032x}")


USER = Role(sid=role_sid(1), friendly_name="user", type="service")
ADMIN = Role(sid=role_sid(0xAD), friendly_name="Admin", type="service")
MODERATOR = Role(sid=role_sid(3), friendly_name="moderator", type="deployment")
CHANNEL_ADMIN = Role(sid=role_sid(4), friendly_name="channel admin", type="channel")
ALL_ROLES = (USER, ADMIN, MODERATOR, CHANNEL_ADMIN)
ROLES = RoleDirectory(ALL_ROLES)
DEFAULT_ROLE = USER.sid
"""The role the Service gives a user created without RoleSid."""

OLD = user_sid(0xA)
CURRENT = user_sid(0xB)
RETIRED = user_sid(0xC)


def local(
    identity: str = "alice",
    *,
    user_id: str = "u1",
    friendly_name: str | None = None,
    role: str | None = None,
    attributes: object = None,
    active: bool = True,
) -> LocalUser:
    return LocalUser(
        id=UserId(user_id),
        identity=identity,
        friendly_name=friendly_name,
        role=role,
        attributes={} if attributes is None else attributes,
        active=active,
    )


def remote(
    identity: str = "alice",
    *,
    sid: UserSid = CURRENT,
    friendly_name: str | None = None,
    role_sid: RoleSid | None = DEFAULT_ROLE,
    attributes: str = "{}",
) -> RemoteUser:
    return RemoteUser(
        sid=sid,
        identity=identity,
        friendly_name=friendly_name,
        role_sid=role_sid,
        attributes=attributes,
    )


def state(
    user_id: str = "u1",
    *,
    remote_sid: UserSid | None = CURRENT,
    identity: str | None = "alice",
    status: SyncStatus = SyncStatus.SYNCED,
    retired_sid: UserSid | None = None,
    managed_keys: frozenset[str] = frozenset(),
) -> SyncState:
    return SyncState(
        user_id=UserId(user_id),
        remote_sid=remote_sid,
        identity=identity,
        fingerprint=None,
        status=status,
        retired_sid=retired_sid,
        managed_keys=managed_keys,
    )


def synced(
    user: LocalUser, other: RemoteUser, *, managed_keys: frozenset[str] | None = None
) -> Case:
    """The usual steady state: our state links `other`, which has the user's identity, and
    remembers the user's attribute keys as managed."""
    if managed_keys is None:
        attrs = user.attributes
        if isinstance(attrs, Attributes):
            attrs = attrs.value
        managed_keys = frozenset(attrs) if isinstance(attrs, dict) else frozenset()
    linked = state(
        user.id, remote_sid=other.sid, identity=other.identity, managed_keys=managed_keys
    )
    return Case(local=user, state=linked, remote=other)
