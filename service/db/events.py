"""The durable event queue (`user_event`): enqueue, claim, complete, and its vital signs.

Delivery is at least once. A consumer claims pending events with `FOR UPDATE SKIP LOCKED`
(so consumers never wait for each other or take the same event), reconciles their users and
completes them only after the outcome is recorded. A consumer that dies leaves its events
claimed: the next leader releases them at once (`release_claims`), and in any case a claim
older than the lease is claimed again. Every enqueue sends `NOTIFY user_sync_event` in the
same transaction, so a listener wakes at commit, never before the rows are visible.

Events carry no data but a user id (or, from webhooks and the API, an id or identity): they are
hints, and the reconcile re-reads both sides. Times come from the database clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import UserEvent, WebhookNonce

CHANNEL = "user_sync_event"
"""The NOTIFY channel; the migration's trigger function uses the same name."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    user_id: str
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    id: int
    user_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Backlog:
    depth: int
    oldest_age_seconds: float


@dataclass(frozen=True, slots=True)
class EventStatus:
    done_at: datetime | None
    run_id: int | None
    last_error: str | None


async def notify(session: AsyncSession) -> None:
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


async def enqueue(session: AsyncSession, events: Sequence[NewEvent], *, source: str) -> list[int]:
    """Queue events and wake the listeners at commit; returns their ids in order."""
    if not events:
        return []
    rows = [{"user_id": e.user_id, "kind": e.kind, "source": source} for e in events]
    ids = await session.scalars(
        insert(UserEvent).returning(UserEvent.id, sort_by_parameter_order=True), rows
    )
    await notify(session)
    return list(ids)


async def claim(
    session: AsyncSession, *, owner: str, limit: int, lease: timedelta
) -> list[ClaimedEvent]:
    """Take up to `limit` pending events, oldest first, skipping those others hold."""
    claimable = or_(UserEvent.claimed_at.is_(None), UserEvent.claimed_at < func.now() - lease)
    picked = (
        select(UserEvent.id)
        .where(UserEvent.done_at.is_(None), claimable)
        .order_by(UserEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    result = await session.execute(
        update(UserEvent)
        .where(UserEvent.id.in_(select(picked.c.id)))
        .values(claimed_at=func.now(), claimed_by=owner, attempts=UserEvent.attempts + 1)
        .returning(UserEvent.id, UserEvent.user_id, UserEvent.created_at)
    )
    events = [ClaimedEvent(id=i, user_id=u, created_at=c) for i, u, c in result.all()]
    return sorted(events, key=lambda e: e.id)


async def complete(session: AsyncSession, ids: Sequence[int], *, run_id: int) -> list[float]:
    """Mark events done by run `run_id`; returns each one's seconds from enqueue to done."""
    result = await session.scalars(
        update(UserEvent)
        .where(UserEvent.id.in_(ids), UserEvent.done_at.is_(None))
        .values(done_at=func.clock_timestamp(), run_id=run_id, last_error=None)
        .returning(func.extract("epoch", UserEvent.done_at - UserEvent.created_at))
    )
    return [float(seconds) for seconds in result]


async def release(session: AsyncSession, ids: Sequence[int]) -> None:
    """Give claimed events back untried (the run could not start); the attempt does not count."""
    await session.execute(
        update(UserEvent)
        .where(UserEvent.id.in_(ids), UserEvent.done_at.is_(None))
        .values(claimed_at=None, claimed_by=None, attempts=UserEvent.attempts - 1)
    )


async def defer(
    session: AsyncSession, ids: Sequence[int], *, lease: timedelta, delay: timedelta
) -> None:
    """Give events back to be claimed again after `delay` (their user was busy in another
    run); the attempt does not count."""
    await session.execute(
        update(UserEvent)
        .where(UserEvent.id.in_(ids), UserEvent.done_at.is_(None))
        .values(claimed_at=func.now() - lease + delay, attempts=UserEvent.attempts - 1)
    )


async def fail(session: AsyncSession, ids: Sequence[int], *, error: str, max_attempts: int) -> int:
    """Note a failed attempt; events out of attempts are closed. Returns how many were closed.

    The others stay claimed, so they are tried again when the lease runs out (a backoff).
    """
    await session.execute(
        update(UserEvent).where(UserEvent.id.in_(ids)).values(last_error=error[:2000])
    )
    closed = await session.execute(
        update(UserEvent)
        .where(UserEvent.id.in_(ids), UserEvent.attempts >= max_attempts)
        .values(done_at=func.clock_timestamp())
        .returning(UserEvent.id)
    )
    return len(closed.all())


async def release_claims(session: AsyncSession) -> int:
    """Release every claim (call when taking over: any claim left is a dead consumer's)."""
    result = await session.execute(
        update(UserEvent)
        .where(UserEvent.done_at.is_(None), UserEvent.claimed_at.is_not(None))
        .values(claimed_at=None, claimed_by=None)
        .returning(UserEvent.id)
    )
    return len(result.all())


async def backlog(session: AsyncSession) -> Backlog:
    row = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(
                    func.extract("epoch", func.clock_timestamp() - func.min(UserEvent.created_at)),
                    0,
                ),
            ).where(UserEvent.done_at.is_(None))
        )
    ).one()
    return Backlog(depth=int(row[0]), oldest_age_seconds=max(0.0, float(row[1])))


async def status(session: AsyncSession, event_id: int) -> EventStatus | None:
    row = (
        await session.execute(
            select(UserEvent.done_at, UserEvent.run_id, UserEvent.last_error).where(
                UserEvent.id == event_id
            )
        )
    ).one_or_none()
    return None if row is None else EventStatus(done_at=row[0], run_id=row[1], last_error=row[2])


async def pending_for(session: AsyncSession, user_ids: Sequence[str]) -> int:
    count = await session.scalar(
        select(func.count()).where(UserEvent.user_id.in_(user_ids), UserEvent.done_at.is_(None))
    )
    return int(count or 0)


async def prune(session: AsyncSession, *, older_than: timedelta) -> int:
    """Forget done events older than `older_than`, and webhook signatures past expiry."""
    done = await session.execute(
        delete(UserEvent).where(UserEvent.done_at < func.now() - older_than).returning(UserEvent.id)
    )
    await session.execute(delete(WebhookNonce).where(WebhookNonce.expires_at < func.now()))
    return len(done.all())


async def remember_signature(session: AsyncSession, signature: str, *, keep_for: timedelta) -> bool:
    """Record a webhook signature; False if it was seen before (a replay)."""
    result = await session.execute(
        pg_insert(WebhookNonce)
        .values(signature=signature, expires_at=func.now() + keep_for)
        .on_conflict_do_nothing(index_elements=[WebhookNonce.signature])
        .returning(WebhookNonce.signature)
    )
    return result.first() is not None
