"""How fast the client goes against the emulator: paced writes and sequential list pages.

    .venv/bin/python bench/client.py [--writes 600] [--pages 50] [--latency 0.05]

Starts the emulator in this process (strict 30 writes/s per Service, injected latency on every
call) and measures:

- writes/s of `create_user` at the client's write rate (29.5/s) with 32 in flight; the target
  is >= 95% of Twilio's 30/s with zero 429s;
- list pages/s of `iter_user_pages` against its floor: paging is sequential (each page's token
  comes from the previous page), so at best one page per round trip, 1 / (latency + overhead),
  where overhead is the round trip measured with no injected latency; the target is >= 90%.

Not a test: it prints figures, and says whether each target was met.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import aiohttp

from service.conversations import CallRetry, ConversationsClient, WriteLimiter
from service.conversations.endpoints import ApiFlavor
from service.emulator import EmulatorConfig, RunningEmulator, running_emulator

TWILIO_LIMIT = 30.0


@dataclass(frozen=True)
class WriteRun:
    writes: int
    seconds: float
    rejected: int
    retries: int
    wait: float

    @property
    def per_second(self) -> float:
        return self.writes / self.seconds


def make_client(
    running: RunningEmulator, session: aiohttp.ClientSession, *, rate: float
) -> ConversationsClient:
    return ConversationsClient(
        session,
        base_url=running.base_url,
        api=ApiFlavor.CONVERSATIONS_V1,
        service_sid=None,
        credentials=(running.config.account_sid, running.config.auth_token),
        limiter=WriteLimiter(rate, max_in_flight=32),
        webhook_enabled=False,
        timeout=10.0,
        retry=CallRetry(max_retries=5),
    )


async def run_writes(
    running: RunningEmulator,
    session: aiohttp.ClientSession,
    *,
    rate: float,
    count: int,
    latency: float,
) -> WriteRun:
    running.emulator.reset()
    running.emulator.set_latency(latency)
    client = make_client(running, session, rate=rate)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker() -> None:
        while not queue.empty():
            await client.create_user(f"bench-{queue.get_nowait():05d}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(32)))
    seconds = time.perf_counter() - started
    stats = running.emulator.stats
    assert len(running.emulator.users()) == count
    wait = client.limiter.write_wait_seconds
    return WriteRun(count, seconds, stats["too_many_requests"], client.stats.retries, wait)


async def time_pages(client: ConversationsClient) -> tuple[int, float]:
    started = time.perf_counter()
    pages = [len(page) async for page in client.iter_user_pages()]
    return len(pages), time.perf_counter() - started


async def run_pages(
    running: RunningEmulator, session: aiohttp.ClientSession, *, pages: int, latency: float
) -> None:
    running.emulator.reset()
    running.emulator.seed_users([{"identity": f"page-{n:06d}"} for n in range(pages * 50)])
    client = make_client(running, session, rate=25)
    await time_pages(client)  # warm the connection
    count, bare = await time_pages(client)
    overhead = bare / count
    running.emulator.set_latency(latency)
    count, seconds = await time_pages(client)
    measured = count / seconds
    floor = 1 / (latency + overhead)
    ratio = measured / floor
    print(f"list pages:        {count} pages of 50 in {seconds:.2f} s")
    print(f"  round trip overhead without latency: {overhead * 1000:.2f} ms/page")
    print(f"  pages/s:         {measured:.2f}")
    print(f"  floor:           {floor:.2f} pages/s  (1 / ({latency * 1000:.0f} ms + overhead))")
    print(f"  ratio:           {ratio:.3f}  target >= 0.90: {'met' if ratio >= 0.9 else 'MISSED'}")


def print_writes(label: str, run: WriteRun) -> None:
    share = run.per_second / TWILIO_LIMIT
    print(f"{label}: {run.writes} creates in {run.seconds:.2f} s")
    print(f"  writes/s:        {run.per_second:.2f}  ({share:.1%} of Twilio's 30/s)")
    print(f"  429s:            {run.rejected}   retries: {run.retries}")
    print(f"  limiter wait:    {run.wait:.1f} s cumulative over all writers")


async def main(args: argparse.Namespace) -> None:
    config = EmulatorConfig(write_limit_per_second=TWILIO_LIMIT)
    async with running_emulator(config) as running, aiohttp.ClientSession() as session:
        latency = args.latency
        print(f"emulator at {running.base_url}, limit 30 writes/s, latency {latency * 1000:.0f} ms")
        run = await run_writes(running, session, rate=29.5, count=args.writes, latency=latency)
        print_writes("writes at 29.5/s", run)
        met = run.per_second >= 0.95 * TWILIO_LIMIT and run.rejected == 0
        print(f"  target >= 28.5/s and zero 429s: {'met' if met else 'MISSED'}")
        if args.also_at_30:
            again = await run_writes(running, session, rate=30, count=args.writes, latency=latency)
            print_writes("writes at 30/s (for comparison)", again)
        await run_pages(running, session, pages=args.pages, latency=latency)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=600)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--also-at-30", action="store_true", help="repeat the writes at 30/s")
    asyncio.run(main(parser.parse_args()))
