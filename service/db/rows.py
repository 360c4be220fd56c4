"""Row ↔ domain value conversions shared by the repositories, and `picked`, which copies a row's
(or a value's) fields into an operator's view of it by name.

Queries select columns with fixed prefixes (`l_` local, `s_` state, `r_` remote, `p_` previous
remote) so one joined row can be cut into the domain values it holds. Rows are read by position
(the offset of each prefix is looked up once per result, not per row): a full run converts
every user, and a lookup by name per value costs more than the rest of the conversion.

Attributes are selected as text (`AS_TEXT`): the driver would hand json and jsonb over decoded
by its own JSON decoder, which reads numbers as floats and rounds them; `::text` gives the JSON
text of a jsonb, json or text column alike, and `decode_attributes` keeps every number exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from service.domain import attributes
from service.domain.users import (
    LocalUser,
    RemoteUser,
    RoleSid,
    SyncState,
    SyncStatus,
    UserId,
    UserSid,
)

Values: TypeAlias = Sequence[Any]
"""One result row, read by position: each value reader starts at its group's first column."""
if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Shown = TypeVar("Shown", bound="DataclassInstance")


def picked(kind: type[Shown], source: object, **given: Any) -> Shown:
    """A `kind` (a dataclass of plain values) with `source`'s attributes of the same names,
    but for those `given`: how an ORM row or a domain value becomes an operator's view."""
    names = [f.name for f in fields(kind) if f.name not in given]
    return kind(**{name: getattr(source, name) for name in names}, **given)


def local_user(row: Values, at: int) -> LocalUser | None:
    """`LOCAL_COLUMNS` from `row[at]` on."""
    user_id, identity, friendly_name, role, attributes, active = row[at : at + len(LOCAL_COLUMNS)]
    if user_id is None:
        return None
    return LocalUser(
        id=UserId(user_id),
        identity=identity,
        friendly_name=friendly_name,
        role=role,
        attributes=decode_attributes(attributes),
        active=bool(active),
    )


def decode_attributes(value: object) -> object:
    """The source's attributes, selected as JSON text, parsed with every number exact.

    Text holding an object is rendered here, once, as the `Attributes` validation takes as
    they are. Other text that parses is decoded (a JSON string holding JSON text is then
    validated as that text); text that does not parse or render is passed on as-is, so that
    validation can name the user and the field.
    """
    if not isinstance(value, str):
        return value
    try:
        parsed = attributes.parse(value)
        return attributes.from_parsed(parsed) if isinstance(parsed, dict) else parsed
    except attributes.AttributesError:
        return value


def sync_state(row: Values, at: int) -> SyncState | None:
    """`STATE_COLUMNS` from `row[at]` on."""
    values = row[at : at + len(STATE_COLUMNS)]
    if values[0] is None:
        return None
    user_id, remote_sid, identity, fingerprint, status, attempts, *rest = values
    error_code, error_message, next_attempt_at, last_synced_at, retired_sid, keys, tried, *more = (
        rest
    )
    delete_after, restore_role, seen_name, seen_role, seen_attributes = more
    return SyncState(
        user_id=UserId(user_id),
        remote_sid=_sid(remote_sid),
        identity=identity,
        fingerprint=fingerprint,
        status=SyncStatus(status),
        attempts=attempts,
        last_error_code=error_code,
        last_error_message=error_message,
        next_attempt_at=next_attempt_at,
        last_synced_at=last_synced_at,
        retired_sid=_sid(retired_sid),
        managed_keys=frozenset(keys or ()),
        attempted_fingerprint=tried,
        delete_after=delete_after,
        restore_role_sid=RoleSid(restore_role) if restore_role else None,
        seen_friendly_name=seen_name,
        seen_role_sid=RoleSid(seen_role) if seen_role else None,
        seen_attributes=seen_attributes,
    )


def remote_user(row: Values, at: int) -> RemoteUser | None:
    """`REMOTE_COLUMNS` from `row[at]` on."""
    sid, identity, friendly_name, role, attributes = row[at : at + len(REMOTE_COLUMNS)]
    if sid is None:
        return None
    return RemoteUser(
        sid=UserSid(sid),
        identity=identity,
        friendly_name=friendly_name,
        role_sid=RoleSid(role) if role else None,
        attributes=attributes or "{}",
    )


def _sid(value: str | None) -> UserSid | None:
    return UserSid(value) if value else None


STATE_TYPES = {
    "user_id": "text",
    "remote_sid": "text",
    "identity": "text",
    "fingerprint": "text",
    "status": "text",
    "attempts": "integer",
    "last_error_code": "integer",
    "last_error_message": "text",
    "next_attempt_at": "timestamptz",
    "last_synced_at": "timestamptz",
    "retired_sid": "text",
    "managed_keys": "text[]",
    "attempted_fingerprint": "text",
    "delete_after": "timestamptz",
    "restore_role_sid": "text",
    "seen_friendly_name": "text",
    "seen_role_sid": "text",
    "seen_attributes": "text",
}
"""The `sync_state` columns a `SyncState` holds, with their SQL types, in the order
`sync_state` reads them (and `db.records` writes them)."""
STATE_COLUMNS = tuple(STATE_TYPES)
LOCAL_COLUMNS = ("id", "identity", "friendly_name", "role", "attributes", "active")
REMOTE_COLUMNS = ("sid", "identity", "friendly_name", "role_sid", "attributes")


AS_TEXT = frozenset({"attributes"})
"""Columns selected as their text, whatever their type in the source (see the module doc)."""


def select_list(alias: str, columns: tuple[str, ...], prefix: str) -> str:
    return ", ".join(f"{_selected(alias, c)} AS {prefix}{c}" for c in columns)


def _selected(alias: str, column: str) -> str:
    return f"{alias}.{column}::text" if column in AS_TEXT else f"{alias}.{column}"
