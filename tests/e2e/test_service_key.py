"""Every lock and run record is keyed by the Service's `IS…` sid, never by credentials.

Replicas of one Service that hold different credentials (an API key rolled out replica by
replica next to the auth token) or name the default Service differently (its sid set, or left
unset and resolved through `GET /v1/Configuration`) compete for one leader lock: exactly one
leads. A replica that cannot learn its Service is not ready and never leads, and takes no lock
meanwhile; once it can, it competes like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service import wiring
from service.config import Settings
from service.domain.runs import Scope
from service.reconcile.run import RunRequest
from tests.e2e.conftest import fetch_all, insert_users
from tests.e2e.serving import FAST, TOKEN, Served, ServeProcess, eventually, leading, serve_app
from tests.fixtures.emulator import TEST_API_KEY_SECRET, TEST_API_KEY_SID, account_auth
from tests.integration.test_client_errors import closed_port

WATCH_SECONDS = 1.5
"""How long a standby is watched for leading too: several of its lock attempts (FAST: 0.2 s)."""

API_KEY_ONLY = {
    "account_sid": None,
    "auth_token": None,
    "api_key": TEST_API_KEY_SID,
    "api_secret": TEST_API_KEY_SECRET,
}
"""An API key and no account sid: the old key was `default:SK…` for this replica and
`default:AC…` for one with the auth token, so both led."""


def two_replicas(pair: str, emulator: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Settings of two replicas of the default Service (beyond the e2e tier's account token)."""
    if pair == "credentials":
        return API_KEY_ONLY, {}
    return {"service_sid": emulator.config.default_service_sid}, {}


async def readiness(served: Served) -> tuple[int, dict[str, Any]]:
    async with served.anonymous.get(served.base_url + "/readyz") as response:
        return response.status, await response.json()


async def never_leads(served: Served, *, within: float = WATCH_SECONDS) -> None:
    """Fails as soon as `served` says it leads; returns after `within` seconds of standing by."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        assert await served.role() == "standby"
        await asyncio.sleep(0.05)


ADVISORY_LOCKS = (
    "SELECT ((classid::bigint << 32) | objid::bigint) AS key FROM pg_locks"
    " WHERE locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def advisory_locks(engine: AsyncEngine) -> list[int]:
    """The advisory locks held in the test database, as the 64-bit keys they were taken with."""
    return [row["key"] for row in await fetch_all(engine, ADVISORY_LOCKS)]


async def lock_id(engine: AsyncEngine, name: str) -> int:
    [row] = await fetch_all(engine, "SELECT hashtextextended(:name, 0) AS key", name=name)
    return int(row["key"])


@pytest.mark.parametrize("pair", ["credentials", "sid-set-or-unset"])
async def test_two_replicas_of_the_default_service_elect_exactly_one_leader(
    db: Any,
    engine: AsyncEngine,
    settings_for: Callable[..., Settings],
    fast_emulator: Any,
    pair: str,
):
    first_settings, second_settings = two_replicas(pair, fast_emulator)
    sid = fast_emulator.config.default_service_sid
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(serve_app(settings_for(**FAST, **first_settings)))
        await leading(first)
        async with serve_app(settings_for(**FAST, **second_settings)) as second:
            await never_leads(second)  # on the old code it led too, under a key of its own
            await eventually(lambda: _knows_its_service(second))

            assert await first.role() == "leader"
            async with first.http.post(first.base_url + "/sync", json={}) as response:
                assert response.status == 202
            async with second.http.post(second.base_url + "/sync", json={}) as response:
                assert (response.status, (await response.json())["error"]) == (503, "standby")
            for served in (first, second):
                status, body = await readiness(served)
                assert (status, body["status"], body["service_sid"]) == (200, "ready", sid)
            assert await lock_id(engine, f"user-sync:leader:{sid}") in await advisory_locks(engine)

            await stack.aclose()  # the leader goes: the standby was waiting for the same lock
            await leading(second)


async def _knows_its_service(served: Served) -> bool:
    return (await readiness(served))[1].get("service_sid") is not None


async def test_every_run_records_the_service_sid_whether_resolved_or_set(
    db: Any, engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await sync()
    await sync(service_sid=fast_emulator.config.default_service_sid)
    await sync(**API_KEY_ONLY)

    runs = await fetch_all(engine, "SELECT service_key, status FROM sync_run ORDER BY id")
    sid = fast_emulator.config.default_service_sid
    assert runs == [{"service_key": sid, "status": "succeeded"}] * 3


async def test_the_process_addresses_the_service_it_resolved_even_if_the_default_changes(
    db: Any, engine: AsyncEngine, settings_for: Callable[..., Settings], fast_emulator: Any
):
    """Its locks, records and writes name one Service: following a new default is a restart."""
    first = fast_emulator.config.default_service_sid
    second = fast_emulator.emulator.create_service("Second")
    await insert_users(engine, [{"id": "a1", "identity": "ada"}])
    async with wiring.runtime(settings_for()) as runtime:
        await make_default(fast_emulator, second)
        report = await runtime.runner.run(RunRequest(trigger="test", scope=Scope.FULL))

    assert report.counts["created"] == 1
    assert [u["identity"] for u in fast_emulator.emulator.users(first)] == ["ada"]
    assert fast_emulator.emulator.users(second) == []
    [run] = await fetch_all(engine, "SELECT service_key FROM sync_run")
    assert run["service_key"] == runtime.service_sid == first


async def make_default(emulator: Any, service_sid: str) -> None:
    async with (
        aiohttp.ClientSession(base_url=emulator.base_url, headers=account_auth(emulator)) as http,
        http.post("/v1/Configuration", data={"DefaultChatServiceSid": service_sid}) as response,
    ):
        assert response.status == 200


@pytest.mark.parametrize("cause", ["unreachable", "refused credentials"])
async def test_a_replica_that_cannot_resolve_its_service_is_not_ready_and_never_leads(
    db: Any,
    engine: AsyncEngine,
    settings_for: Callable[..., Settings],
    fast_emulator: Any,
    cause: str,
):
    broken = (
        {"api_base_url": f"http://127.0.0.1:{closed_port()}"}
        if cause == "unreachable"
        else {"auth_token": "not-the-auth-token"}
    )
    async with serve_app(settings_for(**FAST, **broken, max_retries=0)) as served:
        await eventually(lambda: _problem(served))
        await never_leads(served)

        status, body = await readiness(served)
        assert (status, body["status"], body["role"], body["service_sid"]) == (
            503,
            "not_ready",
            "standby",
            None,
        )
        expected = "could not connect" if cause == "unreachable" else "HTTP 401"
        assert "GET /v1/Configuration" in body["service_problem"]
        assert expected in body["service_problem"]
        assert "not-the-auth-token" not in body["service_problem"]
        assert await advisory_locks(engine) == []  # no lock at all: no stand-in key either


async def _problem(served: Served) -> bool:
    return "service_problem" in (await readiness(served))[1]


async def test_a_replica_keeps_trying_and_leads_once_its_service_is_known(
    db: Any, settings_for: Callable[..., Settings], fast_emulator: Any
):
    fast_emulator.emulator.inject_fault("status", status=503, operations={"fetch_configuration"})
    async with serve_app(settings_for(**FAST, max_retries=0)) as served:
        await eventually(lambda: _attempted(fast_emulator, times=3))
        status, body = await readiness(served)
        assert (status, body["role"], body["service_sid"]) == (503, "standby", None)
        assert "HTTP 503" in body["service_problem"]

        fast_emulator.emulator.clear_faults()
        await leading(served)

        status, body = await readiness(served)
        assert (status, body["status"]) == (200, "ready")
        assert body["service_sid"] == fast_emulator.config.default_service_sid
        assert "service_problem" not in body


async def _attempted(emulator: Any, *, times: int) -> bool:
    return emulator.emulator.stats["fetch_configuration"] >= times


# --- real `user-sync serve` processes ---------------------------------------------------------


async def test_serve_processes_with_an_api_key_and_the_auth_token_have_one_leader(
    db: Any, database_url: str, engine: AsyncEngine, fast_emulator: Any
):
    common = {
        "database_url": database_url,
        "api_base_url": fast_emulator.base_url,
        "api_token": TOKEN,
        "write_rate": 1000,
        "write_rate_limit_raised": True,
        "schedule_enabled": False,
        "leader_retry_interval": 0.2,
    }
    with_key = {
        **common,
        "TWILIO_API_KEY": TEST_API_KEY_SID,
        "TWILIO_API_SECRET": TEST_API_KEY_SECRET,
    }
    with_token = {
        **common,
        "TWILIO_ACCOUNT_SID": fast_emulator.config.account_sid,
        "TWILIO_AUTH_TOKEN": fast_emulator.config.auth_token,
    }
    started: list[ServeProcess] = []
    try:
        async with aiohttp.ClientSession() as http:
            for settings in (with_key, with_token):
                started.append(await ServeProcess.start(settings))
            await eventually(lambda: _one_leads(started, http), within=20)
            for _ in range(int(WATCH_SECONDS / 0.05)):  # on the old code, both led
                assert sorted(await _roles(started, http)) == ["leader", "standby"]
                await asyncio.sleep(0.05)
    finally:
        for process in started:
            await process.stop()
    sid = fast_emulator.config.default_service_sid
    assert all(p.logged("service resolved") for p in started)
    keys = {line["key"] for p in started for line in p.lines if line.get("event") == "leader"}
    assert keys == {f"user-sync:leader:{sid}"}


async def _roles(started: list[ServeProcess], http: aiohttp.ClientSession) -> list[str | None]:
    return [await process.role(http) for process in started]


async def _one_leads(started: list[ServeProcess], http: aiohttp.ClientSession) -> bool:
    roles = await _roles(started, http)
    return None not in roles and "leader" in roles
