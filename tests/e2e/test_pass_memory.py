"""A full pass holds a pool's worth of users in memory, whatever the size of the source: the
users it has started are not kept for the rest of the run (`ApplyPool.keeps_started`). Counted
on the production path (a first, linking full run over the emulator and real Postgres) by the
`Case` objects alive while the run goes on.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.gather import BATCH
from service.domain.cases import Case
from service.domain.runs import RunStatus, Scope
from service.emulator.directory import UserFields
from tests.e2e.conftest import generate_users

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
