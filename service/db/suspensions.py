"""Suspended users as operators see them: who, which remote user, and when it will be deleted.

A suspended user (`domain.suspension`) is a `sync_state` row with a `delete_after`. `status`,
the HTTP API and the metrics read them here; a user is *due* once that moment has passed (by
the database's clock) and it is deleted by the next run that looks at it, unless the deletion
guard holds it (then it is listed with the held deletions too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import SyncStateRow
from service.db.rows import picked


@dataclass(frozen=True, slots=True)
class SuspendedUser:
    user_id: str
    identity: str | None
    sid: str | None
    status: str
    delete_after: datetime
    """When the grace period ends: the user is deleted by the first run after it."""


async def suspended_users(session: AsyncSession, *, limit: int = 1000) -> list[SuspendedUser]:
    """Suspended users, the first to be deleted first."""
    rows = await session.scalars(
        select(SyncStateRow)
        .where(SyncStateRow.delete_after.is_not(None))
        .order_by(SyncStateRow.delete_after, SyncStateRow.user_id)
        .limit(limit)
    )
    return [picked(SuspendedUser, r, sid=r.remote_sid) for r in rows]


async def count_due(session: AsyncSession) -> int:
    """Suspended users whose grace period is over and who are not deleted yet."""
    count = await session.scalar(
        select(func.count())
        .select_from(SyncStateRow)
        .where(SyncStateRow.delete_after <= func.clock_timestamp())
    )
    return int(count or 0)
