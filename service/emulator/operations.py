"""The names of the API operations, used by fault filters and call counters."""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum


class Operation(StrEnum):
    CREATE_USER = "create_user"
    FETCH_USER = "fetch_user"
    UPDATE_USER = "update_user"
    DELETE_USER = "delete_user"
    LIST_USERS = "list_users"
    LIST_ROLES = "list_roles"
    FETCH_ROLE = "fetch_role"
    CREATE_ROLE = "create_role"
    UPDATE_ROLE = "update_role"
    DELETE_ROLE = "delete_role"
    FETCH_CONFIGURATION = "fetch_configuration"
    UPDATE_CONFIGURATION = "update_configuration"

    @property
    def is_write(self) -> bool:
        return self in WRITES


WRITES = frozenset(
    {
        Operation.CREATE_USER,
        Operation.UPDATE_USER,
        Operation.DELETE_USER,
        Operation.CREATE_ROLE,
        Operation.UPDATE_ROLE,
        Operation.DELETE_ROLE,
    }
)
"""The writes that share the per-Service limit and take `X-Twilio-Webhook-Enabled`; updating
the account's Configuration is neither."""


def operations_named(names: Collection[str] | None) -> frozenset[Operation] | None:
    """Validates operation names; None means "every operation"."""
    if names is None:
        return None
    if isinstance(names, str):
        raise ValueError("operations must be a collection of names, not a string")
    unknown = sorted(set(names) - {op.value for op in Operation})
    if unknown:
        known = ", ".join(op.value for op in Operation)
        raise ValueError(f"unknown operations {unknown}; known: {known}")
    return frozenset(Operation(name) for name in names)
