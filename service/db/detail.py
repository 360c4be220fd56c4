"""Operator views of one run (with its errors) and of one user (state, last error, queue).

Read-only, plain values out, for the HTTP API (`GET /runs/{id}`, `GET /users/{key}`) and the
outcome of `POST /sync/users/{key}`. A user is found by internal id or identity, in the source
table (or view), in `sync_state`, or both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.db import events, rows, source
from service.db.models import SyncError, SyncRun
from service.db.status import RunSummary, summarise_run
from service.domain.users import SyncState

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
class UserDetail:
    key: str
    local: LocalView | None
    state: SyncState | None
    last_error: ErrorView | None
    pending_events: int


def _error(row: SyncError) -> ErrorView:
    return rows.picked(ErrorView, row)


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


_STATE = (
    f"SELECT {rows.select_list('sync_state', rows.STATE_COLUMNS, 's_')}"  # noqa: S608
    " FROM sync_state WHERE sync_state.user_id = ANY(:keys) OR sync_state.identity = ANY(:keys)"
    " ORDER BY sync_state.user_id = ANY(:keys) DESC LIMIT 1"
)
"""The state of the user with one of these ids, else of the user claiming one as identity."""


async def _state(session: AsyncSession, *keys: str) -> SyncState | None:
    row = (await session.execute(text(_STATE), {"keys": list(keys)})).first()
    return None if row is None else rows.sync_state(row, 0)


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
        state=state,
        last_error=await last_error(session, user_id),
        pending_events=await events.pending_for(session, [user_id, key]),
    )
