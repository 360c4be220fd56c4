"""Every setting a run reads works at both ends of its range: a value start-up accepts never
breaks a run later (`USERSYNC_ERROR_RETENTION_DAYS=999999` used to fail every run on a date out
of range, `USERSYNC_FAILURE_BACKOFF_MAX=1e12` the first run in which a user failed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.domain.runs import RunStatus, Scope
from service.triggers.scheduler import Cadence, cadences, first_due
from tests.e2e.conftest import fetch_all, insert_users
from tests.security.test_bad_settings import bounds

RUN_SETTINGS = (
    "request_timeout",
    "max_retries",
    "max_in_flight",
    "max_deletes_per_run",
    "max_deletes_percent",
    "max_writes_per_run",
    "max_writes_percent",
    "deletion_window",
    "failure_backoff_base",
    "failure_backoff_max",
    "quarantine_after",
    "error_retention_days",
)


def at(end: str) -> dict[str, Any]:
    """Every setting a run reads at its lowest (or highest) accepted value."""
    return {name: bounds(name)[0 if end == "low" else 1] for name in RUN_SETTINGS}


@pytest.mark.parametrize("end", ["low", "high"])
async def test_a_run_with_every_run_setting_at_an_end_of_its_range_works(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, end: str
):
    await insert_users(
        engine, [{"id": "ok", "identity": "fine"}, {"id": "bad", "identity": "x", "role": "nope"}]
    )
    extremes = at(end)

    for _ in range(2):  # the second run also prunes and backs off from recorded state
        run = await sync(Scope.FULL, **extremes)
        assert run.status is RunStatus.PARTIAL, run.error

    [state] = await fetch_all(
        engine,
        "SELECT next_attempt_at - now() AS wait FROM sync_state WHERE user_id = 'bad'",
    )
    assert state["wait"] <= timedelta(seconds=extremes["failure_backoff_max"])
    assert [u["identity"] for u in fast_emulator.emulator.users()] == ["fine"]


@pytest.mark.parametrize("end", ["low", "high"])
def test_the_schedule_computes_its_next_runs_at_an_end_of_the_intervals(end: str):
    pick = 0 if end == "low" else 1
    settings = Settings(
        _env_file=None,
        full_sync_interval=bounds("full_sync_interval")[pick],
        incremental_interval=bounds("incremental_interval")[pick],
    )
    now = datetime.now(UTC)
    for cadence in cadences(settings).values():
        assert cadence.next_after(now) > now
        assert first_due(cadence, last_success=now, now=now) > now
    assert Cadence(0, cron="0 0 29 2 *").next_after(now) > now  # a leap day comes
