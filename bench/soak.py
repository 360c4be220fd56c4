"""Soak: `user-sync serve` for minutes under a steady event stream, scheduled full runs and faults.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 20] [--users 5000] [--fault 0.01]
                                   [--seed 1]

One real `user-sync serve` process (the helpers of bench/events.py) against a scratch database
on the local Postgres (BENCH_DATABASE_URL, else 127.0.0.1:5432, else an embedded server) and the
emulator in this process with Twilio's 30 writes/s limit on. The service runs with a full run
every 2 minutes (USERSYNC_FULL_SYNC_INTERVAL=120) and its other defaults (25 writes/s). A
fraction `--fault` of every API call fails: a third each as 500, 429 without Retry-After, and
a dropped connection. The stream updates the friendly name and attributes of one user every
1/`--rate` s; latency is from the UPDATE's commit until the new name is in the emulator.

After the stream stops and every change has landed, the faults are cleared and one last full run
is asked for; then it prints the events applied, p50/p99 latency, the RSS of the serve process
after warm-up (the first full run and 30 s of stream) and at the end (target growth < 10%), its
open connections (pg_stat_activity for its application names, sockets in /proc/<pid>/fd) and the
errors left unresolved (sync_state failed/quarantined plus user_event not done; target 0), and
compares every internal_users row with the emulator.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import aiohttp
import asyncpg
from events import (
    TOKEN,
    Service,
    Watch,
    percentile,
    run_finished,
    scratch_database,
    seed,
    service_env,
    until,
)
from verdict import (
    Tally,
    compare,
    expected_users,
    open_sockets,
    role_sids,
    rss_mb,
    unresolved,
)

from service.db.engine import connect
from service.emulator import EmulatorConfig, Operation, RunningEmulator, running_emulator

WARM_UP_SECONDS = 30.0
DRAIN_SECONDS = 300.0
OPERATIONS = tuple(operation.value for operation in Operation)


async def stream(
    db: asyncpg.Connection,
    watch: Watch,
    *,
    rate: float,
    users: int,
    until_time: float,
    warmed: asyncio.Event,
    warm_at: float,
) -> int:
    """UPDATEs at `rate`/s until `until_time`; returns how many were committed."""
    started = time.perf_counter()
    n = 0
    while (due := started + n / rate) < until_time:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        g = 1 + n % users
        name = f"soak {n}"
        await db.execute(
            "UPDATE internal_users SET friendly_name = $1, attributes = $2::jsonb WHERE id = $3",
            name,
            f'{{"n": {n}}}',
            f"user-{g}",
        )
        watch.expect(f"user{g}@example.com", name, time.perf_counter())
        n += 1
        if not warmed.is_set() and time.perf_counter() >= warm_at:
            warmed.set()
    return n


async def request_full(http: aiohttp.ClientSession, service: Service) -> int:
    """A full run now, or as soon as the scheduled one in progress ends (bounded)."""
    deadline = time.perf_counter() + 600
    while time.perf_counter() < deadline:
        async with http.post(service.url + "/sync", json={"scope": "full"}) as response:
            if response.status == 202:
                return int((await response.json())["run_id"])
            if response.status != 409:
                raise RuntimeError(await response.text())
        await asyncio.sleep(0.5)
    raise TimeoutError("no full run accepted within 600 s")


async def connections(db: asyncpg.Connection, database: str) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT application_name, count(*) AS n FROM pg_stat_activity "
        "WHERE datname = $1 AND application_name LIKE 'user-sync%' GROUP BY 1 ORDER BY 1",
        database,
    )
    return {row["application_name"]: int(row["n"]) for row in rows}


async def main(args: argparse.Namespace) -> None:
    config = EmulatorConfig(seed=args.seed)
    async with scratch_database() as url, running_emulator(config) as emulator:
        db = await connect(url)
        env = service_env(url, emulator) | {
            "USERSYNC_SCHEDULE_ENABLED": "true",
            "USERSYNC_FULL_SYNC_INTERVAL": "120",
        }
        await seed(db, emulator, users=args.users, drift=0)
        service = await Service.start(env)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            try:
                await soak(args, db, http, emulator, service)
            finally:
                await service.stop()
                await db.close()


async def soak(
    args: argparse.Namespace,
    db: asyncpg.Connection,
    http: aiohttp.ClientSession,
    emulator: RunningEmulator,
    service: Service,
) -> None:
    async def leads() -> bool:
        return await service.role(http) == "leader"

    await until(leads, within=60)
    first = await request_full(http, service)
    await until(lambda: _finished(http, service, first), within=600, every=0.5)
    for kind, status in (("status", 500), ("rate_limit", 429), ("drop", 500)):
        emulator.emulator.inject_fault(kind, fraction=args.fault / 3, status=status)  # type: ignore[arg-type]
    before = emulator.emulator.stats

    watch = Watch(emulator)
    watcher = asyncio.create_task(watch.run())
    warmed = asyncio.Event()
    started = time.perf_counter()
    end = started + args.minutes * 60
    writer = asyncio.create_task(
        stream(
            db,
            watch,
            rate=args.rate,
            users=args.users,
            until_time=end,
            warmed=warmed,
            warm_at=started + WARM_UP_SECONDS,
        )
    )
    await asyncio.wait_for(warmed.wait(), timeout=WARM_UP_SECONDS + 60)
    rss_start = rss_mb(service.process.pid)
    print(f"warm-up done: RSS {rss_start:.1f} MB", flush=True)
    sent = await progress(writer, watch, service, end=end)
    try:
        drain = await until(lambda: _drained(watch), within=DRAIN_SECONDS, every=0.05)
    finally:
        watcher.cancel()
    after = emulator.emulator.stats
    calls = {name: after[name] - before[name] for name in (*OPERATIONS, "faults")}
    emulator.emulator.clear_faults()
    last = await request_full(http, service)
    await until(lambda: _finished(http, service, last), within=600, every=0.5)
    final = await run_finished(http, service, last)
    await report(
        args,
        db,
        emulator,
        service,
        sent=sent,
        watch=watch,
        rss_start=rss_start,
        drain=drain,
        calls=calls,
        final=final,
    )


async def progress(writer: asyncio.Task[int], watch: Watch, service: Service, *, end: float) -> int:
    """Waits for the stream, printing a line a minute; bounded by the stream's end."""
    while not writer.done():
        await asyncio.wait({writer}, timeout=60)
        left = max(0.0, end - time.perf_counter())
        print(
            f"  {left:5.0f} s left: applied {len(watch.latencies)}, outstanding "
            f"{watch.outstanding}, RSS {rss_mb(service.process.pid):.1f} MB",
            flush=True,
        )
    return writer.result()


async def report(
    args: argparse.Namespace,
    db: asyncpg.Connection,
    emulator: RunningEmulator,
    service: Service,
    *,
    sent: int,
    watch: Watch,
    rss_start: float,
    drain: float,
    calls: dict[str, int],
    final: dict[str, object] | None,
) -> None:
    rss_end = rss_mb(service.process.pid)
    growth = (rss_end - rss_start) / rss_start * 100
    database = str(await db.fetchval("SELECT current_database()"))
    conns = await connections(db, database)
    sockets = open_sockets(service.process.pid)
    states, events = await unresolved(db)
    runs = await db.fetch("SELECT scope, status, count(*) AS n FROM sync_run GROUP BY 1, 2")
    tally = Tally(runs=sum(int(r["n"]) for r in runs), faults=calls["faults"])
    compare(
        await expected_users(db),
        emulator.emulator.users(),
        tally,
        roles=role_sids(emulator.emulator),
    )
    lat = watch.latencies
    print(f"soak: {args.minutes:g} min, {args.rate:g} changes/s, {args.users} users")
    print(f"  events sent: {sent}, events applied: {len(lat)} (drained {drain:.1f} s after)")
    print(
        f"  event latency: p50 {percentile(lat, 50) * 1000:.0f} ms, "
        f"p99 {percentile(lat, 99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms"
    )
    api_calls = sum(calls[name] for name in OPERATIONS)
    print(
        f"  API calls during the stream: {api_calls}, faults injected: {calls['faults']} "
        f"(asked {args.fault:.2%})"
    )
    kinds = ", ".join(f"{r['scope']}/{r['status']}={r['n']}" for r in runs)
    print(f"  runs: {kinds}")
    print(f"  last full run: {final and final.get('status')} {final and final.get('counts')}")
    verdict = "met" if growth < 10 else "MISSED"
    print(
        f"  RSS start (after warm-up): {rss_start:.1f} MB, end: {rss_end:.1f} MB, "
        f"growth {growth:+.1f}% (target < 10%: {verdict})"
    )
    print(f"  open connections at the end: pg_stat_activity {conns}, sockets {sockets}")
    print(f"  errors left unresolved: {states + events} (sync_state {states}, user_event {events})")
    print(f"  serve logged errors: {len(service.errors)} {sorted(set(service.errors))[:5]}")
    tally.print("  end state")


async def _finished(http: aiohttp.ClientSession, service: Service, run_id: int) -> bool:
    return await run_finished(http, service, run_id) is not None


async def _drained(watch: Watch) -> bool:
    return watch.outstanding == 0


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="changes per second")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--fault", type=float, default=0.01, help="fraction of calls failed")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    return args


if __name__ == "__main__":
    asyncio.run(main(arguments()))
