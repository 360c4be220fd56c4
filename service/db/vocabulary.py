"""The words our tables hold in their status columns, and the SQL that reads them.

`sync_state.status` holds a `domain.users.SyncStatus`, `sync_run.status` a
`domain.runs.RunStatus`, and `sync_deletion.state` and `sync_write.state` a `GuardState`.
Queries and the models' partial indexes spell those words from the enums here, never as
literals, so a status cannot be renamed or added with a query left behind. The words are ours,
so they are inlined as SQL literals: there is nothing to escape. Migrations keep their literal
SQL (they are history); tests/integration/test_migrations.py checks that the predicates built
here are the ones the migrations created.
"""

from __future__ import annotations

from enum import StrEnum

from service.domain.users import SyncStatus


class GuardState(StrEnum):
    """Where a guarded deletion stands in `sync_deletion` (`db.deletions`), or a guarded write
    in `sync_write` (`db.writes`, which has no `failed` rows: its CHECK allows the other two)."""

    APPLIED = "applied"
    """Decided and about to be made (or made): it counts against the window."""
    FAILED = "failed"
    """Logged, then refused by the API or no longer wanted: it does not count."""
    HELD = "held"
    """Held by a guard until an operator releases it (one row per remote sid)."""


def sql(value: StrEnum) -> str:
    """An enum's value as an SQL literal (`'synced'`)."""
    return f"'{value.value}'"


def sql_list(*values: StrEnum) -> str:
    """Enum values as an SQL list, in the order given: `('failed', 'quarantined')`."""
    return "(" + ", ".join(sql(value) for value in values) + ")"


UNCONFIRMED_ORDER = (SyncStatus.PENDING, SyncStatus.FAILED, SyncStatus.QUARANTINED)
"""`domain.users.UNCONFIRMED` in the order the migrations spell it (a set has none)."""
UNCONFIRMED = sql_list(*UNCONFIRMED_ORDER)
"""States whose create may have happened unrecorded (see `domain.users.claims`)."""
DELETED = sql(SyncStatus.DELETED)
RETRYING = sql_list(SyncStatus.FAILED, SyncStatus.QUARANTINED)
"""States of users whose last attempt failed."""


def claims_identity(alias: str | None = None) -> str:
    """The states that claim their `identity` (of table alias `alias`, if given): linked to a
    remote user, or a create that may have happened unrecorded. At most one state claims an
    identity (`uq_sync_state_claimed_identity`, whose predicate this is)."""
    o = f"{alias}." if alias else ""
    return f"{o}status <> {DELETED} AND ({o}remote_sid IS NOT NULL OR {o}status IN {UNCONFIRMED})"


def remembers_remote(alias: str) -> str:
    """The states `domain.users.remembered` plans from (of table alias `alias`): synced,
    linked, no rename to finish, the remote user's fields recorded."""
    o = f"{alias}."
    return (
        f"{o}status = {sql(SyncStatus.SYNCED)} AND {o}remote_sid IS NOT NULL"
        f" AND {o}retired_sid IS NULL AND {o}seen_attributes IS NOT NULL"
    )


HELD = f"state = {sql(GuardState.HELD)}"
"""The held rows of `sync_deletion` and `sync_write` (`uq_sync_deletion_held` and
`uq_sync_write_held`, whose predicate this is)."""


def held_here(user_id: str, *, negated: bool = False) -> str:
    """A write or a deletion of the user whose internal id is the column `user_id` is held
    for review (the rows `HELD` describes); `negated`: neither is, as two NOT EXISTS clauses
    (which Postgres plans as anti-joins, where it would not for NOT over the OR)."""
    held = [
        f"EXISTS (SELECT 1 FROM {table} h WHERE h.user_id = {user_id} AND h.{HELD})"  # noqa: S608
        for table in ("sync_write", "sync_deletion")
    ]
    return " AND ".join(f"NOT {e}" for e in held) if negated else f"({' OR '.join(held)})"
