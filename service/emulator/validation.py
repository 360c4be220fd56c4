"""Checks on the fields of a user or role create or update, with Twilio's codes for each
refusal.

Pure functions: each takes the raw form value and returns the value to store, or raises the
`ApiError` Twilio would answer with.
"""

from __future__ import annotations

import json
from decimal import Decimal

from service.emulator import errors
from service.emulator.errors import ApiError
from service.emulator.records import RoleScope, Service
from service.emulator.roles import (
    PERMISSIONS,
    V1_ROLE_TYPES,
    V2_ROLE_TYPES,
    chat_permission,
    scope_named,
    stored_permission,
)
from service.emulator.sids import sid_pattern

IDENTITY_MAX_CHARS = 256
ATTRIBUTES_MAX_BYTES = 16 * 1024
ROLE_NAME_MAX_CHARS = 64
_ROLE_SID = sid_pattern("RL")


def checked_identity(value: str | None) -> str:
    if not value:
        raise ApiError(400, errors.IDENTITY_MISSING, "Missing required parameter Identity")
    if len(value) > IDENTITY_MAX_CHARS:
        message = f"Identity is too long: {len(value)} characters, at most {IDENTITY_MAX_CHARS}"
        raise ApiError(400, errors.IDENTITY_TOO_LONG, message)
    return value


def checked_attributes(value: str) -> str:
    """A JSON object as a string, at most 16 KB; stored verbatim, as Twilio does.

    Numbers are read as Decimals only to check the text: read as ints, Python would refuse one
    of more than 4300 digits, which is JSON all the same.
    """
    size = len(value.encode("utf-8"))
    if size > ATTRIBUTES_MAX_BYTES:
        message = f"Attributes are too long: {size} bytes, at most {ATTRIBUTES_MAX_BYTES}"
        raise ApiError(400, errors.ATTRIBUTES_TOO_LONG, message)
    try:
        parsed = json.loads(value, parse_int=Decimal, parse_float=Decimal)
    except ValueError:
        raise ApiError(400, errors.ATTRIBUTES_INVALID, "Attributes is not valid JSON") from None
    except RecursionError:
        message = "Attributes nest objects or arrays too deeply to read"
        raise ApiError(400, errors.ATTRIBUTES_INVALID, message) from None
    if not isinstance(parsed, dict):
        raise ApiError(400, errors.ATTRIBUTES_INVALID, "Attributes must be a JSON object")
    return value


def checked_role_sid(value: str, service: Service) -> str:
    """A service-level role of this very service."""
    role = service.roles.get(value) if _ROLE_SID.match(value) else None
    if role is None or role.scope is not RoleScope.SERVICE:
        raise ApiError(400, errors.ROLE_NOT_FOUND, f"Role not found: {value}")
    return value


def checked_role_name(value: str | None) -> str:
    if not value:
        raise errors.invalid_parameter("Missing required parameter FriendlyName")
    if len(value) > ROLE_NAME_MAX_CHARS:
        message = (
            f"FriendlyName is too long: {len(value)} characters, at most {ROLE_NAME_MAX_CHARS}"
        )
        raise errors.invalid_parameter(message)
    return value


def checked_role_type(value: str | None, *, chat: bool) -> RoleScope:
    scope = scope_named(value, chat=chat)
    if scope is None:
        names = sorted((V2_ROLE_TYPES if chat else V1_ROLE_TYPES).values())
        raise errors.invalid_parameter(f"Type must be one of {names}, not {value!r}")
    return scope


def checked_permissions(values: list[str], scope: RoleScope, *, chat: bool) -> tuple[str, ...]:
    """The permissions of a create or update (stored by their v1 names, each once); each must
    be one a role of this scope can grant, named as the request's API version names it."""
    if not values:
        raise errors.invalid_parameter("Missing required parameter Permission")
    allowed = {chat_permission(p) if chat else p for p in PERMISSIONS[scope]}
    unknown = [value for value in values if value not in allowed]
    if unknown:
        kind = (V2_ROLE_TYPES if chat else V1_ROLE_TYPES)[scope]
        message = f"Invalid Permission {unknown[0]!r} for a {kind} role; allowed: {sorted(allowed)}"
        raise errors.invalid_parameter(message)
    return tuple(dict.fromkeys(stored_permission(value, chat=chat) for value in values))
