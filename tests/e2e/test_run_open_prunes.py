"""Run open prunes what is past its retention at most once a minute in a process: an event run
opens every few hundred milliseconds, and its prunes are statements before its write that find
rows a day old or more. The first run a process opens prunes; a dry run never does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service import wiring
from service.domain.backoff import FailureBackoff
from service.domain.runs import Scope
from service.reconcile.recorder import PRUNE_EVERY, Recorder
from service.reconcile.run import RunRequest
from tests.e2e.conftest import execute, fetch_all, insert_users

RETENTION = timedelta(days=30)
WINDOW = timedelta(days=1)
SERVICE = "IS-prunes"


async def old_error(engine: AsyncEngine, *, at: datetime) -> None:
    """An error row past the retention, of the latest run."""
    await execute(
        engine,
        "INSERT INTO sync_error (run_id, user_id, action, message, created_at)"
        " SELECT max(id), 'old', 'update', 'long ago', :at FROM sync_run",
        at=at - RETENTION - timedelta(days=1),
    )


async def errors(engine: AsyncEngine) -> list[Any]:
    return [r["user_id"] for r in await fetch_all(engine, "SELECT user_id FROM sync_error")]


async def test_a_recorder_prunes_at_its_first_run_open_then_once_per_interval(
    db: Any, engine: AsyncEngine
):
    now = [datetime.now(UTC)]
    backoff = FailureBackoff(base_seconds=1, cap_seconds=60, quarantine_after=5)
    recorder = Recorder(db, backoff=backoff, clock=lambda: now[0])

    async def open_run(*, dry_run: bool = False) -> int:
        request = RunRequest(trigger="event", scope=Scope.USERS, targets=("u1",), dry_run=dry_run)
        return await recorder.open_run(
            request, service_key=SERVICE, retention=RETENTION, window=WINDOW
        )

    await open_run()
    await old_error(engine, at=now[0])
    now[0] += PRUNE_EVERY - timedelta(seconds=1)
    await open_run()
    assert await errors(engine) == ["old"]  # pruned less than a minute ago: left for later

    now[0] += timedelta(seconds=2)
    await open_run(dry_run=True)
    assert await errors(engine) == ["old"]  # a dry run writes nothing, due or not

    await open_run()
    assert await errors(engine) == []
    await old_error(engine, at=now[0])
    now[0] -= timedelta(hours=1)  # the clock was set back: nothing to wait for
    await open_run()
    assert await errors(engine) == []


async def test_a_serving_process_prunes_once_and_a_new_one_prunes_at_its_first_run(
    db: Any, engine: AsyncEngine, settings_for: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "u1", "friendly_name": "A"}])
    request = RunRequest(trigger="event", scope=Scope.USERS, targets=("u1",))
    async with wiring.runtime(settings_for()) as runtime:
        await runtime.runner.run(request)
        await old_error(engine, at=datetime.now(UTC))
        await execute(engine, "UPDATE internal_users SET friendly_name = 'B'")

        await runtime.runner.run(request)

        assert await errors(engine) == ["old"]
    assert fast_emulator.emulator.users()[0]["friendly_name"] == "B"

    async with wiring.runtime(settings_for()) as runtime:
        await runtime.runner.run(request)

    assert await errors(engine) == []
