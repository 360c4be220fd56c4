"""A run's lock connection goes back to the pool holding no advisory lock, whatever ends the run.

Session advisory locks survive a rollback, and the pool keeps the session: a lock left on a
pooled connection stays taken for as long as the engine lives. Seen: a finished run's alive lock
stayed on the pooled connection, so `run_is_live` said the run was still going for as long as
that connection sat in the pool. Guarded: a cancel landing while the run lets go of its lock
must end the session rather than pool it with the lock (every later run of the Service would
fail with `RunInProgress`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import locks
from service.db.engine import create_engine
from tests.fixtures.postgres import end_sessions_left_holding_locks


@pytest.fixture
async def one_connection_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """One pooled connection: whatever it carries back, the next checkout gets."""
    engine = create_engine(database_url, pool_size=1)
    yield engine
    await engine.dispose()


async def held(engine: AsyncEngine, key: str) -> bool:
    """Whether any session of this database holds the advisory lock `key` (asked elsewhere)."""
    async with engine.connect() as connection:
        taken = await connection.scalar(
            text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))"), {"key": key}
        )
        if taken:
            await connection.execute(
                text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"), {"key": key}
            )
        return not taken


async def test_a_finished_run_leaves_neither_its_lock_nor_its_alive_lock_on_the_pool(
    one_connection_engine: AsyncEngine, engine: AsyncEngine
):
    key, run_id = f"user-sync:test:{secrets.token_hex(3)}", secrets.randbelow(2**31)
    async with locks.holding(one_connection_engine, key) as connection:
        await locks.hold_alive(connection, run_id)
        assert await held(engine, key)
        assert await held(engine, locks.alive_key(run_id))

    assert not await held(engine, key)
    assert not await held(engine, locks.alive_key(run_id))


async def test_a_second_cancel_while_letting_go_ends_the_session_instead_of_keeping_the_lock(
    one_connection_engine: AsyncEngine, engine: AsyncEngine
):
    key = f"user-sync:test:{secrets.token_hex(3)}"
    inside = asyncio.Event()

    async def run() -> None:
        async with locks.holding(one_connection_engine, key):
            inside.set()
            await asyncio.Event().wait()

    for yields in range(1, 12):  # land the second cancel at each await of the release
        task = asyncio.create_task(run())
        await inside.wait()
        inside.clear()
        task.cancel()
        for _ in range(yields):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait({task})

        assert not await held(engine, key), f"lock kept after a second cancel at yield {yields}"
        async with locks.holding(one_connection_engine, key):  # the pool serves the next run
            pass


async def test_the_db_fixture_ends_a_session_an_earlier_test_left_holding_a_lock(
    one_connection_engine: AsyncEngine, engine: AsyncEngine
):
    """The harness side: a served app left behind by a failed test cannot fail the next ones."""
    key = f"user-sync:test:{secrets.token_hex(3)}"
    async with one_connection_engine.connect() as lingering:
        assert await locks.try_lock(lingering, key)
        await lingering.commit()

        await end_sessions_left_holding_locks(engine, grace=0.2)

        assert not await held(engine, key)
        with pytest.raises(Exception, match=r"terminat|closed"):
            await lingering.execute(text("SELECT 1"))
