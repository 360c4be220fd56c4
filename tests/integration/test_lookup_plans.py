"""Statements a run repeats for a batch of users at a time look those users' state up by key
once the run has grown `sync_state` (`db.statistics`). A first run grows the table from nothing
to every user while the statistics, and the generic plans a connection caches, still describe
the empty table; with autovacuum off those plans scanned the whole table for every user of a
batch (seen here: `Seq Scan on sync_state` four times in the lease's plan), which made a first
run over 100,000 users quadratic.

Proved on the production SQL under the worst case: autovacuum off for the table, statistics
taken while it was empty, the generic plan forced and made (cached) while the table was empty,
then the rows a run adds, counted through `StateGrowth` as a run counts them.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog.testing
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from service.db import gather, leases, source
from service.db.engine import create_engine, create_sessionmaker
from service.db.statistics import AT_LEAST, StateGrowth, described_rows
from service.libpq.url import parse_database_url
from tests.e2e.conftest import execute

STATES = 20_000
BATCH = 128


@pytest.fixture
async def stale(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession]
) -> AsyncIterator[AsyncConnection]:
    """A connection that caches generic plans, over an empty `sync_state` analyzed empty."""
    async with engine.begin() as connection:
        await connection.execute(text("ALTER TABLE sync_state SET (autovacuum_enabled = false)"))
        await connection.execute(text("ANALYZE sync_state"))
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SET plan_cache_mode = force_generic_plan"))
            await connection.commit()
            yield connection
            prepared = "SELECT count(*) FROM pg_prepared_statements WHERE name = 'repeated'"
            if await connection.scalar(text(prepared)):
                await connection.execute(text("DEALLOCATE repeated"))
            await connection.execute(text("RESET plan_cache_mode"))
            await connection.commit()
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("ALTER TABLE sync_state RESET (autovacuum_enabled)"))


async def grow_state(engine: AsyncEngine, first: int, count: int) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO sync_state (user_id, identity, remote_sid, status, version)"
                " SELECT 'user-' || g, 'user' || g, 'US' || g, 'synced', 1"
                " FROM generate_series(CAST(:first AS int), CAST(:last AS int)) g"
            ),
            {"first": first, "last": first + count - 1},
        )


async def grown_plan(
    engine: AsyncEngine,
    db: async_sessionmaker[AsyncSession],
    connection: AsyncConnection,
    query: str,
    params: dict[str, Any],
) -> str:
    """The plan `query` runs with once a run has added `STATES` rows to `sync_state`, batch by
    batch as leases add them, prepared (and its generic plan made) while it was empty."""
    compiled = text(query).compile(dialect=connection.dialect)
    await connection.execute(text(f"PREPARE repeated AS {compiled.string}"))
    arguments = ", ".join(literal(params[n]) for n in compiled.positiontup or ())
    explain = text(f"EXPLAIN EXECUTE repeated({arguments})")
    await connection.execute(explain)  # the generic plan is made at the first execution
    await connection.commit()  # as a run's: each statement in a transaction of its own
    growth = StateGrowth()
    for first in range(1, STATES + 1, BATCH):
        count = min(BATCH, STATES + 1 - first)
        await grow_state(engine, first, count)
        await growth.grew(db, count)
    return "\n".join(line for (line,) in await connection.execute(explain))


def literal(value: Any) -> str:
    """A parameter as SQL text (EXECUTE takes no bind parameters); test data only."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return "ARRAY[" + ", ".join(literal(v) for v in value) + "]"


def batch_ids() -> list[str]:
    return [f"user-{g}" for g in range(5_000, 5_000 + BATCH)]


async def test_the_lease_looks_state_up_by_key(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession], stale: AsyncConnection
):
    checked = await source.inspect(stale, "internal_users")
    requests = [
        leases.LeaseRequest(
            user_id=u, fingerprint=None, version=1, claim=leases.Claim(identity=u, sid=None)
        )
        for u in batch_ids()
    ]
    query, params = leases._lease_sql(checked), leases._parameters(requests, run_id=1)

    plan = await grown_plan(engine, db, stale, query, params)

    assert "Seq Scan on sync_state" not in plan, plan


async def test_named_users_are_looked_up_by_key(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession], stale: AsyncConnection
):
    checked = await source.inspect(stale, "internal_users")
    selection = gather.named(source=checked, ids=batch_ids())

    plan = await grown_plan(engine, db, stale, selection.query, selection.params)

    assert "Seq Scan on sync_state" not in plan, plan


async def test_growth_analyzes_each_time_the_table_doubles(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession], stale: AsyncConnection
):
    growth, seen = StateGrowth(), []
    for first in range(1, 4 * AT_LEAST + 1, 100):
        await grow_state(engine, first, 100)
        await growth.grew(db, 100)
        seen.append(await described_rows(db))

    assert sorted(set(seen)) == [0, AT_LEAST, 2 * AT_LEAST, 4 * AT_LEAST]


async def test_a_user_that_does_not_own_the_table_says_it_was_not_analyzed(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession], database_url: str
):
    role = f"usersync_app_{secrets.token_hex(3)}"
    await execute(engine, f"CREATE ROLE {role} LOGIN")
    await execute(engine, f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
    url = parse_database_url(database_url).url.set(drivername="postgresql", username=role)
    app_engine = create_engine(url.render_as_string(hide_password=False), pool_size=1)
    try:
        with structlog.testing.capture_logs() as logged:
            await grow_state(engine, 1, AT_LEAST)
            await StateGrowth().grew(create_sessionmaker(app_engine), AT_LEAST)
    finally:
        await app_engine.dispose()
        await execute(engine, f"DROP OWNED BY {role}")
        await execute(engine, f"DROP ROLE {role}")

    assert await described_rows(db) == 0  # never analyzed
    assert [e["event"] for e in logged] == [
        "sync_state not analyzed: the database user does not own it"
    ]
