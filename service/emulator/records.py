"""The emulator's stored resources: Services, their Roles and their Users.

Stored once, in a neutral form; `representation.py` renders them for each URL form. Timestamps
are kept as the ISO 8601 strings Twilio returns (second resolution, `Z`), so listing is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


def timestamp(moment: datetime | None = None) -> str:
    """Twilio's wire format for dates: `2019-12-16T22:18:37Z`."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


class RoleScope(StrEnum):
    """What a role applies to: v1 says `service`/`conversation`, v2 `deployment`/`channel`."""

    SERVICE = "service"
    CONVERSATION = "conversation"


@dataclass(frozen=True, slots=True)
class Role:
    sid: str
    service_sid: str
    friendly_name: str
    scope: RoleScope
    permissions: tuple[str, ...]
    created: str
    updated: str | None = None
    """None until the role's permissions are first changed."""


@dataclass(slots=True)
class User:
    """One user; `seq` is its creation sequence number, the stable ordering key for paging."""

    sid: str
    service_sid: str
    identity: str
    role_sid: str
    friendly_name: str | None
    attributes: str
    created: str
    updated: str
    seq: int


@dataclass(slots=True)
class Service:
    sid: str
    friendly_name: str
    default_role_sid: str
    roles: dict[str, Role] = field(default_factory=dict)
    """By sid, in creation order (dicts keep insertion order)."""
