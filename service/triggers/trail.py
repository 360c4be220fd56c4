"""The audit trail over HTTP: a user's history, and the actions of a run, paged.

`GET /users/{key}/history?limit=&before=` answers a user's entries newest first, with `next`,
the link to the older ones (null on the last page). `GET /runs/{id}` carries the first
`history.ACTIONS_SHOWN` entries of its run, `GET /runs/{id}/actions?limit=&after=` pages
through all of them in the order they were written. Entries are shown as `service.history`
writes them.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from service import history
from service.db import audit
from service.triggers.http import MAX_RUN_ID, user_key
from service.triggers.keys import SESSIONS
from service.triggers.responses import InvalidRequest, ok, problem

MAX_PAGE = 1000
MAX_ENTRY_ID = 2**63 - 1


def _number(request: web.Request, name: str, *, default: int | None, top: int) -> int | None:
    """A whole number from the query, from 1 (or 0 for an id) to `top`, else 400."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) > top:
        raise InvalidRequest(f"{name} must be a whole number from 0 to {top}")
    return int(raw)


def _limit(request: web.Request, *, default: int) -> int:
    limit = _number(request, "limit", default=default, top=MAX_PAGE)
    if limit is None or limit < 1:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}")
    return limit


async def get_user_history(request: web.Request) -> web.Response:
    key = user_key(request)
    limit = _limit(request, default=50)
    before = _number(request, "before", default=None, top=MAX_ENTRY_ID)
    async with request.app[SESSIONS]() as session:
        rows = await audit.of_user(session, key, limit=limit + 1, before=before)
    more = len(rows) > limit
    rows = rows[:limit]
    following = None
    if more:
        following = f"/users/{quote(key, safe='')}/history?limit={limit}&before={rows[-1].id}"
    entries = [history.row_json(r) for r in rows]
    return ok({"user": key, "entries": entries, "next": following})


def _run_id(request: web.Request) -> int | None:
    raw = request.match_info["run_id"]
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidRequest("the run id must be a whole number")
    return None if int(raw) > MAX_RUN_ID else int(raw)


async def get_run_actions(request: web.Request) -> web.Response:
    run_id = _run_id(request)
    limit = _limit(request, default=history.ACTIONS_SHOWN)
    after = _number(request, "after", default=None, top=MAX_ENTRY_ID)
    if run_id is None:
        return problem(404, "not_found", f"no run {request.match_info['run_id']}")
    async with request.app[SESSIONS]() as session:
        found = await audit.run_exists(session, run_id)
        if not found:
            return problem(404, "not_found", f"no run {run_id}")
        actions = await history.run_actions(session, run_id, limit=limit, after=after)
    return ok({"run_id": run_id, **actions})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/users/{key}/history", get_user_history, allow_head=False)
    app.router.add_get("/runs/{run_id}/actions", get_run_actions, allow_head=False)
