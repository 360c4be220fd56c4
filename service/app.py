"""The served application (`user-sync serve`): settings in, the HTTP API and the leader's duties
out, on the connections and runtime a run is wired from (`service.wiring`).

`create_app(settings)` enters the connections from a cleanup context, serves at once, resolves
the Service in the background (retrying with backoff; until then the replica is not ready and
never leads) and then adds leader election, the schedule, the event consumer and the HTTP API's
runs on top.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial

import structlog
from aiohttp import web

from service.config import ConfigError, Settings
from service.db import locks, migrate
from service.domain.backoff import next_attempt_delay
from service.metrics import Metrics
from service.remote import write_limiter
from service.triggers import auth, health, http, keys, openapi, responses, trail, webhooks
from service.triggers.duties import Duties, DutiesConfig
from service.triggers.events import ConsumerConfig
from service.triggers.leader import Leadership
from service.triggers.scheduler import cadences
from service.wiring import (
    CannotListen,
    Connections,
    ServiceUnresolved,
    connections,
    resolve_service_sid,
    service_key,
    utc_now,
)

MAX_BODY_BYTES = 4 * 1024 * 1024
HTTP_SHUTDOWN_SECONDS = 5.0
"""On SIGTERM, how long requests in progress get before connections are closed."""
CLOSE_SECONDS = 5.0
"""On SIGTERM, how long closing the connections may take once runs have stopped."""
RESOLVE_BACKOFF_MAX = 30.0
"""Longest wait, in seconds, between a serving replica's attempts to learn its Service."""

log = structlog.get_logger(__name__)


def duties_config(settings: Settings) -> DutiesConfig:
    """What the leader's duties read of the settings: the schedule and the event queue's."""
    consumer = ConsumerConfig(
        batch_size=settings.event_batch_size,
        poll_interval=settings.event_poll_interval,
        lease=timedelta(seconds=settings.event_lease),
        max_attempts=settings.event_max_attempts,
    )
    return DutiesConfig(
        consumer=consumer,
        cadence=cadences(settings),
        schedule_enabled=settings.schedule_enabled,
        event_retention=timedelta(hours=settings.event_retention_hours),
    )


# --- the served application (`user-sync serve`) ----------------------------------------------


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> web.Application:
    """The HTTP API, leader election and the leader's duties, as one aiohttp application.

    Resources and background tasks are cleanup contexts, entered in order at startup and left
    in reverse at shutdown: the connections (engine, ClientSession, limiter), then the replica
    task, which learns the Service and then competes to lead it. On shutdown the replica first
    stops taking work (`on_shutdown`), then gives runs in flight `shutdown_grace` seconds
    before cancelling them (recorded aborted).
    """
    application = web.Application(
        middlewares=[responses.json_errors, auth.middleware()], client_max_size=MAX_BODY_BYTES
    )
    application[keys.SETTINGS] = settings
    application[keys.METRICS] = Metrics()
    application[keys.HEAD_REVISION] = migrate.head_revision()
    application[keys.SERVICE] = keys.ServiceState()
    application.cleanup_ctx.append(partial(_serving_context, clock=clock))
    application.on_shutdown.append(_stop_intake)
    routes = (health, http, trail, webhooks, openapi)
    for add_routes in (module.add_routes for module in routes):
        add_routes(application)
    return application


async def _serving_context(
    application: web.Application, *, clock: Callable[[], datetime]
) -> AsyncIterator[None]:
    """The connections, then, on top of them, the replica; left in reverse."""
    settings, metrics = application[keys.SETTINGS], application[keys.METRICS]
    limiter = write_limiter(settings, reserve_for_urgent=True)
    metrics.watch_limiter(limiter)
    async with connections(settings, limiter=limiter, observer=metrics.observe_call) as connected:
        application[keys.ENGINE] = connected.engine
        application[keys.SESSIONS] = connected.sessions
        async with _leadership(application, connected, clock=clock):
            yield


@asynccontextmanager
async def _leadership(
    application: web.Application, connected: Connections, *, clock: Callable[[], datetime]
) -> AsyncIterator[None]:
    settings = application[keys.SETTINGS]
    leadership = Leadership(
        database_url=settings.require_session_database_url(),
        main_url=settings.require_database_url() if settings.leader_database_url else None,
        metrics=application[keys.METRICS],
        retry_interval=settings.leader_retry_interval,
        check_interval=settings.leader_check_interval,
    )
    application[keys.LEADERSHIP] = leadership
    task = asyncio.create_task(
        _replica(application, connected, leadership, clock=clock), name="leadership"
    )
    yield
    await leadership.stop(grace=settings.shutdown_grace)
    task.cancel()
    await asyncio.wait({task})


async def _replica(
    application: web.Application,
    connected: Connections,
    leadership: Leadership,
    *,
    clock: Callable[[], datetime],
) -> None:
    """Learn the Service, then compete for its leader lock until stopped."""
    settings, metrics = application[keys.SETTINGS], application[keys.METRICS]
    sid = await _resolve_patiently(connected, application[keys.SERVICE])
    wired = connected.runtime(sid, on_close=metrics.observe_run)
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    config = duties_config(settings)

    def duties() -> Duties:
        return Duties(
            wired.runner,
            sessions=connected.sessions,
            config=config,
            metrics=metrics,
            clock=clock,
            owner=owner,
        )

    key = locks.lock_key("leader", service_key(wired.service_sid))
    await leadership.run(key=key, duties=duties)


async def _resolve_patiently(connected: Connections, state: keys.ServiceState) -> str:
    """The Service's sid, however long it takes: a replica that does not know it never leads
    (and is not ready), and never stands in another key for it. Waits grow from
    `leader_retry_interval` to `RESOLVE_BACKOFF_MAX`, jittered, between failed attempts."""
    failures = 0
    while True:
        try:
            state.sid = await resolve_service_sid(connected)
        except ServiceUnresolved as e:
            failures += 1
            state.problem = str(e)
            cap = next_attempt_delay(
                failures, base=connected.settings.leader_retry_interval, cap=RESOLVE_BACKOFF_MAX
            )
            delay = random.uniform(cap / 2, cap)
            log.warning("service unresolved", error=str(e), retry_in=round(delay, 2))
            await asyncio.sleep(delay)
            continue
        state.problem = None
        log.info("service resolved", service_sid=state.sid)
        return state.sid


async def _stop_intake(application: web.Application) -> None:
    application[keys.LEADERSHIP].stop_intake()


def serve_deadline(settings: Settings) -> float:
    """The longest `serve` may take to stop after SIGTERM (within Kubernetes' default 30 s):
    requests in progress, then the grace of runs in flight, then closing the connections."""
    return HTTP_SHUTDOWN_SECONDS + settings.shutdown_grace + CLOSE_SECONDS


async def serve(settings: Settings, *, until: Callable[[], Awaitable[object]]) -> None:
    """Serve `create_app(settings)` until `until()` returns (the CLI's `Shutdown` says when
    SIGTERM or SIGINT came), then shut down in order."""
    if settings.api_token is None:
        raise ConfigError("USERSYNC_API_TOKEN is required by serve (the admin API's bearer token)")
    settings.credentials()  # fail early, naming the settings
    runner = web.AppRunner(
        create_app(settings), access_log=None, shutdown_timeout=HTTP_SHUTDOWN_SECONDS
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        try:
            await site.start()
        except OSError as e:  # a host that does not resolve or is not ours, a port in use
            raise CannotListen(
                f"cannot listen on {settings.http_host}:{settings.http_port} "
                f"({e.strerror or e}): check USERSYNC_HTTP_HOST and USERSYNC_HTTP_PORT"
            ) from e
        host, port = runner.addresses[0][:2]
        log.info("serving", host=host, port=port)
        await until()
        log.info("stopping")
    finally:
        await runner.cleanup()
    log.info("stopped")
