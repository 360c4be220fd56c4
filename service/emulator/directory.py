"""All Services of the emulated account, their roles and users, and the rules for changing them.

This is the state the HTTP handlers and the control API act on. It knows nothing about HTTP,
limits or faults; it validates a create or update the way Twilio does and raises `ApiError` for
anything Twilio would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import count

from service.emulator import errors
from service.emulator.errors import ApiError
from service.emulator.records import Role, RoleScope, Service, User, timestamp
from service.emulator.roles import DEFAULT_USER_ROLE, default_roles
from service.emulator.sids import ROLE_PREFIX, SERVICE_PREFIX, USER_PREFIX, SidFactory
from service.emulator.table import UserTable
from service.emulator.validation import checked_attributes, checked_identity, checked_role_sid


@dataclass(frozen=True, slots=True)
class UserFields:
    """The fields of a create or update request; None means "not given"."""

    identity: str | None = None
    friendly_name: str | None = None
    attributes: str | None = None
    role_sid: str | None = None


class Directory:
    def __init__(self, *, sids: SidFactory, default_service_sid: str) -> None:
        self._sids = sids
        self._services: dict[str, Service] = {}
        self._tables: dict[str, UserTable] = {}
        self._seq = count(1)
        self.default_service_sid = default_service_sid
        self.add_service("Default Conversation Service", sid=default_service_sid)

    def add_service(self, friendly_name: str, *, sid: str | None = None) -> Service:
        sid = sid or self._sids.new(SERVICE_PREFIX)
        roles = default_roles(sid, new_sid=lambda: self._sids.new(ROLE_PREFIX), created=timestamp())
        user_role = next(role.sid for role in roles if role.friendly_name == DEFAULT_USER_ROLE)
        service = Service(sid, friendly_name, user_role, {role.sid: role for role in roles})
        self._services[sid] = service
        self._tables[sid] = UserTable()
        return service

    def service(self, sid: str) -> Service | None:
        return self._services.get(sid)

    def services(self) -> list[Service]:
        return list(self._services.values())

    def users(self, service_sid: str) -> UserTable:
        return self._tables[service_sid]

    def create_user(self, service: Service, fields: UserFields, *, now: str | None = None) -> User:
        identity = checked_identity(fields.identity)
        attributes = "{}" if fields.attributes is None else checked_attributes(fields.attributes)
        role_sid = service.default_role_sid
        if fields.role_sid is not None:
            role_sid = checked_role_sid(fields.role_sid, service)
        table = self._tables[service.sid]
        if table.has_identity(identity):
            raise ApiError(409, errors.USER_EXISTS, "User already exists")
        now = now or timestamp()
        sid = self._sids.new(USER_PREFIX)
        user = User(
            sid=sid,
            service_sid=service.sid,
            identity=identity,
            role_sid=role_sid,
            friendly_name=fields.friendly_name,
            attributes=attributes,
            created=now,
            updated=now,
            seq=next(self._seq),
        )
        table.add(user)
        return user

    def update_user(self, service: Service, user: User, fields: UserFields) -> User:
        """Changes only the fields given; all are checked before any is applied."""
        attributes = None if fields.attributes is None else checked_attributes(fields.attributes)
        role_sid = None if fields.role_sid is None else checked_role_sid(fields.role_sid, service)
        if attributes is not None:
            user.attributes = attributes
        if role_sid is not None:
            user.role_sid = role_sid
        if fields.friendly_name is not None:
            user.friendly_name = fields.friendly_name
        user.updated = timestamp()
        return user

    def delete_user(self, user: User) -> None:
        self._tables[user.service_sid].remove(user)

    def create_role(
        self, service: Service, name: str, scope: RoleScope, permissions: tuple[str, ...]
    ) -> Role:
        """A custom role; the caller checked name, scope and permissions."""
        role = Role(self._sids.new(ROLE_PREFIX), service.sid, name, scope, permissions, timestamp())
        service.roles[role.sid] = role
        return role

    def update_role(self, service: Service, role: Role, permissions: tuple[str, ...]) -> Role:
        """Replaces the role's permissions (Twilio's update replaces, it does not add)."""
        updated = replace(role, permissions=permissions, updated=timestamp())
        service.roles[role.sid] = updated
        return updated

    def delete_role(self, service: Service, role: Role) -> None:
        """Any role but the Service's default user role, which users created without a RoleSid
        get; users holding a deleted role keep its sid."""
        if role.sid == service.default_role_sid:
            message = f"Role {role.sid} is the Service's default user role and cannot be deleted"
            raise errors.invalid_parameter(message)
        del service.roles[role.sid]
