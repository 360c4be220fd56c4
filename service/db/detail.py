"""Operator views of one run (with its errors) and of one user (state, last error, queue).

Read-only, plain values out, for the HTTP API (`GET /runs/{id}`, `GET /users/{key}`) and the
outcome of `POST /sync/users/{key}`. A user is found by internal id or identity, in the source
table (or view), in `sync_state`, or both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import events, source
from service.db.models import SyncError, SyncRun, SyncStateRow
from service.db.status import RunSummary, summarise_run

ERRORS_SHOWN = 1000


@dataclass(frozen=True, slots=True)
class ErrorView:
    user_id: str | None
    identity: str | None
    action: str
    field: str | None
    http_status: int | None
    twilio_code: int | None
    message: str
    request_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: RunSummary
    target: str | None
    allow_deletes: bool
    held_deletions: list[dict[str, Any]]
    allow_writes: bool
    held_writes: list[dict[str, Any]]
    errors: list[ErrorView]


@dataclass(frozen=True, slots=True)
class LocalView:
    id: str
    identity: str
    active: bool
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class StateView:
    user_id: str
    status: str
    remote_sid: str | None
    identity: str | None
    attempts: int
    last_synced_at: datetime | None
    next_attempt_at: datetime | None
    last_error_code: int | None
    last_error_message: str | None


@dataclass(frozen=True, slots=True)
class UserDetail:
    key: str
    local: LocalView | None
    state: StateView | None
    last_error: ErrorView | None
    pending_events: int


def _error(row: SyncError) -> ErrorView:
    return ErrorView(
        user_id=row.user_id,
        identity=row.identity,
        action=row.action,
        field=row.field,
        http_status=row.http_status,
        twilio_code=row.twilio_code,
        message=row.message,
        request_id=row.request_id,
        created_at=row.created_at,
    )


async def run_detail(session: AsyncSession, run_id: int) -> RunDetail | None:
    row = await session.get(SyncRun, run_id)
    if row is None:
        return None
    errors = await session.scalars(
        select(SyncError)
        .where(SyncError.run_id == run_id)
        .order_by(SyncError.id)
        .limit(ERRORS_SHOWN)
    )
    return RunDetail(
        run=summarise_run(row),
        target=row.target,
        allow_deletes=row.allow_deletes,
        held_deletions=list(row.held_deletions),
        allow_writes=row.allow_writes,
        held_writes=list(row.held_writes),
        errors=[_error(e) for e in errors],
    )


async def _local(session: AsyncSession, key: str, *, source_table: str) -> LocalView | None:
    """The source row whose id or identity is `key`, read as the runs read it: a text key
    matches an integer or uuid id it spells, and a source without `updated_at` shows none.
    SourceError (naming the column) if the source cannot be read at all."""
    checked = await source.inspect(await session.connection(), source_table)
    updated_at = "l.updated_at" if checked.has_updated_at else "NULL::timestamptz"
    query = (
        f"SELECT l.id::text AS id, l.identity::text AS identity, l.active, "  # noqa: S608
        f"{updated_at} AS updated_at FROM {checked.relation} l "
        f"WHERE {checked.ids_match('keys')} OR l.identity = :key "
        "ORDER BY l.id::text = :key DESC LIMIT 1"
    )
    row = (await session.execute(text(query), {"key": key, "keys": [key]})).mappings().first()
    if row is None:
        return None
    return LocalView(
        id=row["id"],
        identity=row["identity"],
        active=bool(row["active"]),
        updated_at=row["updated_at"],
    )


async def _state(session: AsyncSession, *keys: str) -> SyncStateRow | None:
    rows = await session.scalars(
        select(SyncStateRow)
        .where(or_(SyncStateRow.user_id.in_(keys), SyncStateRow.identity.in_(keys)))
        .order_by(SyncStateRow.user_id.in_(keys).desc())
        .limit(1)
    )
    return rows.first()


def _state_view(row: SyncStateRow) -> StateView:
    return StateView(
        user_id=row.user_id,
        status=row.status,
        remote_sid=row.remote_sid,
        identity=row.identity,
        attempts=row.attempts,
        last_synced_at=row.last_synced_at,
        next_attempt_at=row.next_attempt_at,
        last_error_code=row.last_error_code,
        last_error_message=row.last_error_message,
    )


async def last_error(
    session: AsyncSession, user_id: str, *, run_id: int | None = None
) -> ErrorView | None:
    query = select(SyncError).where(SyncError.user_id == user_id)
    if run_id is not None:
        query = query.where(SyncError.run_id == run_id)
    row = (await session.scalars(query.order_by(SyncError.id.desc()).limit(1))).first()
    return None if row is None else _error(row)


async def user_detail(session: AsyncSession, key: str, *, source_table: str) -> UserDetail | None:
    """The user whose internal id or identity is `key`; None if neither side knows it."""
    local = await _local(session, key, source_table=source_table)
    state = await _state(session, *([local.id] if local else [key]))
    if local is None and state is None:
        return None
    user_id = local.id if local else state.user_id if state else key
    return UserDetail(
        key=key,
        local=local,
        state=_state_view(state) if state else None,
        last_error=await last_error(session, user_id),
        pending_events=await events.pending_for(session, [user_id, key]),
    )
