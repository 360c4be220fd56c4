"""The operator's choices the planner obeys: who may be deleted, who owns the attributes.

A `Policy` is plain data built once from the settings; the planner and the deletion guard read
it and never change it. Nothing here knows where the choices came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class DeleteMode(StrEnum):
    """Which remote users a reconcile may delete."""

    MANAGED = "managed"
    """Only users our sync state links (created or adopted here) whose local user is gone or
    inactive."""
    MIRROR = "mirror"
    """Also remote users nobody here knows, and unlinked remote users of inactive local users."""
    NEVER = "never"
    """No deletion, except the second half of a rename (the old identity's user)."""


class AttributesMode(StrEnum):
    """Who owns a remote user's attributes."""

    REPLACE = "replace"
    """The remote attributes become exactly the local ones."""
    MERGE = "merge"
    """Only the keys this service manages are written; keys others set remotely are kept."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    delete_mode: DeleteMode = DeleteMode.MANAGED
    attributes_mode: AttributesMode = AttributesMode.REPLACE
    protected_identity: re.Pattern[str] | None = None
    """Identities this pattern finds (`re.search`) are never deleted, in any delete mode;
    not even as the old user of a rename (it is left as it is, no longer linked)."""
    max_deletes_per_run: int = 100
    max_deletes_percent: float = 10.0
    max_writes_per_run: int = 1000
    max_writes_percent: float = 10.0
    max_writes_percent_floor: int = 10
    """Users a window may write however small a percent of the users in reach they are."""
    delete_grace: timedelta = timedelta(0)
    """A linked user gone or inactive locally is first suspended for this long (see
    `domain.suspension`); zero deletes it at once."""
    suspended_role: str | None = None
    """The role (sid or name) a suspended user is given; needed when `delete_grace` is set."""
    suspended_marker: str | None = None
    """Merge mode: the attribute key set to true on a suspended user (None: no marker)."""

    @property
    def suspends(self) -> bool:
        return self.delete_grace > timedelta(0)

    def protects(self, identity: str) -> bool:
        return self.protected_identity is not None and bool(
            self.protected_identity.search(identity)
        )


PLANNER_VERSION = 1
"""Raised whenever the planner would decide differently for the same source row, remote user
and state (how attributes render or compare, which fields it manages): the first full run of a
new version then plans every user again instead of trusting states an older planner wrote."""


def plan_context(policy: Policy) -> str:
    """What decides whether a synced user whose source row and remote user are as its state
    recorded needs a write: the planner and who owns the attributes (a switch to replace mode
    must drop the keys merge mode kept). Full runs skip such users in SQL only when every run
    since the last complete full run planned under the same context (`db.gather`)."""
    return f"planner={PLANNER_VERSION};attributes={policy.attributes_mode.value}"
