"""Injected faults: latency, forced statuses, 429s, dropped connections, after-processing writes."""

from __future__ import annotations

import time

import aiohttp
import pytest

from service.emulator import RunningEmulator

USERS = "/v1/Users"


async def create(http: aiohttp.ClientSession, identity: str) -> int:
    async with http.post(USERS, data={"Identity": identity}) as response:
        await response.read()
        return response.status


async def test_latency_delays_matching_calls_only(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    emulator.emulator.set_latency(0.2, operations=["list_users"])
    started = time.perf_counter()
    async with emulator_http.get(USERS) as response:
        assert response.status == 200
    assert time.perf_counter() - started >= 0.2
    started = time.perf_counter()
    assert await create(emulator_http, "fast") == 201
    assert time.perf_counter() - started < 0.2


@pytest.mark.parametrize("status", [500, 503])
async def test_forced_status_for_the_next_n_calls_is_not_processed(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession, status: int
) -> None:
    emulator.emulator.inject_fault("status", count=2, status=status)
    async with emulator_http.post(USERS, data={"Identity": "a"}) as response:
        body = await response.json()
        assert (response.status, body["code"], body["status"]) == (status, 20000 + status, status)
    assert await create(emulator_http, "a") == status
    assert emulator.emulator.users() == []
    assert await create(emulator_http, "a") == 201
    stats = emulator.emulator.stats
    assert (stats["faults"], stats["create_user"]) == (2, 3)


async def test_a_fraction_of_calls_fail(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    emulator.emulator.set_write_limit(None)
    emulator.emulator.inject_fault("status", fraction=0.5, status=503)
    statuses = [await create(emulator_http, f"f{i}") for i in range(200)]
    failed = statuses.count(503)
    assert 50 < failed < 150
    assert statuses.count(201) == 200 - failed == len(emulator.emulator.users())


async def test_fault_limited_to_some_operations(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    emulator.emulator.inject_fault("status", status=500, operations=["fetch_user", "delete_user"])
    assert await create(emulator_http, "ok") == 201
    async with emulator_http.get(f"{USERS}/ok") as response:
        assert response.status == 500
    async with emulator_http.delete(f"{USERS}/ok") as response:
        assert response.status == 500
    assert len(emulator.emulator.users()) == 1


@pytest.mark.parametrize(("retry_after", "header"), [(2, "2"), (0.5, "0.5"), (None, None)])
async def test_injected_429_with_or_without_retry_after(
    emulator: RunningEmulator,
    emulator_http: aiohttp.ClientSession,
    retry_after: float | None,
    header: str | None,
) -> None:
    emulator.emulator.inject_fault("rate_limit", count=1, retry_after=retry_after)
    async with emulator_http.post(USERS, data={"Identity": "r"}) as response:
        body = await response.json()
        assert (response.status, body["code"]) == (429, 20429)
        assert response.headers.get("Retry-After") == header
    assert emulator.emulator.users() == []
    stats = emulator.emulator.stats
    assert (stats["too_many_requests"], stats["rate_limited"]) == (1, 0)


async def test_dropped_connection_gets_no_response_and_changes_nothing(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    emulator.emulator.inject_fault("drop", count=1, operations=["create_user"])
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await create(emulator_http, "d")
    assert emulator.emulator.users() == []
    assert await create(emulator_http, "d") == 201
    assert emulator.emulator.stats["dropped"] == 1


async def test_fault_after_processing_changes_state_then_fails(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    """The ambiguous create: the user exists, the client saw a 500, its retry meets 409."""
    emulator.emulator.inject_fault("status", count=1, status=500, after_processing=True)
    assert await create(emulator_http, "amb") == 500
    assert [u["identity"] for u in emulator.emulator.users()] == ["amb"]
    async with emulator_http.post(USERS, data={"Identity": "amb"}) as response:
        assert (response.status, (await response.json())["code"]) == (409, 50201)


async def test_drop_after_processing_changes_state(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    # POST: aiohttp silently retries idempotent methods (GET, DELETE) on a dropped connection
    emulator.emulator.seed_users([{"identity": "kept"}])
    emulator.emulator.inject_fault("drop", count=1, after_processing=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with emulator_http.post(f"{USERS}/kept", data={"FriendlyName": "New"}) as response:
            await response.read()
    assert emulator.emulator.users()[0]["friendly_name"] == "New"


async def test_after_processing_fault_spares_refused_writes(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    emulator.emulator.seed_users([{"identity": "dup"}])
    emulator.emulator.inject_fault("status", count=1, after_processing=True)
    assert await create(emulator_http, "dup") == 409
    assert await create(emulator_http, "new") == 500


async def test_clear_faults_removes_faults_and_latency(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    emulator.emulator.inject_fault("status", status=503)
    emulator.emulator.set_latency(5)
    emulator.emulator.clear_faults()
    assert await create(emulator_http, "fine") == 201


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "explode"},
        {"kind": "status", "count": 0},
        {"kind": "status", "fraction": 1.5},
        {"kind": "status", "status": 200},
        {"kind": "rate_limit", "after_processing": True},
        {"kind": "drop", "operations": ["create_users"]},
    ],
)
def test_nonsense_faults_are_refused(emulator: RunningEmulator, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        emulator.emulator.inject_fault(**kwargs)  # type: ignore[arg-type]


async def test_faulted_writes_still_count_what_the_client_sent(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    emulator.emulator.inject_fault("status", count=1, status=503)
    headers = {"X-Twilio-Webhook-Enabled": "true"}
    async with emulator_http.post(USERS, data={"Identity": "h"}, headers=headers) as response:
        assert response.status == 503
    stats = emulator.emulator.stats
    assert (stats["create_user"], stats["webhook_enabled"], stats["faults"]) == (1, 1, 1)
