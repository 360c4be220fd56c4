"""Row ↔ domain value conversions shared by the repositories.

Queries select columns with fixed prefixes (`l_` local, `s_` state, `r_` remote, `p_` previous
remote) so one joined row can be cut into the domain values it holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeAlias

from sqlalchemy import RowMapping

from service.domain.users import (
    LocalUser,
    RemoteUser,
    RoleSid,
    SyncState,
    SyncStatus,
    UserId,
    UserSid,
)

Row: TypeAlias = "Mapping[str, Any] | RowMapping"


def local_user(row: Row, prefix: str = "l_") -> LocalUser | None:
    if row[f"{prefix}id"] is None:
        return None
    return LocalUser(
        id=UserId(row[f"{prefix}id"]),
        identity=row[f"{prefix}identity"],
        friendly_name=row[f"{prefix}friendly_name"],
        role=row[f"{prefix}role"],
        attributes=decode_attributes(row[f"{prefix}attributes"]),
        active=bool(row[f"{prefix}active"]),
    )


def decode_attributes(value: object) -> object:
    """jsonb arrives decoded or as JSON text depending on the column type of the source.

    A view may expose a text column: text that parses is decoded, text that does not is
    passed on as-is so validation can name the user and the field.
    """
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def sync_state(row: Row, prefix: str = "s_") -> SyncState | None:
    if row[f"{prefix}user_id"] is None:
        return None
    return SyncState(
        user_id=UserId(row[f"{prefix}user_id"]),
        remote_sid=_sid(row[f"{prefix}remote_sid"]),
        identity=row[f"{prefix}identity"],
        fingerprint=row[f"{prefix}fingerprint"],
        status=SyncStatus(row[f"{prefix}status"]),
        attempts=row[f"{prefix}attempts"],
        last_error_code=row[f"{prefix}last_error_code"],
        last_error_message=row[f"{prefix}last_error_message"],
        next_attempt_at=row[f"{prefix}next_attempt_at"],
        last_synced_at=row[f"{prefix}last_synced_at"],
        retired_sid=_sid(row[f"{prefix}retired_sid"]),
        managed_keys=frozenset(row[f"{prefix}managed_keys"] or ()),
    )


def remote_user(row: Row, prefix: str) -> RemoteUser | None:
    if row[f"{prefix}sid"] is None:
        return None
    role = row[f"{prefix}role_sid"]
    return RemoteUser(
        sid=UserSid(row[f"{prefix}sid"]),
        identity=row[f"{prefix}identity"],
        friendly_name=row[f"{prefix}friendly_name"],
        role_sid=RoleSid(role) if role else None,
        attributes=row[f"{prefix}attributes"] or "{}",
    )


def _sid(value: str | None) -> UserSid | None:
    return UserSid(value) if value else None


STATE_COLUMNS = (
    "user_id",
    "remote_sid",
    "identity",
    "fingerprint",
    "status",
    "attempts",
    "last_error_code",
    "last_error_message",
    "next_attempt_at",
    "last_synced_at",
    "retired_sid",
    "managed_keys",
)
LOCAL_COLUMNS = ("id", "identity", "friendly_name", "role", "attributes", "active")
REMOTE_COLUMNS = ("sid", "identity", "friendly_name", "role_sid", "attributes")


def select_list(alias: str, columns: tuple[str, ...], prefix: str) -> str:
    return ", ".join(f"{alias}.{c} AS {prefix}{c}" for c in columns)
