"""Read-side queries for operators: recent runs, failing users, users by status, freshness.

Used by `user-sync status` (and the demo), the HTTP API (`GET /runs`, the vitals behind
`/metrics`), the schedule (its last successes) and `db.detail`'s views of one run; plain
values out, never ORM rows (a failing user is read as a `SyncState`, `rows.sync_state`, and
shown with its latest request id). `as_json` turns any of them into JSON for the CLI and the
API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import deletions, rows, suspensions, writes
from service.db.deletions import HeldDeletion
from service.db.models import SyncRun, SyncStateRow
from service.db.suspensions import SuspendedUser
from service.db.writes import HeldWrite
from service.domain.runs import RunStatus, Scope
from service.domain.users import SyncStatus

FAILING = (SyncStatus.FAILED, SyncStatus.QUARANTINED)


HELD_LISTED = 1000
"""Held deletions and held writes listed by `status` and `GET /runs`, oldest first; their
totals are given beside them."""


@dataclass(frozen=True, slots=True)
class RunSummary:
    id: int
    trigger: str
    scope: str
    dry_run: bool
    status: str
    started_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]
    api_calls: int
    deletions_held: int
    held_reason: str | None
    error: str | None
    users_written: int = 0
    """Distinct users the run created or updated (a dry run: would): each may count as an
    active user of the month at Twilio."""
    writes_held: int = 0
    write_held_reason: str | None = None


@dataclass(frozen=True, slots=True)
class FailingUser:
    user_id: str
    identity: str | None
    status: str
    attempts: int
    last_error_code: int | None
    last_error_message: str | None
    next_attempt_at: datetime | None
    request_id: str | None = None
    """Twilio's `Twilio-Request-Id` of the user's latest failed call, if Twilio answered it."""


@dataclass(frozen=True, slots=True)
class StatusReport:
    runs: list[RunSummary]
    failing: list[FailingUser]
    counts_by_status: dict[str, int]
    last_full_success: datetime | None
    last_incremental_success: datetime | None
    held: list[HeldDeletion]
    """Deletions held now, by whichever runs held them (released by `sync --allow-deletes`)."""
    waiting: list[FailingUser]
    """Users waiting for an identity another user still holds."""
    suspended: list[SuspendedUser] = field(default_factory=list)
    """Users in their deletion grace period, with the date each will be deleted."""
    held_writes: list[HeldWrite] = field(default_factory=list)
    """Users the write guard holds now (released by `sync --allow-writes`)."""
    held_total: int = 0
    """Deletions held now, all of them (`held` lists the first `HELD_LISTED`)."""
    held_writes_total: int = 0
    """Users whose writes are held now, all of them (`held_writes` lists the first
    `HELD_LISTED`)."""


def summarise_run(row: SyncRun) -> RunSummary:
    return rows.picked(RunSummary, row, counts=dict(row.counts))


async def recent_runs(session: AsyncSession, *, limit: int = 10) -> list[RunSummary]:
    rows = await session.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(limit))
    return [summarise_run(r) for r in rows]


_FAILING = (
    f"SELECT {rows.select_list('sync_state', rows.STATE_COLUMNS, 's_')},"  # noqa: S608
    " (SELECT e.request_id FROM sync_error e WHERE e.user_id = sync_state.user_id"
    "  ORDER BY e.id DESC LIMIT 1) AS request_id"
    " FROM sync_state WHERE sync_state.status = ANY(:statuses)"
    " ORDER BY sync_state.attempts DESC, sync_state.user_id LIMIT :limit"
)
"""Unaliased, so a column the database lacks is named as an operator knows it
(`sync_state.attempts`)."""


async def failing_users(
    session: AsyncSession, *, limit: int = 50, statuses: tuple[SyncStatus, ...] = FAILING
) -> list[FailingUser]:
    """Users in these statuses, most attempts first, with their latest failed call's id."""
    params = {"statuses": [s.value for s in statuses], "limit": limit}
    found = await session.execute(text(_FAILING), params)
    return [rows.picked(FailingUser, rows.sync_state(row, 0), request_id=row[-1]) for row in found]


async def last_success(session: AsyncSession, *, scope: Scope) -> datetime | None:
    return await session.scalar(
        select(func.max(SyncRun.finished_at)).where(
            SyncRun.scope == scope,
            SyncRun.status == RunStatus.SUCCEEDED,
            SyncRun.dry_run.is_(False),
        )
    )


async def users_by_status(session: AsyncSession) -> dict[str, int]:
    """How many users' states stand in each status (statuses nobody is in are absent)."""
    rows = await session.execute(
        select(SyncStateRow.status, func.count()).group_by(SyncStateRow.status)
    )
    return {state: int(count) for state, count in rows.all()}


async def status_report(session: AsyncSession) -> StatusReport:
    return StatusReport(
        runs=await recent_runs(session),
        failing=await failing_users(session),
        counts_by_status=await users_by_status(session),
        last_full_success=await last_success(session, scope=Scope.FULL),
        last_incremental_success=await last_success(session, scope=Scope.INCREMENTAL),
        held=await deletions.held(session, limit=HELD_LISTED),
        waiting=await failing_users(session, statuses=(SyncStatus.WAITING,)),
        suspended=await suspensions.suspended_users(session),
        held_writes=await writes.held(session, limit=HELD_LISTED),
        held_total=await deletions.count_held(session),
        held_writes_total=await writes.count_held(session),
    )


def as_json(value: Any) -> Any:
    """Dataclasses and datetimes to JSON-ready values."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: as_json(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value
