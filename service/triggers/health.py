"""Health, readiness and metrics: the three endpoints that need no token.

`/healthz` says the process serves (liveness: restart it if this fails). `/readyz` says it can do
its job: the database answers and is migrated to the revision this code expects, and the replica
knows which Service it serves (`service_sid`; until it has resolved the account's default it
says why not, and cannot lead), and its leader session is not refused (`leader_problem`: the
session URL goes through a pooler that does not keep sessions, so it may never lead); its body
also names the replica's role, leader or standby (both are ready: standbys serve the API and
accept events). `/metrics` reads the database's vitals just before rendering, so every replica
reports queue depth, user states and freshness; if the database is down the last values stay.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db import deletions, events, migrate, status, suspensions, writes
from service.domain.runs import Scope
from service.metrics import CONTENT_TYPE, Vitals
from service.triggers.keys import ENGINE, HEAD_REVISION, LEADERSHIP, METRICS, SERVICE, SESSIONS
from service.triggers.responses import ok

log = structlog.get_logger(__name__)

DATABASE_CHECK_SECONDS = 2.0


async def healthz(request: web.Request) -> web.Response:
    return ok({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    service, leadership = request.app[SERVICE], request.app[LEADERSHIP]
    body: dict[str, object] = {"role": leadership.role.value, "service_sid": service.sid}
    if service.sid is None:
        body["service_problem"] = service.problem or "resolving the Service"
    if leadership.problem is not None:
        body["leader_problem"] = leadership.problem
    try:
        async with asyncio.timeout(DATABASE_CHECK_SECONDS):
            async with request.app[ENGINE].connect() as connection:
                await connection.execute(text("SELECT 1"))
            current = await migrate.current_revision(request.app[ENGINE])
    except Exception as e:  # any failure to reach the database means not ready
        return ok({"status": "not_ready", "database": type(e).__name__, **body}, status=503)
    head = request.app[HEAD_REVISION]
    ready = current == head and service.sid is not None and leadership.problem is None
    body |= {
        "status": "ready" if ready else "not_ready",
        "database": "ok",
        "migrations": {"current": current, "head": head},
    }
    return ok(body, status=200 if ready else 503)


async def read_vitals(sessions: async_sessionmaker[AsyncSession]) -> Vitals:
    async with sessions() as session:
        backlog = await events.backlog(session)
        return Vitals(
            queue_depth=backlog.depth,
            oldest_event_age_seconds=backlog.oldest_age_seconds,
            users_by_status=await status.users_by_status(session),
            last_full_success=await status.last_success(session, scope=Scope.FULL),
            last_incremental_success=await status.last_success(session, scope=Scope.INCREMENTAL),
            deletions_held=await deletions.count_held(session),
            suspensions_due=await suspensions.count_due(session),
            writes_held=await writes.count_held(session),
        )


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS]
    try:
        async with asyncio.timeout(DATABASE_CHECK_SECONDS):
            registry.update_vitals(await read_vitals(request.app[SESSIONS]))
    except Exception as e:  # the scrape still shows everything else
        log.warning("metrics: database vitals unavailable", error=type(e).__name__)
    return web.Response(body=registry.exposition(), headers={"Content-Type": CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
