"""Read-side queries for operators: recent runs, failing users, users by status, freshness.

Used by `user-sync status` (and the demo), the HTTP API (`GET /runs`, the vitals behind
`/metrics`), the schedule (its last successes) and `db.detail`'s views of one run; plain
values out, never ORM rows. `as_json` turns any of them into JSON for the CLI and the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import deletions, writes
from service.db.deletions import HeldDeletion
from service.db.models import SyncError, SyncRun, SyncStateRow
from service.db.writes import HeldWrite
from service.domain.runs import RunStatus, Scope
from service.domain.users import SyncStatus

FAILING = (SyncStatus.FAILED, SyncStatus.QUARANTINED)


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
    held_writes: list[HeldWrite] = field(default_factory=list)
    """Users the write guard holds now (released by `sync --allow-writes`)."""


def summarise_run(row: SyncRun) -> RunSummary:
    return RunSummary(
        id=row.id,
        trigger=row.trigger,
        scope=row.scope,
        dry_run=row.dry_run,
        status=row.status,
        started_at=row.started_at,
        finished_at=row.finished_at,
        counts=dict(row.counts),
        api_calls=row.api_calls,
        deletions_held=row.deletions_held,
        held_reason=row.held_reason,
        error=row.error,
        users_written=row.users_written,
        writes_held=row.writes_held,
        write_held_reason=row.write_held_reason,
    )


async def recent_runs(session: AsyncSession, *, limit: int = 10) -> list[RunSummary]:
    rows = await session.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(limit))
    return [summarise_run(r) for r in rows]


async def failing_users(
    session: AsyncSession, *, limit: int = 50, statuses: tuple[SyncStatus, ...] = FAILING
) -> list[FailingUser]:
    latest_request = (
        select(SyncError.request_id)
        .where(SyncError.user_id == SyncStateRow.user_id)
        .order_by(SyncError.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(SyncStateRow, latest_request)
        .where(SyncStateRow.status.in_(statuses))
        .order_by(SyncStateRow.attempts.desc(), SyncStateRow.user_id)
        .limit(limit)
    )
    return [
        FailingUser(
            user_id=r.user_id,
            identity=r.identity,
            status=r.status,
            attempts=r.attempts,
            last_error_code=r.last_error_code,
            last_error_message=r.last_error_message,
            next_attempt_at=r.next_attempt_at,
            request_id=request_id,
        )
        for r, request_id in rows
    ]


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
        held=await deletions.held(session),
        waiting=await failing_users(session, statuses=(SyncStatus.WAITING,)),
        held_writes=await writes.held(session),
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
