"""Resolving the role a source row names into the sid of one of the Service's user roles.

The source may name a role by sid (`RL…`) or by friendly name. Names match exactly first, then
case-insensitively; either way the match must be unique. Only user-level roles count (type
`service` in Conversations v1, `deployment` in Chat v2): a channel or conversation role given
to a user is an error the operator has to see, not something to send and fail on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from service.domain.users import Role, RoleSid

USER_ROLE_TYPES = frozenset({"service", "deployment"})
ROLE_SID = re.compile(r"^RL[0-9a-fA-F]{32}$")
_LISTED = 10
"""How many role names an error message lists before it stops."""


class UnknownRole(ValueError):
    """The name or sid matches no user role (or more than one); the message says which."""


def names_a_role(role: str | None) -> bool:
    """A blank role is no role: the source has nothing to say about it."""
    return role is not None and bool(role.strip())


class RoleDirectory:
    """The Service's roles as read during a run; `unread()` until a user names a role."""

    __slots__ = ("_by_folded", "_by_name", "_by_sid", "_others", "_user_roles", "read")

    def __init__(self, roles: Iterable[Role], *, read: bool = True) -> None:
        listed = tuple(roles)
        self.read = read
        self._user_roles = tuple(r for r in listed if r.type in USER_ROLE_TYPES)
        self._others = tuple(r for r in listed if r.type not in USER_ROLE_TYPES)
        self._by_sid = {r.sid.lower(): r for r in self._user_roles}
        self._by_name = _index(self._user_roles, key=str)
        self._by_folded = _index(self._user_roles, key=str.casefold)

    @classmethod
    def unread(cls) -> RoleDirectory:
        """Before anyone needs them: the Roles list is one API call a run need not make."""
        return cls((), read=False)

    def name_of(self, sid: str) -> str | None:
        """The friendly name of the role with this sid, if the Service listed it."""
        role = self._by_sid.get(sid.lower()) or next(
            (r for r in self._others if r.sid.lower() == sid.lower()), None
        )
        return role.friendly_name if role else None

    def resolve(self, name_or_sid: str) -> RoleSid:
        """The sid of the user role meant, or `UnknownRole` saying why there is none."""
        if not self.read:
            raise RuntimeError("roles resolved before the Service's Roles were read")
        if ROLE_SID.match(name_or_sid):
            role = self._by_sid.get(name_or_sid.lower())
            if role is None:
                raise UnknownRole(self._not_found(name_or_sid, what="role sid"))
            return role.sid
        for candidates in (
            self._by_name.get(name_or_sid, ()),
            self._by_folded.get(name_or_sid.casefold(), ()),
        ):
            if len(candidates) == 1:
                return candidates[0].sid
            if candidates:
                raise UnknownRole(_ambiguous(name_or_sid, candidates))
        raise UnknownRole(self._not_found(name_or_sid, what="role"))

    def _not_found(self, given: str, *, what: str) -> str:
        wrong = [r for r in self._others if given in (r.sid, r.friendly_name)]
        if wrong:
            return (
                f'{what} "{given}" is a {wrong[0].type} role; a user needs a user-level role'
                f" ({self._choices()})"
            )
        return f'{what} "{given}" is not one of the Service\'s user roles ({self._choices()})'

    def _choices(self) -> str:
        if not self._user_roles:
            return "the Service lists none"
        names = [f'"{r.friendly_name}"' for r in self._user_roles[:_LISTED]]
        more = ", …" if len(self._user_roles) > _LISTED else ""
        return "they are " + ", ".join(names) + more


def _index(roles: Iterable[Role], *, key: Callable[[str], str]) -> dict[str, tuple[Role, ...]]:
    index: dict[str, tuple[Role, ...]] = {}
    for role in roles:
        name = key(role.friendly_name)
        index[name] = (*index.get(name, ()), role)
    return index


def _ambiguous(given: str, candidates: tuple[Role, ...]) -> str:
    matches = ", ".join(f'{r.sid} ("{r.friendly_name}")' for r in candidates)
    return f'role "{given}" is ambiguous: it matches {matches}; name it by sid'
