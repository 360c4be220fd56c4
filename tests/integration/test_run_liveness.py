"""Whether a run is alive is its alive lock in *this* database: `pg_locks` shows the locks of
every database on the server, and run ids of another database (a staging copy on the same
server, another test run) are the same small numbers."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import locks, records
from service.db.engine import connect, create_engine
from service.libpq.url import with_database


@pytest.fixture
async def other_database(postgres_server: str) -> AsyncIterator[AsyncEngine]:
    name = f"usersync_other_{secrets.token_hex(3)}"
    admin = await connect(postgres_server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    engine = create_engine(with_database(postgres_server, name), pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def open_run(db: Any) -> int:
    opening = records.RunOpening(
        service_key="IS-liveness",
        trigger="test",
        scope="full",
        target=None,
        dry_run=False,
        allow_deletes=False,
    )
    async with db.begin() as session:
        return await records.open_run(session, opening)


async def abort_stale(db: Any) -> int:
    async with db.begin() as session:
        return await records.abort_stale_runs(session, service_key="IS-liveness")


async def test_a_run_of_the_same_id_alive_in_another_database_does_not_keep_ours_alive(
    db: Any, other_database: AsyncEngine
):
    run_id = await open_run(db)  # its process is gone: nobody here holds its alive lock
    async with other_database.connect() as elsewhere:
        await locks.hold_alive(elsewhere, run_id)

        assert await abort_stale(db) == 1


async def test_a_run_alive_in_this_database_is_left_running(db: Any, engine: AsyncEngine):
    run_id = await open_run(db)
    async with locks.holding(engine, locks.lock_key("run", "IStest")) as here:
        await locks.hold_alive(here, run_id)
        assert await abort_stale(db) == 0
    assert await abort_stale(db) == 1
