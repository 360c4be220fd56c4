"""Real `user-sync serve` processes: failover after SIGKILL, SIGTERM during a run, restarts."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.conftest import fetch_all, generate_users, insert_users
from tests.e2e.serving import TOKEN, ServeProcess, environment, eventually, quietly

Start = Callable[..., Awaitable[ServeProcess]]


@pytest.fixture
async def start(db: Any, database_url: str, fast_emulator: Any) -> AsyncIterator[Start]:
    """Start `user-sync serve` processes against the test database and the emulator."""
    started: list[ServeProcess] = []

    async def launch(**overrides: Any) -> ServeProcess:
        settings = {
            "database_url": database_url,
            "TWILIO_ACCOUNT_SID": fast_emulator.config.account_sid,
            "TWILIO_AUTH_TOKEN": fast_emulator.config.auth_token,
            "api_base_url": fast_emulator.base_url,
            "api_token": TOKEN,
            "write_rate": 1000,
            "write_rate_limit_raised": True,
            "retry_backoff_base": 0.01,
            "retry_backoff_max": 0.05,
            "schedule_enabled": False,
            "leader_retry_interval": 0.5,
            "event_poll_interval": 1,
            **overrides,
        }
        process = await ServeProcess.start(settings)
        started.append(process)
        return process

    yield launch
    for process in started:
        await process.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        yield session


def has_user(emulator: Any, identity: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(u["identity"] == identity for u in emulator.emulator.users())

    return check


async def test_a_standby_takes_over_within_seconds_when_the_leader_is_killed(
    start: Start, http: aiohttp.ClientSession, engine: AsyncEngine, fast_emulator: Any
):
    first = await start()
    await eventually(lambda: _is(first, http, "leader"))
    second = await start()
    await eventually(lambda: _is(second, http, "standby"))

    first.process.kill()
    killed_at = time.monotonic()
    await eventually(lambda: _is(second, http, "leader"), within=15)
    takeover = time.monotonic() - killed_at

    assert takeover < 15
    await insert_users(engine, [{"id": "f1", "identity": "felix"}])
    await eventually(has_user(fast_emulator, "felix"))


async def test_sigterm_during_a_run_records_it_aborted_and_exits_in_time(
    start: Start, http: aiohttp.ClientSession, engine: AsyncEngine, fast_emulator: Any
):
    async with quietly(engine):
        await generate_users(engine, 200)
    fast_emulator.emulator.set_latency(0.3, operations=["create_user"])
    server = await start(max_in_flight=4, shutdown_grace=1)
    await eventually(lambda: _is(server, http, "leader"))
    async with http.post(server.base_url + "/sync", json={"scope": "full"}) as response:
        run_id = (await response.json())["run_id"]
    await eventually(lambda: _created_some(fast_emulator))

    server.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    code = await server.wait(within=30)

    assert code == 0
    assert time.monotonic() - stopped_at < 30
    assert server.logged("stopped")
    [run] = await fetch_all(engine, "SELECT status, error FROM sync_run WHERE id = :id", id=run_id)
    assert run["status"] == "aborted"
    assert 0 < len(fast_emulator.emulator.users()) < 200


async def test_events_written_while_no_service_runs_are_handled_at_start(
    start: Start, http: aiohttp.ClientSession, engine: AsyncEngine, fast_emulator: Any
):
    server = await start()
    await eventually(lambda: _is(server, http, "leader"))
    server.signal(signal.SIGTERM)
    assert await server.wait(within=30) == 0

    await insert_users(engine, [{"id": "d1", "identity": "dora"}, {"id": "d2", "identity": "dan"}])

    restarted = await start()
    await eventually(has_user(fast_emulator, "dora"))
    await eventually(has_user(fast_emulator, "dan"))
    await eventually(lambda: _all_done(engine))  # done only after the outcome is recorded
    assert await restarted.role(http) == "leader"
    async with http.get(restarted.base_url + "/runs", headers={"Authorization": "Bearer x"}):
        pass
    logs = json.dumps(server.lines + restarted.lines)
    assert "events applied" in logs
    for secret in (TOKEN, fast_emulator.config.auth_token, "x"):
        assert f"Bearer {secret}" not in logs
    assert TOKEN not in logs
    assert fast_emulator.config.auth_token not in logs


async def _is(server: ServeProcess, http: aiohttp.ClientSession, role: str) -> bool:
    return await server.role(http) == role


async def _created_some(emulator: Any) -> bool:
    return emulator.emulator.stats.get("create_user", 0) >= 8


async def _all_done(engine: AsyncEngine) -> bool:
    return not await fetch_all(engine, "SELECT id FROM user_event WHERE done_at IS NULL")


async def test_serve_refuses_to_start_without_an_api_token(database_url: str):
    env = environment({"database_url": database_url, "api_token": ""})
    env.pop("USERSYNC_API_TOKEN")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert b"USERSYNC_API_TOKEN is required by serve" in stderr
