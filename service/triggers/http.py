"""Thin handlers of the admin API: on-demand runs, runs and users as recorded.

`POST /sync` starts a full or incremental run on the leader and answers 202 with its id as soon
as the run is recorded (409 while one is going; 503 on a standby, which makes no API writes).
`POST /sync/users/{key}` works on any replica: it queues an event for the user (the leader
takes it ahead of bulk work) and waits up to `sync_user_timeout` seconds for the outcome,
answering 200 with it, or 202 with the event id if it is still queued. Reads go straight to
the database, so standbys answer them too.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service import history
from service.db import deletions, detail, events, status, suspensions, writes
from service.db.events import EventStatus, NewEvent
from service.db.source import SourceError
from service.db.status import as_json
from service.domain.outcome import Result
from service.domain.runs import RunStatus, Scope
from service.domain.users import SyncState
from service.reconcile.run import RunInProgress, RunRequest
from service.triggers.bodies import SyncBody, parsed, unsupported_media
from service.triggers.keys import LEADERSHIP, METRICS, SESSIONS, SETTINGS
from service.triggers.lane import LaneClosed
from service.triggers.leader import Standby
from service.triggers.responses import InvalidRequest, json_body, ok, problem, storable

OUTCOME_POLL_SECONDS = 0.05
MAX_RUNS_LISTED = 100
MAX_RUN_ID = 2**63 - 1


def sync_request(body: Any) -> RunRequest:
    """`{"scope": "full"|"incremental", "dry_run": bool, "allow_deletes": bool,
    "allow_writes": bool}`, all optional."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    asked = parsed(SyncBody, body, where="the body")
    return RunRequest(
        trigger="http",
        scope=Scope(asked.scope),
        dry_run=asked.dry_run,
        allow_deletes=asked.allow_deletes,
        allow_writes=asked.allow_writes,
    )


async def post_sync(request: web.Request) -> web.Response:
    if (refused := unsupported_media(request)) is not None:
        return refused
    run = sync_request(await json_body(request))
    try:
        run_id = await request.app[LEADERSHIP].start_run(run)
    except Standby as e:
        return problem(503, "standby", str(e))
    except RunInProgress as e:
        return problem(409, "run_in_progress", str(e))
    except LaneClosed as e:
        return problem(503, "stopping", str(e))
    body = {
        "run_id": run_id,
        "status": RunStatus.RUNNING.value,
        "scope": run.scope.value,
        "href": f"/runs/{run_id}",
    }
    return ok(body, status=202, headers={"Location": f"/runs/{run_id}"})


async def post_sync_user(request: web.Request) -> web.Response:
    key = user_key(request)
    sessions, settings = request.app[SESSIONS], request.app[SETTINGS]
    async with sessions() as session:
        found = await _user_detail(session, key, source_table=settings.source_table)
    if isinstance(found, web.Response):
        return found
    user_id = found.local.id if found.local else found.state.user_id if found.state else key
    async with sessions.begin() as session:
        [event_id] = await events.enqueue(session, [NewEvent(user_id, "sync")], source="api")
    request.app[METRICS].events_received.labels("api").inc()
    done = await _outcome_of(sessions, event_id, within=settings.sync_user_timeout)
    if done is None or done.run_id is None:
        message = "queued; no leader finished it in time (see GET /users/{key})"
        return ok({"status": "queued", "event_id": event_id, "message": message}, status=202)
    return ok(await _user_outcome(sessions, user_id, event_id, done, settings.source_table))


async def _outcome_of(
    sessions: async_sessionmaker[AsyncSession], event_id: int, *, within: float
) -> EventStatus | None:
    try:
        async with asyncio.timeout(within):
            while True:
                async with sessions() as session:
                    found = await events.status(session, event_id)
                if found is None or found.done_at is not None:
                    return found
                await asyncio.sleep(OUTCOME_POLL_SECONDS)
    except TimeoutError:
        return None


async def _user_outcome(
    sessions: async_sessionmaker[AsyncSession],
    user_id: str,
    event_id: int,
    done: EventStatus,
    source_table: str,
) -> dict[str, Any]:
    assert done.run_id is not None
    async with sessions() as session:
        run = await detail.run_detail(session, done.run_id)
        user = await detail.user_detail(session, user_id, source_table=source_table)
        error = await detail.last_error(session, user_id, run_id=done.run_id)
    state = user.state if user else None
    outcome = Result.FAILED if error else (state.status if state else Result.UNCHANGED)
    return {
        "user_id": user_id,
        "event_id": event_id,
        "run_id": done.run_id,
        "run_status": run.run.status if run else None,
        "outcome": outcome,
        "state": _state_shown(state),
        "error": error,
    }


def user_key(request: web.Request) -> str:
    key = request.match_info["key"]
    if not storable(key):
        raise InvalidRequest("the user key contains a NUL character or a lone surrogate")
    return key


async def get_runs(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        raise InvalidRequest("limit must be a whole number") from None
    if not 1 <= limit <= MAX_RUNS_LISTED:
        raise InvalidRequest(f"limit must be between 1 and {MAX_RUNS_LISTED}")
    async with request.app[SESSIONS]() as session:
        runs = await status.recent_runs(session, limit=limit)
        held = await deletions.held(session, limit=status.HELD_LISTED)
        held_total = await deletions.count_held(session)
        suspended = await suspensions.suspended_users(session)
        held_writes = await writes.held(session, limit=status.HELD_LISTED)
        held_writes_total = await writes.count_held(session)
    return ok(
        {
            "runs": runs,
            "held_deletions": held,
            "held_deletions_total": held_total,
            "held_writes": held_writes,
            "held_writes_total": held_writes_total,
            "suspended": suspended,
        }
    )


async def get_run(request: web.Request) -> web.Response:
    raw = request.match_info["run_id"]
    if not (raw.isascii() and raw.isdigit()):  # "²".isdigit() holds, but int() refuses it
        raise InvalidRequest("the run id must be a whole number")
    if int(raw) > MAX_RUN_ID:  # past bigint: no such run, and Postgres would refuse the query
        return problem(404, "not_found", f"no run {raw}")
    async with request.app[SESSIONS]() as session:
        found = await detail.run_detail(session, int(raw))
        if found is None:
            return problem(404, "not_found", f"no run {raw}")
        actions = await history.run_actions(session, int(raw))
    return ok({**as_json(found), **actions})


async def get_user(request: web.Request) -> web.Response:
    key = user_key(request)
    async with request.app[SESSIONS]() as session:
        found = await _user_detail(session, key, source_table=request.app[SETTINGS].source_table)
    return found if isinstance(found, web.Response) else ok(_user_shown(found))


STATE_SHOWN = (
    "user_id",
    "status",
    "remote_sid",
    "identity",
    "attempts",
    "last_synced_at",
    "next_attempt_at",
    "last_error_code",
    "last_error_message",
    "delete_after",
)
"""What the API shows of a user's sync state (its claims and fingerprints stay inside)."""


def _state_shown(state: SyncState | None) -> dict[str, Any] | None:
    return None if state is None else {name: as_json(getattr(state, name)) for name in STATE_SHOWN}


def _user_shown(user: detail.UserDetail) -> dict[str, Any]:
    return {**as_json(replace(user, state=None)), "state": _state_shown(user.state)}


async def _user_detail(
    session: AsyncSession, key: str, *, source_table: str
) -> detail.UserDetail | web.Response:
    """The user, or the answer to give instead: 404 if unknown, 503 naming what makes the
    source unreadable (the runs refuse it alike, so nothing is synced until it is fixed)."""
    try:
        found = await detail.user_detail(session, key, source_table=source_table)
    except SourceError as e:
        return problem(503, "source_unreadable", str(e))
    if found is None:
        return problem(404, "not_found", f"no user has the internal id or identity {key!r}")
    return found


def add_routes(app: web.Application) -> None:
    app.router.add_post("/sync", post_sync)
    app.router.add_post("/sync/users/{key}", post_sync_user)
    app.router.add_get("/runs", get_runs, allow_head=False)
    app.router.add_get("/runs/{run_id}", get_run, allow_head=False)
    app.router.add_get("/users/{key}", get_user, allow_head=False)
