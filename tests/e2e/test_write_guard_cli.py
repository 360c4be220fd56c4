"""The write guard through the command line and the served API, as an operator meets it.

An accidental `UPDATE internal_users SET attributes = …` over every row is held with nothing
written (the emulator counts no create or update), `sync`, `sync --json`, `status` and
`GET /runs/{id}` say how many distinct users a run wrote or would write and what is held, and
`--allow-writes` (`"allow_writes": true`) releases it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from tests.e2e.conftest import execute, fetch_all, insert_users
from tests.e2e.serving import FAST, Served, eventually, leading, serve_app
from tests.e2e.test_cli import cli_env, run_cli
from tests.e2e.test_write_guard import attributes, writes_made

LIMITS = {"USERSYNC_MAX_WRITES_PER_RUN": "5", "USERSYNC_MAX_WRITES_PERCENT": "100"}
MASS_UPDATE = """UPDATE internal_users SET attributes = '{"oops": true}'"""


async def test_the_cli_holds_a_mass_update_and_allow_writes_releases_it(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, **LIMITS)
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    code, first, _ = await run_cli("sync", "--json", env=env)
    before = attributes(fast_emulator)
    fast_emulator.emulator.reset_stats()
    await execute(engine, MASS_UPDATE)

    held_code, held, _ = await run_cli("sync", "--json", env=env)
    _, text, _ = await run_cli("sync", env=env)
    _, status, _ = await run_cli("status", "--json", env=env)
    _, status_text, _ = await run_cli("status", env=env)
    untouched = (writes_made(fast_emulator), attributes(fast_emulator) == before)
    released_code, released, _ = await run_cli("sync", "--allow-writes", "--json", env=env)

    assert (code, json.loads(first)["users_written"]) == (0, 20)  # the initial sync
    assert untouched == (0, True)
    report = json.loads(held)
    assert (held_code, report["users_written"], report["writes_held"]) == (0, 0, 20)
    assert "exceed max_writes_per_run (5)" in report["write_held_reason"]
    assert len(report["held_writes"]) == 20
    assert "20 user write(s) held back" in text
    assert "--allow-writes" in text
    assert "0 distinct user(s) created or updated" in text
    assert len(json.loads(status)["held_writes"]) == json.loads(status)["held_writes_total"] == 20
    assert "Writes held" in status_text
    done = json.loads(released)
    assert (released_code, done["users_written"], done["writes_held"]) == (0, 20, 0)
    assert writes_made(fast_emulator) == 20
    assert json.loads(status)["runs"][0]["writes_held"] == 20


async def test_the_cli_dry_run_says_what_it_would_write_and_that_it_would_be_held(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, **LIMITS)
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    await run_cli("sync", env=env)
    await execute(engine, MASS_UPDATE)
    fast_emulator.emulator.reset_stats()

    code, out, _ = await run_cli("sync", "--dry-run", "--json", env=env)
    _, text, _ = await run_cli("sync", "--dry-run", env=env)

    plan = json.loads(out)
    assert code == 0
    assert (plan["would_write"], plan["users_written"], plan["writes_held"]) == (20, 20, 20)
    assert "20 user(s) would be created or updated" in text
    assert "20 user write(s) would be held back" in text
    assert writes_made(fast_emulator) == 0


async def test_the_served_api_holds_a_mass_update_and_allow_writes_releases_it(
    db: Any,
    engine: AsyncEngine,
    sync: Any,
    settings_for: Callable[..., Settings],
    fast_emulator: Any,
):
    limits = {"max_writes_per_run": 5, "max_writes_percent": 100}
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    await sync(**limits)
    async with serve_app(settings_for(**FAST, **limits)) as served:
        await leading(served)
        fast_emulator.emulator.reset_stats()
        await execute(engine, MASS_UPDATE)  # its events' run is held too, if it comes first
        held = await _run(served, {"scope": "incremental"})
        listed = await eventually(lambda: _all_held(served))
        async with served.anonymous.get(served.base_url + "/metrics") as response:
            metrics = await response.text()
        untouched = writes_made(fast_emulator)
        released = await _run(served, {"scope": "incremental", "allow_writes": True})
        async with served.anonymous.get(served.base_url + "/metrics") as response:
            written = await response.text()

    assert untouched == 0
    assert held["run"]["users_written"] == 0
    assert held["allow_writes"] is False
    assert (len(listed["held_writes"]), listed["held_writes_total"]) == (20, 20)
    assert "max_writes_per_run" in listed["held_writes"][0]["held_reason"]
    assert "usersync_writes_held 20.0" in metrics
    assert 'usersync_users_written_total{trigger="http"} 20.0' in written
    assert (released["run"]["users_written"], released["run"]["writes_held"]) == (20, 0)
    assert released["allow_writes"] is True
    assert released["held_writes"] == []
    assert writes_made(fast_emulator) == 20


async def _all_held(served: Served) -> Any:
    listed = await served.get_json("/runs")
    return listed if len(listed["held_writes"]) == 20 else None


async def _run(served: Served, body: dict[str, Any]) -> Any:
    async with served.http.post(served.base_url + "/sync", json=body) as response:
        assert response.status == 202
        run_id = (await response.json())["run_id"]

    async def finished() -> Any:
        detail = await served.get_json(f"/runs/{run_id}")
        return detail if detail["run"]["status"] != "running" else None

    return await eventually(finished)


async def test_served_events_trickling_in_are_held_once_the_windows_budget_is_spent(
    db: Any,
    engine: AsyncEngine,
    sync: Any,
    settings_for: Callable[..., Settings],
    fast_emulator: Any,
):
    limits = {"max_writes_per_run": 3, "max_writes_percent": 100}
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    await sync(**limits)
    async with serve_app(settings_for(**FAST, **limits)) as served:
        await leading(served)
        await eventually(lambda: _events_done(engine))  # the initial inserts' events
        fast_emulator.emulator.reset_stats()
        for n in range(6):  # one row at a time, each its own event and run
            await execute(
                engine, "UPDATE internal_users SET friendly_name = 'x' WHERE id = :u", u=f"u{n:02d}"
            )
            await eventually(lambda: _events_done(engine))
        listed = await served.get_json("/runs")

    assert writes_made(fast_emulator) == 3
    assert sorted(h["user_id"] for h in listed["held_writes"]) == ["u03", "u04", "u05"]
    assert "3 earlier in the window" in listed["held_writes"][0]["held_reason"]


async def _events_done(engine: AsyncEngine) -> bool:
    [row] = await fetch_all(engine, "SELECT count(*) AS n FROM user_event WHERE done_at IS NULL")
    return row["n"] == 0
