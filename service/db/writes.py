"""The write log behind the write guard: users written, bounded over a rolling window.

Every user a guarded run decides to create or update is logged `applied` before it is written,
so the next run, of any scope on any replica, counts it against the window; the window counts
distinct users, so a user written by a full run and by an event within the window counts once.
Writes the guard holds are kept as `held` rows, one per user however many runs held them again:
`status`, the HTTP API and the metrics show them, and a run with `allow_writes` releases them
(each held user is still planned by the runs that look at it: its state is not touched). A
user a run looks at and no longer plans to write (its source row was put back) loses its held
row, and so does a user no run can look at any more: in neither the source nor `sync_state` (a
new user whose create was held, then whose row was removed). Writes of an initial sync or of
`allow_writes` are not logged: they spend no budget.

The decision is made under a per-Service transaction lock (`lock_window`), so two runs never
both spend the window's last writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import locks
from service.db.models import SyncWrite
from service.db.rows import picked
from service.db.source import Source
from service.db.vocabulary import HELD, GuardState, sql


@dataclass(frozen=True, slots=True)
class Write:
    user_id: str
    identity: str | None


@dataclass(frozen=True, slots=True)
class HeldWrite:
    user_id: str
    identity: str | None
    held_reason: str | None
    run_id: int
    held_at: datetime


async def lock_window(session: AsyncSession, *, service_key: str) -> None:
    """Serialise write decisions of this Service until the transaction ends."""
    await locks.hold_for_transaction(session, locks.lock_key("writes", service_key))


async def written_within(
    session: AsyncSession,
    *,
    service_key: str,
    window: timedelta,
    run_id: int,
    besides: Sequence[str],
) -> int:
    """Distinct users logged `applied` within the last `window` or by run `run_id` (a run's
    own writes count in each of its decisions, whatever the window: at 0, each run alone),
    other than `besides`."""
    count = await session.scalar(
        select(func.count(func.distinct(SyncWrite.user_id))).where(
            SyncWrite.service_key == service_key,
            SyncWrite.state == GuardState.APPLIED,
            or_(SyncWrite.decided_at > func.now() - window, SyncWrite.run_id == run_id),
            SyncWrite.user_id.not_in(list(besides)),
        )
    )
    return int(count or 0)


async def log_applied(
    session: AsyncSession, writes: Sequence[Write], *, service_key: str, run_id: int
) -> None:
    """Writes about to be made: logged against the window."""
    if writes:
        await session.execute(
            insert(SyncWrite),
            [
                _row(w, service_key=service_key, run_id=run_id, state=GuardState.APPLIED)
                for w in writes
            ],
        )


async def release(session: AsyncSession, user_ids: Sequence[str], *, service_key: str) -> None:
    """These users are being written: no longer held."""
    await forget_held(session, service_key=service_key, user_ids=user_ids, keep=())


async def hold(
    session: AsyncSession,
    writes: Sequence[Write],
    *,
    service_key: str,
    run_id: int,
    why: str | None,
) -> set[str]:
    """Keep these writes held (one row per user, refreshed by every run that holds it); the
    users this run had not held yet (a follow-up pass may look at a user its run held)."""
    if not writes:
        return set()
    rows = [
        _row(w, service_key=service_key, run_id=run_id, state=GuardState.HELD)
        | {"held_reason": why}
        for w in writes
    ]
    statement = insert(SyncWrite).values(rows)
    fresh = await session.scalars(
        statement.on_conflict_do_update(
            index_elements=[SyncWrite.service_key, SyncWrite.user_id],
            index_where=text(HELD),
            set_={
                "run_id": statement.excluded.run_id,
                "held_reason": statement.excluded.held_reason,
                "identity": statement.excluded.identity,
                "decided_at": func.now(),
            },
            where=SyncWrite.run_id.is_distinct_from(statement.excluded.run_id),
        ).returning(SyncWrite.user_id)
    )
    return set(fresh)


async def forget_held(
    session: AsyncSession, *, service_key: str, user_ids: Sequence[str], keep: Sequence[str]
) -> None:
    """Drop the held rows of these users, except `keep` (still planned to be written)."""
    if user_ids:
        await session.execute(
            delete(SyncWrite).where(
                SyncWrite.service_key == service_key,
                SyncWrite.state == GuardState.HELD,
                SyncWrite.user_id.in_(list(user_ids)),
                SyncWrite.user_id.not_in(list(keep)),
            )
        )


async def forget_vanished(session: AsyncSession, *, service_key: str, source: Source) -> None:
    """Drop the held rows of users in neither the source nor `sync_state`: no pass will look
    at them again to drop them. (A row another run holds was read from the source
    before that run committed the hold, so this statement sees the row if it sees the hold.)"""
    await session.execute(
        text(
            f"DELETE FROM sync_write w WHERE w.service_key = :key"
            f" AND w.state = {sql(GuardState.HELD)}"
            " AND NOT EXISTS (SELECT 1 FROM sync_state s WHERE s.user_id = w.user_id)"
            f" AND NOT EXISTS (SELECT 1 FROM {source.relation} l WHERE l.id::text = w.user_id)"
        ),
        {"key": service_key},
    )


async def any_held(session: AsyncSession, *, service_key: str) -> bool:
    found = await session.scalar(
        select(SyncWrite.id)
        .where(SyncWrite.service_key == service_key, SyncWrite.state == GuardState.HELD)
        .limit(1)
    )
    return found is not None


async def held_among(session: AsyncSession, *, service_key: str, user_ids: Sequence[str]) -> int:
    """How many of these users' writes are held now (by any run)."""
    if not user_ids:
        return 0
    count = await session.scalar(
        select(func.count()).where(
            SyncWrite.service_key == service_key,
            SyncWrite.state == GuardState.HELD,
            SyncWrite.user_id.in_(list(user_ids)),
        )
    )
    return int(count or 0)


async def held(session: AsyncSession, *, limit: int = 1000) -> list[HeldWrite]:
    """Writes held now, of every run, oldest first."""
    rows = await session.scalars(
        select(SyncWrite)
        .where(SyncWrite.state == GuardState.HELD)
        .order_by(SyncWrite.decided_at, SyncWrite.id)
        .limit(limit)
    )
    return [picked(HeldWrite, r, held_at=r.decided_at) for r in rows]


async def count_held(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(SyncWrite).where(SyncWrite.state == GuardState.HELD)
    )
    return int(count or 0)


async def prune(session: AsyncSession, *, before: datetime) -> None:
    """Forget the log older than `before` (held rows stay until released or dropped)."""
    await session.execute(
        delete(SyncWrite).where(SyncWrite.state != GuardState.HELD, SyncWrite.decided_at < before)
    )


def _row(w: Write, *, service_key: str, run_id: int, state: GuardState) -> dict[str, object]:
    return {
        "service_key": service_key,
        "run_id": run_id,
        "state": state.value,
        "user_id": w.user_id,
        "identity": w.identity,
    }
