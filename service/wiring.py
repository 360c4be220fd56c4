"""What a run is wired from: settings in, connections, the Service and its runner out.

`connections(settings)` owns every long-lived resource (the engine, the one aiohttp
ClientSession, the write limiter) and closes them in reverse order. Everything else is wired for
one Service, named by its `IS…` sid: `USERSYNC_SERVICE_SID`, or else the account's default,
which `resolve_service_sid` learns once per process at start (one `GET /v1/Configuration`). The
sid is the key of every lock and run record (`service_key`), and the client addresses that
Service by sid, so a process's locks, records and writes always name the same Service, whatever
credentials it holds and even if the account's default changes while it runs.

`runtime(settings)` is what the CLI's runs (and the demo) use: connections, the resolved
Service and its runner; it raises `ServiceUnresolved` (nothing runs) when the Service cannot be
learnt. The served application (`service.app`) builds on the same connections and runtime.
This module is apart from it so that a sync loads none of the HTTP API (aiohttp's server, the
triggers, the metrics).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import ConfigError, Settings
from service.conversations.client import ConversationsClient
from service.conversations.errors import ConversationsError
from service.conversations.ratelimit import WriteLimiter
from service.conversations.stats import Observer
from service.db import affinity, connectivity
from service.db.engine import create_engine, create_sessionmaker
from service.domain.audit import AuditPolicy
from service.domain.backoff import FailureBackoff
from service.domain.policy import AttributesMode, Policy, plan_context
from service.domain.roles import RoleDirectory
from service.domain.users import RemoteUser
from service.headstart import HeadStart, Listed
from service.reconcile import failure
from service.reconcile.executor import Executor
from service.reconcile.parts import RunnerConfig, RunnerParts
from service.reconcile.readahead import ReadAhead
from service.reconcile.recorder import Recorder
from service.reconcile.run import RunReport
from service.reconcile.runner import Runner
from service.reconcile.sides import Sides
from service.remote import conversations_client, write_limiter

LOCK_POOL_SIZE = 2
"""Lock connections at once with their own URL: a bulk run and a run of named users (each
kind holds its lock), plus as many again on overflow."""
LEADER_URL = "USERSYNC_LEADER_DATABASE_URL"
UNRESOLVED = "cannot resolve the account's default Conversation Service (GET /v1/Configuration)"


class ServiceUnresolved(Exception):
    """The Service to serve could not be learnt: nothing may run or lead without it."""


class CannotListen(Exception):
    """`serve` cannot take its address (`USERSYNC_HTTP_HOST` / `USERSYNC_HTTP_PORT`): named
    here, beside the other causes a command ends on, so that `service.commands` need not load
    the served application to name it."""


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    client: ConversationsClient
    runner: Runner
    service_sid: str
    sessions: async_sessionmaker[AsyncSession]
    """The connections' one sessionmaker, for what reads beside the runs (the demo's status)."""
    listing: ReadAhead[RemoteUser] | None = None
    """The listing a head start began (`service.headstart`), for the one run it is for."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def service_key(service_sid: str) -> str:
    """What names the Service in locks and run records: its `IS…` sid, in one spelling (the hex
    digits are case-insensitive), however the process learnt it."""
    return service_sid[:2] + service_sid[2:].lower()


def _plans_from_state(settings: Settings) -> bool:
    """Whether runs outside full ones may skip the read of a user the state remembers: not in
    merge mode, where a write from memory would drop keys others set since our last look."""
    merge = settings.attributes_mode is AttributesMode.MERGE
    return not settings.read_before_write and not merge


def policy(settings: Settings) -> Policy:
    pattern = settings.protected_identity_pattern
    return Policy(
        delete_mode=settings.delete_mode,
        attributes_mode=settings.attributes_mode,
        protected_identity=re.compile(pattern) if pattern else None,
        max_deletes_per_run=settings.max_deletes_per_run,
        max_deletes_percent=settings.max_deletes_percent,
        delete_grace=timedelta(seconds=settings.delete_grace),
        suspended_role=settings.suspended_role,
        suspended_marker=settings.suspended_marker,
        max_writes_per_run=settings.max_writes_per_run,
        max_writes_percent=settings.max_writes_percent,
        max_writes_percent_floor=settings.max_writes_percent_floor,
    )


def runner_config(settings: Settings, *, service_sid: str) -> RunnerConfig:
    return RunnerConfig(
        service_key=service_key(service_sid),
        source_table=settings.source_table,
        policy=policy(settings),
        backoff=FailureBackoff(
            base_seconds=settings.failure_backoff_base,
            cap_seconds=settings.failure_backoff_max,
            quarantine_after=settings.quarantine_after,
        ),
        error_retention=timedelta(days=settings.error_retention_days),
        deletion_window=timedelta(seconds=settings.deletion_window),
        early_writes=settings.early_writes,
        audit=AuditPolicy(
            enabled=settings.audit,
            values=settings.audit_attribute_values,
            retention=timedelta(days=settings.audit_retention_days),
        ),
    )


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The engine, once one connection was made: `DatabaseUnavailable` (naming the URL and
    the cause) when none can be."""
    url = settings.require_database_url()
    engine = create_engine(url, pool_size=settings.max_in_flight)
    try:
        await connectivity.check(engine, url)
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def lock_database(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """Where runs take their lock connections: `USERSYNC_LEADER_DATABASE_URL`'s own engine
    (session advisory locks must not go through a transaction pooler), else `engine`."""
    if settings.leader_database_url is None:
        yield engine
        return
    url = settings.require_session_database_url()
    lock_engine = create_engine(url, pool_size=LOCK_POOL_SIZE, application_name="user-sync-locks")
    try:
        await connectivity.check(lock_engine, url, setting=LEADER_URL)
        yield lock_engine
    finally:
        await lock_engine.dispose()


async def refuse_pooled_sessions(settings: Settings) -> None:
    """ConfigError, in one line, when the session URL does not keep a session (`db.affinity`):
    a run's locks would stay behind on a pooled backend and exclude nothing."""
    url = settings.require_session_database_url()
    try:
        problem = await affinity.url_problem(url, application_name="user-sync")
    except connectivity.CONNECTION_ERRORS as e:
        setting = LEADER_URL if settings.leader_database_url else "USERSYNC_DATABASE_URL"
        raise connectivity.unavailable(url, e, setting=setting) from e
    if problem is not None:
        raise ConfigError(f"refusing to run: {affinity.refusal(problem)}")
    if settings.leader_database_url is not None:
        mismatch = await affinity.url_mismatch(url, main_url=settings.require_database_url())
        if mismatch is not None:
            raise ConfigError(f"refusing to run: {mismatch}")


@dataclass(frozen=True, slots=True)
class Connections:
    """What exists before the Service is known: the engines (the pool, and the one of lock
    connections, often the same), the pool's sessionmaker, the one ClientSession, the limiter."""

    settings: Settings
    engine: AsyncEngine
    lock_engine: AsyncEngine
    session: aiohttp.ClientSession
    limiter: WriteLimiter
    observer: Observer | None
    sessions: async_sessionmaker[AsyncSession]

    def client(self, service_sid: str | None) -> ConversationsClient:
        return conversations_client(
            self.session,
            self.settings,
            service_sid=service_sid,
            limiter=self.limiter,
            observer=self.observer,
        )

    def runtime(
        self,
        service_sid: str,
        *,
        on_close: Callable[[RunReport], None] | None = None,
        listed: Listed | None = None,
    ) -> Runtime:
        """The client and runner of the Service `service_sid`, addressed by its sid;
        `on_close` sees every run's report as it is recorded (the served app's metrics);
        `listed`: a head start's client and listing (`service.headstart`)."""
        client = listed.client if listed else self.client(service_sid)
        config = runner_config(self.settings, service_sid=service_sid)
        runner = Runner(self.runner_parts(client, config, on_close=on_close), config=config)
        return Runtime(
            self.settings,
            self.engine,
            client,
            runner,
            service_sid,
            self.sessions,
            listing=listed.listing if listed else None,
        )

    def runner_parts(
        self,
        client: ConversationsClient,
        config: RunnerConfig,
        *,
        on_close: Callable[[RunReport], None] | None,
    ) -> RunnerParts:
        sides = Sides(
            client,
            sessions=self.sessions,
            clock=utc_now,
            service_key=config.service_key,
            plan_from_state=_plans_from_state(self.settings),
            plan_context=plan_context(config.policy),
        )

        def executor(roles: Callable[[], RoleDirectory]) -> Executor:
            return Executor(
                client,
                policy=config.policy,
                holder_of=sides.holder_of,
                roles=roles,
                audit=config.trail,
            )

        recorder = Recorder(
            self.sessions,
            backoff=config.backoff,
            clock=utc_now,
            on_close=on_close,
            audit=config.trail,
        )
        return RunnerParts(
            client=client,
            sessions=self.sessions,
            lock_engine=self.lock_engine,
            sides=sides,
            recorder=recorder,
            executor=executor,
        )


@asynccontextmanager
async def connections(
    settings: Settings,
    *,
    limiter: WriteLimiter | None = None,
    observer: Observer | None = None,
    session: aiohttp.ClientSession | None = None,
) -> AsyncIterator[Connections]:
    """`limiter` and `observer` let the served app keep slots for events and count every call;
    `session`: the one ClientSession, made (and closed) by the caller (a head start's)."""
    limiter = limiter or write_limiter(settings)
    async with (
        database(settings) as engine,
        lock_database(settings, engine) as lock_engine,
        _client_session(session) as http,
    ):
        yield Connections(settings, engine, lock_engine, http, limiter, observer, sessions(engine))


@asynccontextmanager
async def _client_session(
    made: aiohttp.ClientSession | None,
) -> AsyncIterator[aiohttp.ClientSession]:
    if made is not None:
        yield made
        return
    async with aiohttp.ClientSession() as session:
        yield session


async def resolve_service_sid(connected: Connections) -> str:
    """The Service this process serves: `USERSYNC_SERVICE_SID`, or else the account's default
    as Twilio names it now (one `GET /v1/Configuration`); `ServiceUnresolved` naming the cause
    when that call fails or names none. Never a stand-in: a key that is not the Service's sid
    would let replicas with other credentials lead the same Service."""
    if connected.settings.service_sid is not None:
        return connected.settings.service_sid
    try:
        sid = await connected.client(None).fetch_default_service_sid()
    except ConversationsError as e:
        raise _unresolved(e, connected.settings) from e
    if sid is None:
        raise ServiceUnresolved(NONE_NAMED)
    return sid


NONE_NAMED = f"{UNRESOLVED}: the account names none; set USERSYNC_SERVICE_SID"


def _unresolved(error: ConversationsError, settings: Settings) -> ServiceUnresolved:
    return ServiceUnresolved(f"{UNRESOLVED}: {failure.explain(error, api_url=settings.base_url)}")


async def head_started(head_start: HeadStart) -> Listed:
    """What a head start learnt (`service.headstart`), named as `resolve_service_sid` names
    its failures; awaited once the database side is ready, so that its failures come first."""
    try:
        listed = await head_start.listed()
    except ConversationsError as e:
        raise _unresolved(e, head_start.settings) from e
    if listed is None:
        raise ServiceUnresolved(NONE_NAMED)
    return listed


@asynccontextmanager
async def runtime(
    settings: Settings,
    *,
    limiter: WriteLimiter | None = None,
    observer: Observer | None = None,
    head_start: HeadStart | None = None,
) -> AsyncIterator[Runtime]:
    """Everything a run needs, for the Service resolved once, here, before anything runs (and
    only once the session URL has proven it keeps sessions). `head_start`: the session, pacer,
    Service and listing a full sync began before this (`service.headstart`)."""
    await refuse_pooled_sessions(settings)
    if head_start is not None:
        limiter, session = head_start.limiter, head_start.session
    else:
        session = None
    async with connections(
        settings, limiter=limiter, observer=observer, session=session
    ) as connected:
        if head_start is None:
            yield connected.runtime(await resolve_service_sid(connected))
            return
        listed = await head_started(head_start)
        yield connected.runtime(listed.service_sid, listed=listed)


def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The sessionmaker of `engine`, made here once per engine (`Connections`, `status`)."""
    return create_sessionmaker(engine)
