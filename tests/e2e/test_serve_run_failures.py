"""Under `serve`, a run that fails or is aborted is logged once and counted with its status.

The runner logs a run's end on its one "run finished" line, with its error (the lane and the
event consumer add nothing), and the metrics count it as recorded: `failed`, or `aborted` for a
run cancelled when the leader stepped down.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from tests.e2e.conftest import execute, fetch_all, insert_users
from tests.e2e.serving import FAST, Served, eventually, leading, serve_app


async def scrape(served: Served) -> str:
    async with served.anonymous.get(served.base_url + "/metrics") as response:
        return await response.text()


async def runs(engine: AsyncEngine, status: str) -> list[dict[str, Any]]:
    return await fetch_all(
        engine, "SELECT trigger, error FROM sync_run WHERE status = :s ORDER BY id", s=status
    )


async def test_a_failed_run_is_logged_once_on_its_summary_line_and_counted_failed(
    db: Any, engine: AsyncEngine, settings_for: Callable[..., Settings]
):
    settings = settings_for(**FAST, source_table="no_such_view")
    with structlog.testing.capture_logs() as logs:
        async with serve_app(settings) as served:
            await leading(served)
            async with served.http.post(served.base_url + "/sync", json={}) as response:
                assert response.status == 202
            await insert_users(engine, [{"id": "e1", "identity": "eve"}])  # an event run
            failed = await eventually(lambda: _two(runs(engine, "failed")))
            metrics = await scrape(served)

    assert sorted(r["trigger"] for r in failed) == ["event", "http"]
    error = failed[0]["error"]
    assert "the source table or view no_such_view does not exist" in error
    about = [e for e in logs if error in json.dumps(e, default=str)]
    assert [(e["event"], e["log_level"]) for e in about] == [("run finished", "error")] * 2
    assert not [e for e in logs if e.get("exc_info")]
    assert 'usersync_runs_total{scope="full",status="failed",trigger="http"} 1.0' in metrics
    assert 'usersync_runs_total{scope="users",status="failed",trigger="event"} 1.0' in metrics


async def test_a_run_cancelled_when_the_leader_steps_down_is_counted_aborted(
    db: Any, engine: AsyncEngine, settings_for: Callable[..., Settings], fast_emulator: Any
):
    fast_emulator.emulator.set_latency(5.0, operations={"list_users"})
    async with serve_app(settings_for(**FAST)) as served:
        await leading(served)
        async with served.http.post(served.base_url + "/sync", json={}) as response:
            assert response.status == 202
        await eventually(lambda: runs(engine, "running"))
        await execute(
            engine,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'user-sync-leader' AND datname = current_database()",
        )
        await eventually(lambda: runs(engine, "aborted"))
        fast_emulator.emulator.set_latency(0)
        metrics = await eventually(lambda: _counted(served, "aborted"))

    assert 'usersync_runs_total{scope="full",status="failed",trigger="http"}' not in metrics


async def _two(found: Any) -> list[dict[str, Any]] | None:
    rows: list[dict[str, Any]] = await found
    return rows if len(rows) >= 2 else None


async def _counted(served: Served, status: str) -> str | None:
    text = await scrape(served)
    line = f'usersync_runs_total{{scope="full",status="{status}",trigger="http"}} 1.0'
    return text if line in text else None
