"""Emulator speed: seeding, deep paging and write throughput (targets in the module docstring).

Targets: seeding 100,000 users well under 10 s; a page costs the same at the end of a 100,000
user list as at its start (O(page), not O(offset)); serving at least 1,000 writes/s with the
write limit and latency off, so the emulator is never the bottleneck of a client under test.

    .venv/bin/python bench/bench_emulator.py
"""

from __future__ import annotations

import asyncio
import base64
import time

import aiohttp

from service.emulator import EmulatorConfig, running_emulator

USERS = 100_000
WRITES = 3_000
CONCURRENCY = 32


async def main() -> None:
    config = EmulatorConfig(write_limit_per_second=None)
    async with running_emulator(config) as running:
        started = time.perf_counter()
        running.emulator.seed_users({"identity": f"user{i:06d}"} for i in range(USERS))
        print(f"seed {USERS:,} users: {time.perf_counter() - started:.2f}s")

        token = f"{config.account_sid}:{config.auth_token}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(token).decode()}
        async with aiohttp.ClientSession(base_url=running.base_url, headers=headers) as http:
            await list_everything(http)
            await write_burst(http)


async def list_everything(http: aiohttp.ClientSession) -> None:
    url: str | None = "/v1/Users?PageSize=50"
    timings: list[float] = []
    total = 0
    started = time.perf_counter()
    while url:
        page_started = time.perf_counter()
        async with http.get(url) as response:
            page = await response.json()
        timings.append(time.perf_counter() - page_started)
        total += len(page["users"])
        url = page["meta"]["next_page_url"]
    first = sum(timings[:100]) / 100 * 1000
    last = sum(timings[-100:]) / 100 * 1000
    elapsed = time.perf_counter() - started
    print(f"list {total:,} users in {len(timings)} pages: {elapsed:.2f}s")
    print(f"  mean page: first 100 {first:.2f} ms, last 100 {last:.2f} ms")


async def write_burst(http: aiohttp.ClientSession) -> None:
    queue = iter(range(WRITES))

    async def worker() -> None:
        for i in queue:
            async with http.post("/v1/Users", data={"Identity": f"new{i}"}) as response:
                assert response.status == 201, response.status

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    print(f"{WRITES:,} creates, {CONCURRENCY} concurrent: {WRITES / elapsed:,.0f} writes/s")


if __name__ == "__main__":
    asyncio.run(main())
