"""The composition root: settings in, wired components out.

`runtime(settings)` owns every long-lived resource (the engine, the one aiohttp ClientSession,
the Conversations client and the runner) and closes them in reverse order. The CLI uses it
directly; the served application enters it from a cleanup context.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import Settings
from service.conversations.client import ConversationsClient
from service.db.engine import create_engine, create_sessionmaker
from service.domain.policy import AttributesMode, DeleteMode, Policy
from service.reconcile.outcome import RetryPolicy
from service.reconcile.runner import Runner, RunnerConfig


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
    )


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.require_database_url(), pool_size=settings.max_in_flight)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with database(settings) as engine, aiohttp.ClientSession() as session:
        client = ConversationsClient.from_settings(session, settings)
        runner = Runner(engine=engine, client=client, config=runner_config(settings), clock=utc_now)
        yield Runtime(settings=settings, engine=engine, client=client, runner=runner)


def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)
