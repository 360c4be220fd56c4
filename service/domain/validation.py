"""Checking a source row before any API call, and turning it into what we want remotely.

A row the API would refuse (or misread) becomes an `InvalidUser` naming the user, the field and
what is wrong; that user gets no API action and every other user still plans. A valid row
becomes a `DesiredUser`: the role resolved to a sid, the attributes parsed and rendered once.
An inactive user only needs deleting, so only its identity is checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from service.domain import attributes
from service.domain.attributes import Attributes, AttributesError
from service.domain.roles import RoleDirectory, UnknownRole, names_a_role
from service.domain.users import LocalUser, RoleSid, UserId

MAX_IDENTITY = 256
MAX_FRIENDLY_NAME = 256
USER_SID = re.compile(r"^US[0-9a-fA-F]{32}$")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SURROGATE = re.compile(r"[\ud800-\udfff]")

InvalidField = Literal["id", "identity", "friendly_name", "role", "attributes"]


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidUser:
    """A source row that cannot be sent as it is; `message` is a whole sentence."""

    user_id: UserId
    identity: str
    field: InvalidField
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True, kw_only=True)
class DesiredUser:
    """A valid active source row, in the terms the API uses."""

    user_id: UserId
    identity: str
    friendly_name: str | None
    """None: leave the remote name alone. "" clears it."""
    role_sid: RoleSid | None
    """None: the Service's default role on create, never touched on update."""
    attributes: Attributes


def identity_problem(identity: object) -> str | None:
    """What is wrong with an identity, completing "identity …", or None."""
    if not isinstance(identity, str) or not identity.strip():
        return "is empty"
    if len(identity) > MAX_IDENTITY:
        return f"is {len(identity)} characters long; the API allows at most {MAX_IDENTITY}"
    if USER_SID.match(identity):
        return "looks like a user sid (US and 32 hex digits); the API would read it as a sid"
    return _text_problem(identity)


def _text_problem(text: str) -> str | None:
    control = CONTROL.search(text)
    if control:
        return f"contains the control character U+{ord(control.group()):04X}"
    surrogate = SURROGATE.search(text)
    if surrogate:
        return f"contains the lone surrogate U+{ord(surrogate.group()):04X}, which is not text"
    return None


def friendly_name_problem(name: str | None) -> str | None:
    """What is wrong with a friendly name, completing "friendly_name …", or None."""
    if name is None:
        return None
    if len(name) > MAX_FRIENDLY_NAME:
        return f"is {len(name)} characters long; the API allows at most {MAX_FRIENDLY_NAME}"
    surrogate = SURROGATE.search(name)
    if surrogate:
        return f"contains the lone surrogate U+{ord(surrogate.group()):04X}, which is not text"
    return None


def invalid(local: LocalUser, field: InvalidField, problem: str) -> InvalidUser:
    return InvalidUser(
        user_id=local.id,
        identity=local.identity,
        field=field,
        message=f"user {local.id}: {field} {problem}.",
    )


def check_identity(local: LocalUser) -> InvalidUser | None:
    problem = identity_problem(local.identity)
    return None if problem is None else invalid(local, "identity", problem)


def desired_user(
    local: LocalUser, *, roles: RoleDirectory
) -> DesiredUser | tuple[InvalidUser, ...]:
    """The user we want remotely, or every problem that stops us from sending it."""
    role = _role(local, roles=roles)
    attrs = _attributes(local)
    checked = (check_identity(local), _friendly_name(local), role, attrs)
    problems = tuple(p for p in checked if isinstance(p, InvalidUser))
    if problems or isinstance(role, InvalidUser) or isinstance(attrs, InvalidUser):
        return problems
    return DesiredUser(
        user_id=local.id,
        identity=local.identity,
        friendly_name=local.friendly_name,
        role_sid=role,
        attributes=attrs,
    )


def _friendly_name(local: LocalUser) -> InvalidUser | None:
    problem = friendly_name_problem(local.friendly_name)
    return None if problem is None else invalid(local, "friendly_name", problem)


def wanted_role(role: str | None, *, roles: RoleDirectory) -> RoleSid | None:
    """The role sid a source role text asks for: None for a blank one (the role is left as it
    is), else the role it resolves to (`UnknownRole` if none)."""
    if role is None or not names_a_role(role):
        return None
    return roles.resolve(role)


def _role(local: LocalUser, *, roles: RoleDirectory) -> RoleSid | InvalidUser | None:
    try:
        return wanted_role(local.role, roles=roles)
    except UnknownRole as e:
        return InvalidUser(
            user_id=local.id,
            identity=local.identity,
            field="role",
            message=f"user {local.id}: {e}.",
        )


def _attributes(local: LocalUser) -> Attributes | InvalidUser:
    try:
        value = attributes.from_value(local.attributes)
        size = value.size
    except AttributesError as e:
        return invalid(local, "attributes", str(e))
    except UnicodeEncodeError:
        return invalid(local, "attributes", "contain a lone surrogate, which is not text")
    if size > attributes.MAX_ATTRIBUTES_BYTES:
        return invalid(local, "attributes", too_long(size))
    return value


def too_long(size: int) -> str:
    limit = attributes.MAX_ATTRIBUTES_BYTES
    return f"are {size} bytes as compact JSON; the API allows at most {limit}"


def repeated_in_source(local: LocalUser, *, copies: int, holders: int) -> InvalidUser | None:
    """A source that repeats this user's id (`copies` rows), or gives its identity to other
    active users too (`holders` active rows): nothing can be written for such a user."""
    if copies > 1:
        return InvalidUser(
            user_id=local.id,
            identity=local.identity,
            field="id",
            message=(
                f"user {local.id}: the source has {copies} rows with this id; nothing is"
                " written for this user until it has one"
            ),
        )
    if local.active and holders > 1:
        return InvalidUser(
            user_id=local.id,
            identity=local.identity,
            field="identity",
            message=(
                f"user {local.id}: identity {local.identity!r} belongs to {holders} active"
                " users in the source; nothing is written for them until one user has it"
            ),
        )
    return None
