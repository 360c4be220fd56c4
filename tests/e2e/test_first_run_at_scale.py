"""A first, linking full run over many users stays linear in time and flat in memory, on the
production path (the emulator over HTTP, real Postgres):
- a pass holds a pool's worth of users in memory, whatever the size of the source: the users it
  has started are not kept for the rest of the run (`ApplyPool.keeps_started`), counted by the
  `Case` objects alive while the run goes on;
- the run keeps the statistics of the `sync_state` it grows (`db.statistics`), with autovacuum
  off for the table, so the plans of its repeated lookups stay keyed lookups.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.db.gather import BATCH
from service.db.statistics import described_rows
from service.domain.cases import Case
from service.domain.runs import RunStatus, Scope
from service.emulator.directory import UserFields
from tests.e2e.conftest import execute, generate_users

USERS = 6 * BATCH


def seed_remote(emulator: Any, count: int) -> None:
    """The remote users `generate_users` describes, so the first run links them all."""
    service = emulator.emulator.service()
    for g in range(1, count + 1):
        attributes = json.dumps({"n": g, "team": f"team-{g % 7}"})
        fields = UserFields(
            identity=f"user{g}@example.com", friendly_name=f"User {g}", attributes=attributes
        )
        emulator.emulator.directory.create_user(service, fields)


async def most_cases_alive(run: asyncio.Task[Any]) -> int:
    most = 0
    while not run.done():
        most = max(most, sum(type(o) is Case for o in gc.get_objects()))
        await asyncio.sleep(0.05)
    return most


async def test_a_linking_full_run_keeps_a_bounded_number_of_users(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await generate_users(engine, USERS)
    seed_remote(fast_emulator, USERS)

    run = asyncio.create_task(sync(Scope.FULL))
    most = await most_cases_alive(run)
    report = run.result()

    assert report.status is RunStatus.SUCCEEDED
    assert report.counts["linked"] == USERS
    assert most < 3 * BATCH, f"{most} users held at once by a pass over {USERS}"


async def test_a_first_run_keeps_the_state_statistics(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession], sync: Any, fast_emulator: Any
):
    await generate_users(engine, USERS)
    seed_remote(fast_emulator, USERS)
    await execute(engine, "ALTER TABLE sync_state SET (autovacuum_enabled = false)")
    try:
        report = await sync(Scope.FULL)
        described = await described_rows(db)
    finally:
        await execute(engine, "ALTER TABLE sync_state RESET (autovacuum_enabled)")

    assert report.counts["linked"] == USERS
    assert USERS / 2 <= described <= USERS
