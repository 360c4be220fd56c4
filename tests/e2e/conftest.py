"""End-to-end wiring: settings that point the real service at the emulator and the test DB."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service import wiring
from service.config import Settings
from service.db.engine import connect
from service.domain.runs import Scope
from service.libpq.url import with_database
from service.reconcile.progress import RunProgress
from service.reconcile.run import RunReport, RunRequest

SyncFn = Callable[..., Awaitable[RunReport]]


def make_settings(database_url: str, emulator: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_base_url": emulator.base_url,
        "account_sid": emulator.config.account_sid,
        "auth_token": emulator.config.auth_token,
        "write_rate": 1000.0,
        "write_rate_limit_raised": True,
        "max_in_flight": 32,
        "retry_backoff_base": 0.01,
        "retry_backoff_max": 0.05,
        "request_timeout": 2.0,
        # correctness tests change a few of a few users; the write guard's tests set their own
        "max_writes_percent": 100.0,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def fast_emulator(emulator: Any) -> Any:
    """The emulator with its write limit off, for tests about correctness, not pace."""
    emulator.emulator.set_write_limit(None)
    return emulator


@pytest.fixture
def settings_for(database_url: str, fast_emulator: Any) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        return make_settings(database_url, fast_emulator, **overrides)

    return build


@pytest.fixture
async def sync(
    db: async_sessionmaker[AsyncSession], settings_for: Callable[..., Settings]
) -> AsyncIterator[SyncFn]:
    """Run one reconcile with the given scope and settings overrides."""

    async def run(
        scope: Scope = Scope.FULL,
        *,
        targets: Iterable[str] = (),
        dry_run: bool = False,
        allow_deletes: bool = False,
        allow_writes: bool = False,
        progress: RunProgress | None = None,
        **overrides: Any,
    ) -> RunReport:
        async with wiring.runtime(settings_for(**overrides)) as runtime:
            request = RunRequest(
                trigger="test",
                scope=scope,
                targets=tuple(targets),
                dry_run=dry_run,
                allow_deletes=allow_deletes,
                allow_writes=allow_writes,
            )
            return await runtime.runner.run(request, progress=progress)

    yield run


async def insert_users(engine: AsyncEngine, users: Iterable[Mapping[str, Any]]) -> None:
    rows = [
        {
            "id": u["id"],
            "identity": u.get("identity", u["id"]),
            "friendly_name": u.get("friendly_name"),
            "role": u.get("role"),
            "attributes": json.dumps(u.get("attributes", {})),
            "active": u.get("active", True),
        }
        for u in users
    ]
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO internal_users"
                " (id, identity, friendly_name, role, attributes, active) VALUES"
                " (:id, :identity, :friendly_name, :role, CAST(:attributes AS jsonb), :active)"
            ),
            rows,
        )


async def generate_users(engine: AsyncEngine, count: int, *, prefix: str = "user") -> None:
    """Set-based: `count` users with names, roles left default and small attributes."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO internal_users (id, identity, friendly_name, attributes) "
                "SELECT :p || '-' || g, :p || g || '@example.com', 'User ' || g, "
                "jsonb_build_object('n', g, 'team', 'team-' || (g % 7)) "
                "FROM generate_series(1, :n) g"
            ),
            {"p": prefix, "n": count},
        )


async def execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(sql), params)


async def fetch_all(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        result = await connection.execute(text(sql), params)
        return [dict(r) for r in result.mappings()]


@pytest.fixture
async def empty_database(postgres_server: str) -> AsyncIterator[str]:
    """The URL of a database of its own on the test server, no migration run in it, dropped
    after the test."""
    name = f"usersync_empty_{secrets.token_hex(3)}"
    admin = await connect(postgres_server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(postgres_server, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def wait_until_leased(engine: AsyncEngine, user_id: str) -> None:
    """A run is applying `user_id` (it holds its lease)."""
    async with asyncio.timeout(10):
        while not await fetch_all(
            engine,
            "SELECT 1 FROM sync_state WHERE user_id = :u AND lease_run IS NOT NULL",
            u=user_id,
        ):
            await asyncio.sleep(0.01)
