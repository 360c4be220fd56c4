"""The composition root: settings in, wired components out.

`runtime(settings)` owns every long-lived resource (the engine, the one aiohttp ClientSession,
the Conversations client and the runner) and closes them in reverse order. The CLI uses it
directly; `create_app(settings)`, the served application, enters it from a cleanup context and
adds leader election, the schedule, the event consumer and the HTTP API on top.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import aiohttp
import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import ConfigError, Settings
from service.conversations.client import ConversationsClient
from service.conversations.ratelimit import WriteLimiter
from service.conversations.stats import Observer
from service.db import locks, migrate
from service.db.engine import create_engine, create_sessionmaker
from service.domain.policy import AttributesMode, DeleteMode, Policy
from service.metrics import Metrics
from service.reconcile.outcome import RetryPolicy
from service.reconcile.runner import Runner, RunnerConfig
from service.triggers import auth, health, http, keys, openapi, responses, webhooks
from service.triggers.duties import Duties
from service.triggers.leader import Leadership
from service.triggers.priority import PriorityLimiter

MAX_BODY_BYTES = 4 * 1024 * 1024
HTTP_SHUTDOWN_SECONDS = 5.0
"""On SIGTERM, how long requests in progress get before connections are closed."""

log = structlog.get_logger(__name__)
RUNNER = web.AppKey("runner", Runner)


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    client: ConversationsClient
    runner: Runner


def utc_now() -> datetime:
    return datetime.now(UTC)


def service_key(settings: Settings) -> str:
    """What identifies the Service for locks and run records."""
    return settings.service_sid or f"default:{settings.account_sid or settings.api_key}"


def policy(settings: Settings) -> Policy:
    pattern = settings.protected_identity_pattern
    return Policy(
        delete_mode=DeleteMode(settings.delete_mode.value),
        attributes_mode=AttributesMode(settings.attributes_mode.value),
        protected_identity=re.compile(pattern) if pattern else None,
        max_deletes_per_run=settings.max_deletes_per_run,
        max_deletes_percent=settings.max_deletes_percent,
    )


def runner_config(settings: Settings) -> RunnerConfig:
    return RunnerConfig(
        service_key=service_key(settings),
        source_table=settings.source_table,
        policy=policy(settings),
        retry=RetryPolicy(
            base_seconds=settings.failure_backoff_base,
            cap_seconds=settings.failure_backoff_max,
            quarantine_after=settings.quarantine_after,
        ),
        error_retention=timedelta(days=settings.error_retention_days),
        deletion_window=timedelta(seconds=settings.deletion_window),
    )


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.require_database_url(), pool_size=settings.max_in_flight)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def runtime(
    settings: Settings, *, limiter: WriteLimiter | None = None, observer: Observer | None = None
) -> AsyncIterator[Runtime]:
    """`limiter` and `observer` let the served app pace by priority and count every call."""
    async with database(settings) as engine, aiohttp.ClientSession() as session:
        client = ConversationsClient.from_settings(
            session, settings, limiter=limiter, observer=observer
        )
        runner = Runner(engine=engine, client=client, config=runner_config(settings), clock=utc_now)
        yield Runtime(settings=settings, engine=engine, client=client, runner=runner)


def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


# --- the served application (`user-sync serve`) ----------------------------------------------


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> web.Application:
    """The HTTP API, leader election and the leader's duties, as one aiohttp application.

    Resources and background tasks are cleanup contexts, entered in order at startup and left
    in reverse at shutdown: the runtime (engine, ClientSession, client, runner), then the
    leadership task. On shutdown the replica first stops taking work (`on_shutdown`), then
    gives runs in flight `shutdown_grace` seconds before cancelling them (recorded aborted).
    """
    application = web.Application(
        middlewares=[responses.json_errors, auth.middleware()], client_max_size=MAX_BODY_BYTES
    )
    application[keys.SETTINGS] = settings
    application[keys.METRICS] = Metrics()
    application[keys.HEAD_REVISION] = migrate.head_revision()
    application.cleanup_ctx.append(_runtime_context)
    application.cleanup_ctx.append(partial(_leadership_context, clock=clock))
    application.on_shutdown.append(_stop_intake)
    for add_routes in (health.add_routes, http.add_routes, webhooks.add_routes, openapi.add_routes):
        add_routes(application)
    return application


async def _runtime_context(application: web.Application) -> AsyncIterator[None]:
    settings, metrics = application[keys.SETTINGS], application[keys.METRICS]
    limiter = PriorityLimiter(settings.write_rate, max_in_flight=settings.max_in_flight)
    metrics.watch_limiter(limiter)
    async with runtime(settings, limiter=limiter, observer=metrics.observe_call) as wired:
        application[keys.ENGINE] = wired.engine
        application[keys.SESSIONS] = sessions(wired.engine)
        application[RUNNER] = wired.runner
        yield


async def _leadership_context(
    application: web.Application, *, clock: Callable[[], datetime]
) -> AsyncIterator[None]:
    settings, metrics = application[keys.SETTINGS], application[keys.METRICS]
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    def duties() -> Duties:
        return Duties(
            application[RUNNER],
            sessions=application[keys.SESSIONS],
            settings=settings,
            metrics=metrics,
            clock=clock,
            owner=owner,
        )

    leadership = Leadership(
        database_url=settings.require_database_url(),
        key=locks.lock_key("leader", service_key(settings)),
        duties=duties,
        metrics=metrics,
        retry_interval=settings.leader_retry_interval,
        check_interval=settings.leader_check_interval,
    )
    application[keys.LEADERSHIP] = leadership
    task = asyncio.create_task(leadership.run(), name="leadership")
    yield
    await leadership.stop(grace=settings.shutdown_grace)
    task.cancel()
    await asyncio.wait({task})


async def _stop_intake(application: web.Application) -> None:
    application[keys.LEADERSHIP].stop_intake()


async def serve(settings: Settings) -> None:
    """Serve `create_app(settings)` until SIGTERM or SIGINT, then shut down in order."""
    if settings.api_token is None:
        raise ConfigError("USERSYNC_API_TOKEN is required by serve (the admin API's bearer token)")
    settings.credentials()  # fail early, naming the settings
    runner = web.AppRunner(
        create_app(settings), access_log=None, shutdown_timeout=HTTP_SHUTDOWN_SECONDS
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        host, port = runner.addresses[0][:2]
        log.info("serving", host=host, port=port)
        await _signalled(signal.SIGTERM, signal.SIGINT)
        log.info("stopping")
    finally:
        await runner.cleanup()
    log.info("stopped")


async def _signalled(*signals: signal.Signals) -> None:
    loop = asyncio.get_running_loop()
    received = asyncio.Event()
    for number in signals:
        loop.add_signal_handler(number, received.set)
    try:
        await received.wait()
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
