"""The deletion log behind the guards: deletions bounded over a rolling window, across runs.

Every guarded deletion a run decides to make is logged `applied` before it is made (`failed`
afterwards if the API refused it), so the next run, of any scope on any replica, counts it
against the window. Deletions the guard holds are kept as `held` rows, one per remote sid,
however many runs held them again: `status`, the HTTP API and the metrics show them together,
and a run with `allow_deletes` releases them together (each held user is still planned by the
runs that look at it, and a released deletion is logged `applied` like any other). A user a run
looks at and no longer plans to delete (reactivated, say) loses its held row.

The decision is made under a per-Service transaction lock, so two runs never both spend the
window's last deletion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import locks, rows
from service.db.models import SyncDeletion
from service.db.vocabulary import HELD, GuardState


@dataclass(frozen=True, slots=True)
class Deletion:
    sid: str
    user_id: str | None
    identity: str
    reason: str


@dataclass(frozen=True, slots=True)
class HeldDeletion:
    sid: str
    user_id: str | None
    identity: str | None
    reason: str
    held_reason: str | None
    run_id: int
    held_at: datetime


async def lock_window(session: AsyncSession, *, service_key: str) -> None:
    """Serialise deletion decisions of this Service until the transaction ends."""
    await locks.hold_for_transaction(session, locks.lock_key("deletions", service_key))


async def applied_within(
    session: AsyncSession, *, service_key: str, window: timedelta, run_id: int
) -> int:
    """Remote users whose guarded deletion was logged `applied` within the last `window` or
    by run `run_id` (a run's own deletions count in each of its decisions, whatever the
    window). Each once: a deletion that may have happened (its call in flight when its run
    stopped) is tried again by the next run, and logged again."""
    count = await session.scalar(
        select(func.count(func.distinct(SyncDeletion.sid))).where(
            SyncDeletion.service_key == service_key,
            SyncDeletion.state == GuardState.APPLIED,
            or_(SyncDeletion.decided_at > func.now() - window, SyncDeletion.run_id == run_id),
        )
    )
    return int(count or 0)


async def log_applied(
    session: AsyncSession, deletions: Sequence[Deletion], *, service_key: str, run_id: int
) -> None:
    """Deletions about to be made: logged, and no longer held."""
    if not deletions:
        return
    await session.execute(
        insert(SyncDeletion),
        [
            _row(d, service_key=service_key, run_id=run_id, state=GuardState.APPLIED)
            for d in deletions
        ],
    )
    await session.execute(
        delete(SyncDeletion).where(
            SyncDeletion.service_key == service_key,
            SyncDeletion.state == GuardState.HELD,
            SyncDeletion.sid.in_([d.sid for d in deletions]),
        )
    )


async def hold(
    session: AsyncSession,
    deletions: Sequence[Deletion],
    *,
    service_key: str,
    run_id: int,
    why: str | None,
) -> None:
    """Keep these deletions held (one row per sid, refreshed by every run that holds it)."""
    if not deletions:
        return
    values = [
        _row(d, service_key=service_key, run_id=run_id, state=GuardState.HELD)
        | {"held_reason": why}
        for d in deletions
    ]
    statement = insert(SyncDeletion).values(values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[SyncDeletion.service_key, SyncDeletion.sid],
            index_where=text(HELD),
            set_={
                "run_id": statement.excluded.run_id,
                "held_reason": statement.excluded.held_reason,
                "user_id": statement.excluded.user_id,
                "identity": statement.excluded.identity,
                "reason": statement.excluded.reason,
                "decided_at": func.now(),
            },
        )
    )


async def forget_held(
    session: AsyncSession,
    *,
    service_key: str,
    user_ids: Sequence[str] | None,
    keep: Sequence[str] = (),
) -> None:
    """Drop held rows no longer planned: of these users (None: of everyone, after a full run
    looked at everyone), except the sids in `keep`."""
    condition = [SyncDeletion.service_key == service_key, SyncDeletion.state == GuardState.HELD]
    if user_ids is not None:
        condition.append(SyncDeletion.user_id.in_(list(user_ids)))
    if keep:
        condition.append(SyncDeletion.sid.not_in(list(keep)))
    await session.execute(delete(SyncDeletion).where(*condition))


async def mark_failed(session: AsyncSession, *, run_id: int, sids: Sequence[str]) -> None:
    """Logged deletions that did not happen (refused, or the user changed meanwhile): they do
    not count against the window."""
    if sids:
        await session.execute(
            update(SyncDeletion)
            .where(
                SyncDeletion.run_id == run_id,
                SyncDeletion.state == GuardState.APPLIED,
                SyncDeletion.sid.in_(list(sids)),
            )
            .values(state=GuardState.FAILED)
        )


async def any_held(session: AsyncSession, *, service_key: str) -> bool:
    found = await session.scalar(
        select(SyncDeletion.id)
        .where(SyncDeletion.service_key == service_key, SyncDeletion.state == GuardState.HELD)
        .limit(1)
    )
    return found is not None


async def held_among(session: AsyncSession, *, service_key: str, sids: Sequence[str]) -> int:
    """How many of these remote users' deletions are held now (by any run)."""
    if not sids:
        return 0
    count = await session.scalar(
        select(func.count(func.distinct(SyncDeletion.sid))).where(
            SyncDeletion.service_key == service_key,
            SyncDeletion.state == GuardState.HELD,
            SyncDeletion.sid.in_(list(sids)),
        )
    )
    return int(count or 0)


async def held(session: AsyncSession, *, limit: int = 1000) -> list[HeldDeletion]:
    """Deletions held now, of every run, oldest first."""
    found = await session.scalars(
        select(SyncDeletion)
        .where(SyncDeletion.state == GuardState.HELD)
        .order_by(SyncDeletion.decided_at, SyncDeletion.id)
        .limit(limit)
    )
    return [rows.picked(HeldDeletion, r, held_at=r.decided_at) for r in found]


async def count_held(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(SyncDeletion).where(SyncDeletion.state == GuardState.HELD)
    )
    return int(count or 0)


async def prune(session: AsyncSession, *, before: datetime) -> None:
    """Forget the log older than `before` (held rows stay until released or dropped)."""
    await session.execute(
        delete(SyncDeletion).where(
            SyncDeletion.state != GuardState.HELD, SyncDeletion.decided_at < before
        )
    )


def _row(d: Deletion, *, service_key: str, run_id: int, state: GuardState) -> dict[str, object]:
    return {
        "service_key": service_key,
        "run_id": run_id,
        "state": state.value,
        "sid": d.sid,
        "user_id": d.user_id,
        "identity": d.identity,
        "reason": d.reason,
    }
