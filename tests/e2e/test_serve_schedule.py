"""Scheduled runs end to end, and triggers that arrive during a run coalesced into one."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service import wiring
from service.config import Settings
from service.domain.runs import Scope
from service.metrics import Metrics
from service.reconcile.run import RunRequest
from service.triggers.lane import BulkLane
from tests.e2e.conftest import fetch_all, generate_users
from tests.e2e.serving import FAST, eventually, quietly, serve_app


async def bulk_runs(engine: AsyncEngine) -> list[dict[str, Any]]:
    return await fetch_all(
        engine,
        "SELECT trigger, scope, status, started_at, finished_at FROM sync_run "
        "WHERE scope <> 'users' ORDER BY id",
    )


async def test_triggers_arriving_during_a_run_are_coalesced_into_one_following_run(
    db: Any, settings_for: Callable[..., Settings], engine: AsyncEngine, fast_emulator: Any
):
    await generate_users(engine, 10)
    fast_emulator.emulator.set_latency(0.3, operations=["list_users"])
    metrics = Metrics()
    async with wiring.runtime(settings_for()) as runtime:
        lane = BulkLane(runtime.runner, metrics=metrics)
        worker = asyncio.create_task(lane.run())
        lane.submit(RunRequest(trigger="schedule", scope=Scope.FULL))
        await eventually(lambda: _running(lane))
        for _ in range(5):
            lane.submit(RunRequest(trigger="schedule", scope=Scope.INCREMENTAL))
        await eventually(lambda: _finished(engine, 2))
        await asyncio.sleep(0.2)  # nothing else starts
        lane.stop_intake()
        await worker

    runs = await bulk_runs(engine)
    assert [(r["scope"], r["status"]) for r in runs] == [
        ("full", "succeeded"),
        ("incremental", "succeeded"),
    ]
    coalesced = metrics.registry.get_sample_value(
        "usersync_triggers_coalesced_total", {"trigger": "schedule"}
    )
    assert coalesced == 4


async def test_the_leader_runs_full_and_incremental_on_schedule_one_at_a_time(
    db: Any, settings_for: Callable[..., Settings], engine: AsyncEngine, fast_emulator: Any
):
    async with quietly(engine):
        await generate_users(engine, 20)
    schedule = {"schedule_enabled": True, "full_sync_interval": 0.8, "incremental_interval": 0.3}
    async with serve_app(settings_for(**{**FAST, **schedule})):
        await eventually(lambda: _scheduled(engine, full=2, incremental=2), within=10)

    runs = [r for r in await bulk_runs(engine) if r["finished_at"] is not None]
    assert {r["trigger"] for r in runs} == {"schedule"}
    assert runs[0]["scope"] == "full"
    assert len(fast_emulator.emulator.users()) == 20
    for earlier, later in itertools.pairwise(runs):
        assert earlier["finished_at"] <= later["started_at"]  # never two at once


async def _running(lane: BulkLane) -> bool:
    return lane.running is not None


async def _finished(engine: AsyncEngine, count: int) -> bool:
    runs = await bulk_runs(engine)
    return len([r for r in runs if r["finished_at"] is not None]) >= count


async def _scheduled(engine: AsyncEngine, *, full: int, incremental: int) -> bool:
    runs = [r for r in await bulk_runs(engine) if r["finished_at"] is not None]
    scopes = [r["scope"] for r in runs]
    return scopes.count("full") >= full and scopes.count("incremental") >= incremental
