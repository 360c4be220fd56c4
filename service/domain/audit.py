"""The audit trail's entries: what the service wrote to a user, or decided not to write (pure).

An `AuditEntry` is one write the service made (a create, an update, a delete, the old user of a
rename) with the API's answer, or one it decided not to make (a deletion the guard held, a user
whose source row is invalid). `entries_of` pairs the actions the executor tried, in order, with
the API's answers to its writes, in the same order: each create, update and delete makes one
write, then a create, update or link that `retires` an old user makes one delete more, only
once its own part succeeded. `changes` summarises what the write changes: friendly name and role
old → new (a role by sid and by the name the Service gave it), and for attributes only the keys
added, removed and changed: their values are personal data, kept only when `AuditPolicy.values`
says so. Nothing here reads the clock; the database stamps each entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeAlias

from service.domain import attributes
from service.domain.actions import (
    Action,
    CreateUser,
    DeleteReason,
    DeleteUser,
    LinkUser,
    Removal,
    UpdateUser,
    removal_reason,
)
from service.domain.cases import Case
from service.domain.roles import RoleDirectory

Changes: TypeAlias = dict[str, Any]
"""A JSON object: `friendly_name`, `role`, `attributes`, each present only if it changes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditPolicy:
    enabled: bool = True
    values: bool = False
    """Keep attribute values (old and new) too, not only the keys that change."""
    retention: timedelta = timedelta(days=365)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """The API's last answer to one write (after retries): `status` None when none came."""

    operation: str
    status: int | None
    request_id: str | None = None
    twilio_code: int | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    user_id: str | None
    identity: str | None
    sid: str | None
    action: str
    outcome: str
    reason: str | None = None
    changes: Changes = field(default_factory=dict)
    http_status: int | None = None
    twilio_code: int | None = None
    request_id: str | None = None
    message: str | None = None


_OPERATIONS = {CreateUser: "create_user", UpdateUser: "update_user", DeleteUser: "delete_user"}
_DONE = {"create_user": "created", "update_user": "updated", "delete_user": "deleted"}


def entries_of(
    actions: Sequence[Action],
    answers: Sequence[Answer],
    *,
    roles: RoleDirectory,
    policy: AuditPolicy,
    created: str | None = None,
    identities: Mapping[str, str] | None = None,
) -> list[AuditEntry]:
    """One entry per write of `answers`, each with the action it answered (see the module
    docstring for how they pair); `created`, the sid a successful create made; `identities`,
    the identity of each remote user the case knew by sid (a rename's old user is deleted by
    sid, and its entry must say which identity went)."""
    entries: list[AuditEntry] = []
    left = list(answers)
    for action in actions:
        writing = None if isinstance(action, LinkUser) else action
        if writing is not None and left and left[0].operation == _OPERATIONS[type(writing)]:
            entries.append(_entry(writing, left.pop(0), roles=roles, policy=policy, new=created))
        retires = getattr(action, "retires", None)
        if retires is not None and left and left[0].operation == "delete_user":
            identity = (identities or {}).get(retires, "")
            old = DeleteUser(
                user_id=action.user_id, sid=retires, identity=identity, reason=DeleteReason.RENAME
            )
            entries.append(_entry(old, left.pop(0), roles=roles, policy=policy))
    return entries


def planned_entries(
    actions: Iterable[Action], *, roles: RoleDirectory, policy: AuditPolicy | None = None
) -> list[AuditEntry]:
    """What a dry run would record for these actions (its outcome `planned`)."""
    entries = []
    for action in actions:
        if isinstance(action, CreateUser | UpdateUser | DeleteUser):
            shown = policy or AuditPolicy()
            entries.append(_entry(action, PLANNED, roles=roles, policy=shown))
        retires = getattr(action, "retires", None)
        if retires is not None:
            entries.append(
                AuditEntry(
                    user_id=action.user_id,
                    identity=None,
                    sid=retires,
                    action="delete",
                    outcome="planned",
                    reason=str(DeleteReason.RENAME),
                )
            )
    return entries


def held_entries(held: Iterable[Removal]) -> list[AuditEntry]:
    """Deletions and suspensions the guard held: not made, with why they were planned."""
    return [
        AuditEntry(
            user_id=d.user_id,
            identity=d.identity,
            sid=d.sid,
            action=_name(d),
            outcome="held",
            reason=removal_reason(d),
        )
        for d in held
    ]


def held_write_entries(cases: Iterable[Case], *, reason: str | None) -> list[AuditEntry]:
    """Creates and updates the write guard held: not made, with the guard's sentence."""
    return [
        AuditEntry(
            user_id=c.user_id,
            identity=c.local.identity if c.local else None,
            sid=c.remote.sid if c.remote else None,
            action="update" if c.remote else "create",
            outcome="held",
            reason="write guard",
            message=reason,
        )
        for c in cases
        if c.user_id is not None
    ]


def invalid_entry(
    *, user_id: str | None, identity: str | None, field_name: str | None, message: str
) -> AuditEntry:
    """A user whose source row the service refused: nothing written, the field named."""
    return AuditEntry(
        user_id=user_id,
        identity=identity,
        sid=None,
        action="validate",
        outcome="invalid",
        reason=field_name,
        message=message,
    )


PLANNED = Answer(operation="planned", status=None)
"""A dry run's "answer": the write was not made."""


def _outcome(answer: Answer) -> str:
    """What the answer made of the write: done, `gone` (a delete of a user already deleted:
    the end state wanted), `exists` (a create of a user that exists: adopted next), failed."""
    if answer is PLANNED:
        return "planned"
    status = answer.status
    if status is not None and status < 400:
        return _DONE[answer.operation]
    if status == 404 and answer.operation == "delete_user":
        return "gone"
    if status == 409 and answer.operation == "create_user":
        return "exists"
    return "failed"


def _entry(
    action: CreateUser | UpdateUser | DeleteUser,
    answer: Answer,
    *,
    roles: RoleDirectory,
    policy: AuditPolicy,
    new: str | None = None,
) -> AuditEntry:
    """The entry of `action` as `answer` answered it; `new`, the sid a create made."""
    reason = str(action.reason) if isinstance(action, DeleteUser) else None
    if isinstance(action, UpdateUser) and action.adopted:
        reason = "adopted"
    if isinstance(action, UpdateUser) and action.suspends is not None:
        reason = removal_reason(action)
    outcome = _outcome(answer)
    made = new if outcome == "created" else None
    return AuditEntry(
        user_id=action.user_id,
        identity=action.identity or None,
        sid=made if isinstance(action, CreateUser) else action.sid,
        action=_name(action),
        outcome=outcome,
        reason=reason,
        changes=change_summary(action, roles=roles, policy=policy),
        http_status=answer.status,
        twilio_code=answer.twilio_code,
        request_id=answer.request_id,
        message=answer.message,
    )


def _name(action: CreateUser | UpdateUser | DeleteUser) -> str:
    """The action as the trail names it: a suspension is an update, and says so."""
    suspends = isinstance(action, UpdateUser) and action.suspends is not None
    return "suspend" if suspends else str(action.kind)


def change_summary(
    action: Action, *, roles: RoleDirectory, policy: AuditPolicy = AuditPolicy()
) -> Changes:
    """What the action changes: a create sets every field it sends (from none), an update the
    fields it lists; a delete or link changes no field."""
    if isinstance(action, CreateUser):
        summary: Changes = {"attributes": key_changes(None, action.attributes_json, policy=policy)}
        if action.friendly_name is not None:
            summary["friendly_name"] = {"old": None, "new": action.friendly_name}
        if action.role_sid is not None:
            summary["role"] = {"old": None, "new": _role(action.role_sid, roles)}
        return summary
    if isinstance(action, UpdateUser):
        return _update_summary(action, roles=roles, policy=policy)
    return {}


def _update_summary(action: UpdateUser, *, roles: RoleDirectory, policy: AuditPolicy) -> Changes:
    summary: Changes = {}
    for change in action.changes:
        if change.field == "friendly_name":
            summary["friendly_name"] = {"old": change.old, "new": change.new}
        elif change.field == "role_sid":
            old = None if change.old is None else _role(change.old, roles)
            summary["role"] = {"old": old, "new": _role(change.new, roles)}
        else:
            summary["attributes"] = key_changes(change.old, change.new, policy=policy)
    return summary


def _role(sid: str, roles: RoleDirectory) -> dict[str, str | None]:
    return {"sid": sid, "name": roles.name_of(sid)}


def key_changes(old: str | None, new: str, *, policy: AuditPolicy) -> Changes:
    """The attribute keys added, removed and changed from `old` to `new` (JSON objects as
    text; text that is not an object counts as no keys). Values only if the policy keeps them."""
    if old is None and not policy.values:  # a create: only the keys, read at C speed
        return {"added": sorted(_keys(new)), "removed": [], "changed": []}
    before, after = _object(old), _object(new)
    summary: Changes = {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": sorted(k for k in before.keys() & after.keys() if before[k] != after[k]),
    }
    if policy.values:
        summary["old"], summary["new"] = old, new
    return summary


def _object(text: str | None) -> dict[str, str]:
    """Each top-level key's value in its exact wire form (`100` and `100.0` differ)."""
    if text is None:
        return {}
    try:
        value = attributes.parse(text)
    except attributes.AttributesError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): attributes.compact(v) for k, v in value.items()}


def _keys(text: str) -> list[str]:
    """The top-level keys of a JSON object as text (none if it is not one)."""
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [str(k) for k in value] if isinstance(value, dict) else []
