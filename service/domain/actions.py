"""What the planner asks the executor to do, one user at a time.

Each action names the user and carries exactly what its API call needs; an update lists the
fields that change, old → new, so a dry run can show it and the executor sends only those.
`retires` on a create, update or link is the second half of a rename: the old identity's user,
deleted by the executor only once the new one exists. Actions are frozen and hashable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import ClassVar, Literal, TypeAlias

from service.domain.roles import RoleDirectory
from service.domain.users import RemoteUser, RoleSid, UserId, UserSid


class ActionKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    LINK = "link"


class DeleteReason(StrEnum):
    INACTIVE = "inactive"
    """The local user is marked inactive."""
    REMOVED = "removed"
    """The local row is gone; only our sync state remembers the user."""
    UNKNOWN_REMOTE = "unknown_remote"
    """Mirror mode: no local user and no sync state refers to this remote user."""
    RENAME = "rename"
    """The old identity's user after a rename; not a deletion the guard counts."""
    SWAP = "swap"
    """The old identity's user of a user in a cycle of renames (two users swapping identities):
    let go first, so the others can take their new identities; not counted by the guard."""


ChangedField: TypeAlias = Literal["friendly_name", "attributes", "role_sid"]
_MANAGED_FIELDS: tuple[ChangedField, ...] = ("friendly_name", "attributes", "role_sid")


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: ChangedField
    old: str | None
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Suspension:
    """Why an update suspends its user, and what the state must remember of it."""

    reason: DeleteReason
    """Inactive or removed: the deletion this suspension stands for."""
    grace: timedelta
    """How long from now until the user is deleted."""
    role_before: RoleSid | None
    """The remote user's role before, restored on reactivation if the source names none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateUser:
    """Create the user. None fields are not sent (the API's defaults apply)."""

    kind: ClassVar[ActionKind] = ActionKind.CREATE
    user_id: UserId
    identity: str
    friendly_name: str | None
    attributes_json: str
    role_sid: RoleSid | None
    retires: UserSid | None = None
    managed_keys: frozenset[str] = frozenset()

    def answered_as_meant(self, answer: RemoteUser) -> bool:
        """The created user holds what was sent (fields not sent are the Service's own)."""
        sent = {"friendly_name": self.friendly_name, "role_sid": self.role_sid}
        return answer.attributes == self.attributes_json and all(
            value is None or getattr(answer, name) == value for name, value in sent.items()
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateUser:
    """Update the fields in `changes`; `adopted`: the state did not link this user yet."""

    kind: ClassVar[ActionKind] = ActionKind.UPDATE
    user_id: UserId
    sid: UserSid
    identity: str
    changes: tuple[FieldChange, ...]
    adopted: bool = False
    retires: UserSid | None = None
    managed_keys: frozenset[str] = frozenset()
    suspends: Suspension | None = None
    """A suspension instead of a deletion: counted by the deletion guard like one."""

    @property
    def guarded(self) -> bool:
        return self.suspends is not None

    def parameters(self) -> dict[str, str]:
        """Keyword arguments for the client's update: only the fields that change."""
        return {change.field: change.new for change in self.changes}

    def answered_as_meant(self, answer: RemoteUser, *, planned_from: RemoteUser | None) -> bool:
        """The updated user holds what was sent, and the fields not sent are still what the
        plan saw (`planned_from`): no one else changed it between the plan and the write."""
        if planned_from is None:
            return False
        meant: dict[str, object] = {name: getattr(planned_from, name) for name in _MANAGED_FIELDS}
        meant.update(self.parameters())
        return all(getattr(answer, name) == value for name, value in meant.items())


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkUser:
    """No API call: record that this remote user is ours (and retire a renamed one)."""

    kind: ClassVar[ActionKind] = ActionKind.LINK
    user_id: UserId
    sid: UserSid
    identity: str
    retires: UserSid | None = None
    managed_keys: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteUser:
    kind: ClassVar[ActionKind] = ActionKind.DELETE
    user_id: UserId | None
    sid: UserSid
    identity: str
    reason: DeleteReason

    @property
    def guarded(self) -> bool:
        """Counted by the deletion guard; a rename's retirement is not."""
        return self.reason not in (DeleteReason.RENAME, DeleteReason.SWAP)


Action: TypeAlias = CreateUser | UpdateUser | LinkUser | DeleteUser
Removal: TypeAlias = DeleteUser | UpdateUser
"""What the deletion guard counts: deletions, and updates that suspend (see `guarded`)."""


def guarded(action: Action) -> bool:
    """Whether the deletion guard counts this action (a deletion, or a suspension)."""
    return isinstance(action, DeleteUser | UpdateUser) and action.guarded


def removal_reason(action: Removal) -> str:
    """A guarded action's reason as the deletion log records it."""
    if isinstance(action, UpdateUser):
        return f"suspend ({action.suspends.reason})" if action.suspends else "update"
    return str(action.reason)


_SHOWN = 120
"""Longest value a dry-run line shows before it elides the rest."""


def describe(action: Action, roles: RoleDirectory | None = None) -> str:
    """One line for the dry-run output: what would happen, to whom, and which values change;
    a role sid the Service listed in `roles` is followed by its name."""
    named = roles or RoleDirectory.unread()
    if isinstance(action, CreateUser):
        return _describe_create(action, named)
    if isinstance(action, UpdateUser):
        return _describe_update(action, named)
    if isinstance(action, LinkUser):
        line = f"link {_who(action.identity, action.user_id)} to {action.sid}"
        return line + _retiring(action.retires)
    line = f"delete {_who(action.identity, action.user_id)} {action.sid}"
    return f"{line} ({_REASONS[action.reason]})"


_REASONS = {
    DeleteReason.INACTIVE: "inactive locally",
    DeleteReason.REMOVED: "removed locally",
    DeleteReason.UNKNOWN_REMOTE: "unknown locally",
    DeleteReason.RENAME: "old identity of a renamed user",
    DeleteReason.SWAP: "old identity of a user whose new identity another user of a swap holds",
}


def _describe_create(action: CreateUser, roles: RoleDirectory) -> str:
    fields = [f"attributes {_shown(action.attributes_json)}"]
    if action.friendly_name is not None:
        fields.insert(0, f"friendly_name {_shown(action.friendly_name)}")
    if action.role_sid is not None:
        fields.append(f"role_sid {_role(action.role_sid, roles)}")
    line = f"create {_who(action.identity, action.user_id)}: " + ", ".join(fields)
    return line + _retiring(action.retires)


def _describe_update(action: UpdateUser, roles: RoleDirectory) -> str:
    verb = "adopt and update" if action.adopted else "update"
    changes = ", ".join(_change(c, roles) for c in action.changes) or "nothing to change"
    if action.suspends is not None:
        verb = "suspend"
        changes += f" ({_REASONS[action.suspends.reason]}; deleted in {action.suspends.grace})"
    line = f"{verb} {_who(action.identity, action.user_id)} {action.sid}: {changes}"
    return line + _retiring(action.retires)


def _change(change: FieldChange, roles: RoleDirectory) -> str:
    if change.field == "role_sid":
        old = "none" if change.old is None else _role(change.old, roles)
        return f"role_sid {old} → {_role(change.new, roles)}"
    return f"{change.field} {_shown(change.old)} → {_shown(change.new)}"


def _role(sid: str, roles: RoleDirectory) -> str:
    name = roles.name_of(sid)
    return _shown(sid) if name is None else f"{_shown(sid)} ({_shown(name)})"


def _who(identity: str, user_id: UserId | None) -> str:
    return f"{_shown(identity)} (user {user_id})" if user_id is not None else _shown(identity)


def _retiring(sid: UserSid | None) -> str:
    return "" if sid is None else f", then delete the old identity's user {sid}"


def _shown(value: str | None) -> str:
    if value is None:
        return "none"
    text = value if value.isprintable() and value.strip() == value and value else repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"
