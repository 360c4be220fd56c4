"""The per-Service write limit: user create, update and delete share N actions per second."""

from __future__ import annotations

import asyncio

import aiohttp

from service.emulator import RunningEmulator

USERS = "/v1/Users"


async def create(http: aiohttp.ClientSession, path: str, identity: str) -> tuple[int, int | None]:
    async with http.post(path, data={"Identity": identity}) as response:
        body = await response.json()
        return response.status, body.get("code")


async def test_the_31st_write_within_a_second_is_429_20429_and_not_processed(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    results = [await create(emulator_http, USERS, f"u{i}") for i in range(31)]
    assert results[:30] == [(201, None)] * 30
    assert results[30] == (429, 20429)
    assert len(emulator.emulator.users()) == 30
    stats = emulator.emulator.stats
    assert (stats["rate_limited"], stats["too_many_requests"], stats["create_user"]) == (1, 1, 31)


async def test_updates_and_deletes_share_the_limit_with_creates(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    emulator.emulator.seed_users([{"identity": "a"}, {"identity": "b"}])
    emulator.emulator.set_write_limit(3)
    await create(emulator_http, USERS, "c")
    async with emulator_http.post(f"{USERS}/a", data={"FriendlyName": "A"}) as response:
        assert response.status == 200
    async with emulator_http.delete(f"{USERS}/b") as response:
        assert response.status == 204
    async with emulator_http.delete(f"{USERS}/a") as response:
        assert response.status == 429
    assert [u["identity"] for u in emulator.emulator.users()] == ["a", "c"]


async def test_reads_are_not_limited(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    emulator.emulator.set_write_limit(1)
    for _ in range(5):
        async with emulator_http.get(USERS) as response:
            assert response.status == 200


async def test_each_service_has_its_own_limit(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    other = emulator.emulator.create_service("Other")
    emulator.emulator.set_write_limit(2)
    assert [await create(emulator_http, USERS, f"d{i}") for i in range(3)][-1][0] == 429
    other_users = f"/v2/Services/{other}/Users"
    assert [await create(emulator_http, other_users, f"o{i}") for i in range(2)] == [
        (201, None)
    ] * 2


async def test_the_limit_can_be_turned_off(
    emulator: RunningEmulator, emulator_http: aiohttp.ClientSession
) -> None:
    emulator.emulator.set_write_limit(None)
    results = await asyncio.gather(*(create(emulator_http, USERS, f"x{i}") for i in range(100)))
    assert {status for status, _ in results} == {201}
