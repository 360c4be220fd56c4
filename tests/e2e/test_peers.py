"""The peers bench/compare.py measures user-sync against leave the Service equal to the table.

A faster peer that is wrong proves nothing: each peer script (bench/peers/) runs once, as a
subprocess, against the emulator over real HTTP and a real users table of 20 rows, starting
from a Service with one stale user (to update), one user no row names (to delete) and one
already right, and the Service must end holding exactly the table's active users.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.emulator import RunningEmulator
from tests.e2e.conftest import fetch_all, insert_users
from tests.fixtures.emulator import account_auth

PEERS = Path(__file__).resolve().parents[2] / "bench" / "peers"


def table() -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = [
        {
            "id": f"u{n}",
            "identity": f"u{n}@example.com",
            "friendly_name": f"User {n}",
            "attributes": {"n": n},
        }
        for n in range(20)
    ]
    users.append({"id": "gone", "identity": "gone@example.com", "active": False})
    return users


async def seed(http: aiohttp.ClientSession, emulator: RunningEmulator) -> None:
    users = [
        {"identity": "u0@example.com", "friendly_name": "User 0", "attributes": {"n": 0}},
        {"identity": "u1@example.com", "friendly_name": "Stale", "attributes": {"n": -1}},
        {"identity": "stranger@example.com", "friendly_name": "Nobody"},
        {"identity": "gone@example.com", "friendly_name": "Gone"},
    ]
    async with http.post(f"{emulator.base_url}/__emulator/seed", json={"users": users}) as r:
        r.raise_for_status()


async def remote_users(http: aiohttp.ClientSession, emulator: RunningEmulator) -> set[Any]:
    sid = emulator.config.default_service_sid
    url = f"{emulator.base_url}/v1/Services/{sid}/Users?PageSize=50"
    found = set()
    while url:
        async with http.get(url, headers=account_auth(emulator)) as response:
            response.raise_for_status()
            body = await response.json()
        for user in body["users"]:
            attributes = json.dumps(json.loads(user["attributes"] or "{}"), sort_keys=True)
            found.add((user["identity"], user["friendly_name"], attributes))
        url = body["meta"]["next_page_url"]
    return found


async def run_peer(script: str, emulator: RunningEmulator, database_url: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PEERS / script),
        "--service-sid",
        emulator.config.default_service_sid,
        "--account-sid",
        emulator.config.account_sid,
        "--auth-token",
        emulator.config.auth_token,
        "--base-url",
        emulator.base_url,
        "--database-url",
        database_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.parametrize("script", ["sequential.py", "concurrent_writes.py"])
async def test_a_peer_leaves_the_service_equal_to_the_table(
    script: str,
    fast_emulator: RunningEmulator,
    db: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    database_url: str,
) -> None:
    await insert_users(engine, table())
    async with aiohttp.ClientSession() as http:
        await seed(http, fast_emulator)
        result = await run_peer(script, fast_emulator, database_url)
        remote = await remote_users(http, fast_emulator)
    rows = await fetch_all(
        engine, "SELECT identity, friendly_name, attributes FROM internal_users WHERE active"
    )
    wanted = {
        (r["identity"], r["friendly_name"], json.dumps(r["attributes"], sort_keys=True))
        for r in rows
    }
    assert remote == wanted
    assert (result["creates"], result["updates"], result["deletes"]) == (18, 1, 2)
