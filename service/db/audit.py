"""The audit trail in Postgres (`sync_audit`): written in batches, read by user and by run.

A batch of entries is one statement (`INSERT … SELECT` over one JSON array), in the recorder's
transaction of that batch's outcomes, so a trail entry exists exactly when the outcome it
describes was recorded; the run's trigger and scope come from its `sync_run` row. Rows are
never updated (a trigger refuses it); the pruner deletes the ones past the retention a batch
at a time, each batch its own short transaction, at most `PRUNE_BATCHES` of them per run, so a
backlog is worked off over a few runs instead of holding up one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.domain.audit import AuditEntry

PRUNE_BATCH = 5000
PRUNE_BATCHES = 20

_COLUMNS = {
    "user_id": "text",
    "identity": "text",
    "sid": "text",
    "action": "text",
    "outcome": "text",
    "reason": "text",
    "changes": "jsonb",
    "http_status": "integer",
    "twilio_code": "integer",
    "request_id": "text",
    "message": "text",
}
_NAMES = ", ".join(_COLUMNS)
_RECORD = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS.items())
_VALUES = ", ".join(f"e.{name}" for name in _COLUMNS)

# every name in these statements is a constant of this module
_INSERT = text(
    f"INSERT INTO sync_audit (run_id, service_key, trigger, scope, {_NAMES})"  # noqa: S608
    f" SELECT r.id, r.service_key, r.trigger, r.scope, {_VALUES}"
    f" FROM sync_run r, jsonb_to_recordset(CAST(:entries AS jsonb)) AS e({_RECORD})"
    " WHERE r.id = :run"
)
_INSERT_AGAIN = text(
    f"INSERT INTO sync_audit (run_id, service_key, trigger, scope, {_NAMES})"  # noqa: S608
    f" SELECT r.id, r.service_key, r.trigger, r.scope, {_VALUES}"
    f" FROM sync_run r, jsonb_to_recordset(CAST(:entries AS jsonb)) AS e({_RECORD})"
    " WHERE r.id = :run AND NOT EXISTS (SELECT 1 FROM (SELECT a.outcome, a.sid, a.reason,"
    "  a.message FROM sync_audit a WHERE a.user_id = e.user_id"
    "  ORDER BY a.at DESC, a.id DESC LIMIT 1) last WHERE last.outcome = e.outcome"
    "  AND last.sid IS NOT DISTINCT FROM e.sid AND last.reason IS NOT DISTINCT FROM e.reason"
    "  AND last.message IS NOT DISTINCT FROM e.message)"
)
"""Decisions a run takes again and again (a deletion held until an operator releases it, a
source row that stays invalid): recorded once, not again while the user's latest entry says
the same."""
_PRUNE = text(
    "DELETE FROM sync_audit WHERE ctid IN (SELECT ctid FROM sync_audit"
    " WHERE at < :before AND service_key = :service_key LIMIT :batch)"
)
"""One Service's entries only: each is pruned by the retention its own replicas run with."""


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An entry as stored: the entry, its id, time and run."""

    id: int
    at: datetime
    run_id: int
    trigger: str
    scope: str
    entry: AuditEntry


async def save(
    session: AsyncSession, entries: Sequence[AuditEntry], *, run_id: int, again: bool = False
) -> None:
    """Append these entries of run `run_id`; `again`: decisions against a write, which are
    not repeated (`_INSERT_AGAIN`)."""
    if entries:
        rows = json.dumps([{name: getattr(e, name) for name in _COLUMNS} for e in entries])
        statement = _INSERT_AGAIN if again else _INSERT
        await session.execute(statement, {"entries": rows, "run": run_id})


async def prune(
    sessions: async_sessionmaker[AsyncSession], *, before: datetime, service_key: str
) -> int:
    """Delete the Service's entries older than `before`, a batch per transaction; how many
    went."""
    pruned = 0
    values = {"before": before, "batch": PRUNE_BATCH, "service_key": service_key}
    for _ in range(PRUNE_BATCHES):
        async with sessions.begin() as session:
            result = await session.execute(_PRUNE, values)
        count = int(getattr(result, "rowcount", 0) or 0)
        pruned += count
        if count < PRUNE_BATCH:
            break
    return pruned


_SELECT = (
    "SELECT id, at, run_id, trigger, scope, user_id, identity, sid, action, outcome, reason,"
    " changes, http_status, twilio_code, request_id, message FROM sync_audit"
)


async def of_user(
    session: AsyncSession, key: str, *, limit: int, before: int | None = None
) -> list[AuditRow]:
    """A user's entries, newest first: `key` is its internal id, or else the identity its
    state holds (as `GET /users/{key}` resolves it: an id first, so a user whose id is another
    user's identity never shows the other's entries); `before`, an entry id, pages back."""
    statement = text(
        f"{_SELECT} WHERE user_id = ANY(CASE"  # noqa: S608
        " WHEN EXISTS (SELECT 1 FROM sync_state WHERE user_id = :key)"
        "  OR EXISTS (SELECT 1 FROM sync_audit WHERE user_id = :key)"
        " THEN ARRAY[CAST(:key AS text)]"
        " ELSE ARRAY(SELECT user_id FROM sync_state WHERE identity = :key) END)"
        " AND (CAST(:before AS bigint) IS NULL OR id < :before)"
        " ORDER BY at DESC, id DESC LIMIT :limit"
    )
    rows = await session.execute(statement, {"key": key, "before": before, "limit": limit})
    return [_row(r._mapping) for r in rows]


async def of_run(
    session: AsyncSession, run_id: int, *, limit: int, after: int | None = None
) -> list[AuditRow]:
    """A run's entries in the order they were written; `after`, an entry id, pages on."""
    statement = text(
        f"{_SELECT} WHERE run_id = :run"
        " AND (CAST(:after AS bigint) IS NULL OR id > :after) ORDER BY id LIMIT :limit"
    )
    rows = await session.execute(statement, {"run": run_id, "after": after, "limit": limit})
    return [_row(r._mapping) for r in rows]


async def run_exists(session: AsyncSession, run_id: int) -> bool:
    found = await session.scalar(text("SELECT 1 FROM sync_run WHERE id = :run"), {"run": run_id})
    return found is not None


def _row(m: Any) -> AuditRow:
    entry = AuditEntry(**{name: m[name] for name in _COLUMNS})
    return AuditRow(
        id=m["id"],
        at=m["at"],
        run_id=m["run_id"],
        trigger=m["trigger"],
        scope=m["scope"],
        entry=entry,
    )
