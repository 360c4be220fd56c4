"""Speed and memory of the reconcile engine against the emulator and a real Postgres.

    .venv/bin/python bench/sync.py                      # every scenario, default sizes
    .venv/bin/python bench/sync.py --scenario ceiling   # one of them
    .venv/bin/python bench/sync.py --scenario memory --memory-users 300000,1000000

Scenarios (targets from issue 3; figures are printed, never asserted):

- paced: initial sync of 3,000 users against the emulator's real limit of 30 writes/s, at the
  default write rate (25/s) and at 29.5/s: writes/s as a fraction of 30 (target >= 0.95 at
  29.5/s; 25/s caps it at 0.83) and 429s (target 0). The emulator runs in its own process.
- ceiling: initial sync of 20,000 users with the emulator's limit off, the emulator in its own
  process so it does not share a core with the engine: users/s (target >= 1,000).
- change: a full run that updates 360 of 3,000 linked users at the emulator's 30 writes/s and
  `--latency` (50 ms), client at 29.5/s: wall time against max(listing, 12 s of writes); the
  changed users the state remembers are written while the listing runs (`reconcile.early`).
- full: a no-change full run over 100,000 users: API calls (must be the list pages; nobody
  names a role, so the Roles list is not read) and wall time against the sequential paging
  floor (the client alone paging).
- incremental: a no-change incremental run over 100,000 users: zero API calls, under 5 s.
- changed: an incremental run that writes 360 of 3,000 linked users (new friendly names) at
  the emulator's 30 writes/s limit, client at 29.5/s, at each `--changed-latencies` (default 50
  and 150 ms per call), reading each user first (`USERSYNC_READ_BEFORE_WRITE=true`, what every
  run did before issue 14) and writing from what the state remembers (the default): wall time
  against the 12 s the writes alone take at 30/s, and the reads.
- memory: peak RSS of `python -m service sync` (full) over 1,000,000 users, the emulator in
  another process (its RSS reported apart): target under 300 MB.

Every scenario creates its own scratch database (`usersync_bench_<pid>_<n>`) on the server at
`--server` (default: the local one, user postgres), migrates it and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import math
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

try:
    import psutil
except ImportError:  # not a dependency of the service: fall back to /proc
    psutil = None
import structlog
from sqlalchemy.engine import make_url

from service import remote, wiring
from service.config import Settings
from service.db import migrate
from service.db.engine import connect, create_engine
from service.domain.runs import Scope
from service.emulator import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
)
from service.reconcile.run import RunReport, RunRequest

ROOT = Path(__file__).resolve().parents[1]
TWILIO_LIMIT = 30.0
SEED_BATCH = 20_000
_databases = itertools.count(1)


# --- scratch database ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def scratch_database(server: str) -> AsyncIterator[str]:
    """A new database on `server`, migrated to head, dropped on the way out."""
    name = f"usersync_bench_{os.getpid()}_{next(_databases)}"
    admin = await connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        engine = create_engine(url, pool_size=1)
        await migrate.upgrade(engine)
        await engine.dispose()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def seed_local(url: str, count: int) -> float:
    """`count` internal users, set-based; the same users `remote_spec` describes. Seconds."""
    started = time.perf_counter()
    connection = await connect(url)
    try:
        await connection.execute(
            "INSERT INTO internal_users (id, identity, friendly_name, attributes) "
            "SELECT 'user-' || g, 'user' || g || '@example.com', 'User ' || g, "
            "jsonb_build_object('n', g, 'team', 'team-' || (g % 7)) "
            "FROM generate_series(1, $1::int) g",
            count,
        )
        await connection.execute("ANALYZE internal_users")
    finally:
        await connection.close()
    return time.perf_counter() - started


def remote_spec(g: int) -> dict[str, Any]:
    return {
        "identity": f"user{g}@example.com",
        "friendly_name": f"User {g}",
        "attributes": {"n": g, "team": f"team-{g % 7}"},
    }


# --- the emulator in another process ------------------------------------------------------


@dataclass(frozen=True)
class EmulatorProcess:
    base_url: str
    pid: int

    def rss_mb(self) -> float:
        return rss_mb(self.pid)


def _proc_status_mb(pid: int, field: str) -> float:
    """A `Vm...` line of /proc/<pid>/status in MB (0 once the process is gone)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    if psutil is None:
        return _proc_status_mb(pid, "VmRSS")
    with contextlib.suppress(psutil.Error):
        return float(psutil.Process(pid).memory_info().rss) / 2**20
    return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def emulator_process(*, write_limit: float = 0) -> AsyncIterator[EmulatorProcess]:
    """`python -m service emulator` on a free port, until the block ends."""
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "emulator",
        "--port",
        str(port),
        "--write-limit",
        str(write_limit),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        if b"listening on" not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        yield EmulatorProcess(f"http://127.0.0.1:{port}", process.pid)
    finally:
        process.terminate()
        await process.wait()


async def control(
    http: aiohttp.ClientSession, base_url: str, method: str, path: str, body: Any = None
) -> Any:
    async with http.request(method, f"{base_url}/__emulator/{path}", json=body) as response:
        response.raise_for_status()
        return await response.json() if response.status != 204 else None


async def seed_remote(base_url: str, count: int) -> float:
    """`count` remote users through the control API, in batches. Seconds."""
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        for first in range(1, count + 1, SEED_BATCH):
            users = [remote_spec(g) for g in range(first, min(first + SEED_BATCH, count + 1))]
            await control(http, base_url, "POST", "seed", {"users": users})
    return time.perf_counter() - started


async def emulator_stats(base_url: str, *, reset: bool = False) -> dict[str, int]:
    async with aiohttp.ClientSession() as http:
        stats: dict[str, int] = await control(http, base_url, "GET", "stats")
        if reset:
            await control(http, base_url, "DELETE", "stats")
        return stats


# --- the engine -------------------------------------------------------------------------


def settings_for(url: str, base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "api_base_url": base_url,
        "account_sid": DEFAULT_ACCOUNT_SID,
        "auth_token": DEFAULT_AUTH_TOKEN,
        "log_level": "WARNING",
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


def fast_settings(url: str, base_url: str, *, in_flight: int) -> Settings:
    """No pacing: the emulator's limit is off, so is ours (as if Twilio had raised it)."""
    return settings_for(
        url,
        base_url,
        write_rate=1_000_000.0,
        write_rate_limit_raised=True,
        max_in_flight=in_flight,
    )


@dataclass(frozen=True)
class Timed:
    report: RunReport
    seconds: float


async def run_sync(settings: Settings, scope: Scope) -> Timed:
    async with wiring.runtime(settings) as runtime:
        started = time.perf_counter()
        report = await runtime.runner.run(RunRequest(trigger="bench", scope=scope))
        seconds = time.perf_counter() - started
    if report.status.value != "succeeded":
        raise RuntimeError(f"the run did not succeed: {report.status} {report.error}")
    return Timed(report, seconds)


def counts(report: RunReport) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(report.counts.items())) or "nothing"


# --- 1. paced -----------------------------------------------------------------------------


async def paced(args: argparse.Namespace) -> list[str]:
    users, latency = args.paced_users, args.latency
    summary = []
    print(f"\n== paced: initial sync of {users:,} users at the emulator's 30 writes/s limit")
    print(f"   emulator in its own process, latency {latency * 1000:.0f} ms per call")
    async with emulator_process(write_limit=TWILIO_LIMIT) as emulator:
        for rate in args.paced_rates:
            async with aiohttp.ClientSession() as http:
                await control(http, emulator.base_url, "POST", "reset")
                fault = {"kind": "latency", "seconds": latency}
                await control(http, emulator.base_url, "POST", "faults", fault)
            async with scratch_database(args.server) as url:
                await seed_local(url, users)
                settings = settings_for(url, emulator.base_url, write_rate=rate)
                timed = await run_sync(settings, Scope.FULL)
            stats = await emulator_stats(emulator.base_url, reset=True)
            writes = stats["create_user"]
            per_second = writes / timed.seconds
            share = per_second / TWILIO_LIMIT
            kept = per_second / rate
            target = f"target >= 0.95 of the set rate: {'met' if kept >= 0.95 else 'MISSED'}"
            print(f"-- client write rate {rate:g}/s (USERSYNC_WRITE_RATE={rate:g})")
            print(f"   run:           {timed.seconds:.1f} s, {counts(timed.report)}")
            print(f"   writes:        {writes:,} creates, {per_second:.2f} writes/s")
            print(f"   of the set rate: {kept:.3f}  ({target})")
            print(f"   of Twilio's 30/s: {share:.3f}  (the most at this rate: {rate / 30:.3f})")
            print(f"   429s:          {stats['too_many_requests']}  (target 0)")
            summary.append(
                f"paced {users:,} users at {rate:g}/s: {share:.3f} of 30/s, "
                f"{stats['too_many_requests']} 429s"
            )
    return summary


# --- 2. ceiling ---------------------------------------------------------------------------


async def ceiling(args: argparse.Namespace) -> list[str]:
    users = args.ceiling_users
    summary = []
    print(f"\n== ceiling: initial sync of {users:,} users, emulator limit and latency off")
    print("   emulator in its own process (python -m service emulator --write-limit 0)")
    for in_flight in args.ceiling_in_flight:
        async with emulator_process() as emulator, scratch_database(args.server) as url:
            await seed_local(url, users)
            settings = fast_settings(url, emulator.base_url, in_flight=in_flight)
            timed = await run_sync(settings, Scope.FULL)
            stats = await emulator_stats(emulator.base_url)
        rate = users / timed.seconds
        verdict = "met" if rate >= 1000 else "MISSED"
        print(f"-- max_in_flight {in_flight}")
        print(f"   run:           {timed.seconds:.2f} s, {counts(timed.report)}")
        print(f"   users/s:       {rate:,.0f}  (target >= 1,000: {verdict})")
        print(
            f"   creates seen by the emulator: {stats['create_user']:,}, 429s: "
            f"{stats['too_many_requests']}"
        )
        summary.append(f"ceiling {users:,} users, max_in_flight {in_flight}: {rate:,.0f} users/s")
    return summary


# --- 2b. change run ----------------------------------------------------------------------


async def change_local(url: str, count: int) -> None:
    """Rename `count` internal users (every n-th), so a run has `count` updates to write."""
    connection = await connect(url)
    try:
        await connection.execute(
            "UPDATE internal_users SET friendly_name = friendly_name || ' (changed)' "
            "WHERE id IN (SELECT id FROM internal_users ORDER BY id LIMIT $1)",
            count,
        )
    finally:
        await connection.close()


async def change_run(args: argparse.Namespace) -> list[str]:
    """A full run with `--change-writes` updates among `--change-users` linked users, at the
    emulator's 30 writes/s and `--latency`: its floor is max(listing, writes at 30/s)."""
    users, writes, latency = args.change_users, args.change_writes, args.latency
    print(
        f"\n== change run: {writes:,} updates over {users:,} users, latency {latency * 1000:.0f} ms"
    )
    summary = []
    async with emulator_process(write_limit=TWILIO_LIMIT) as emulator:
        for _ in range(args.nochange_repeats):
            async with aiohttp.ClientSession() as http:
                await control(http, emulator.base_url, "POST", "reset")
            async with scratch_database(args.server) as url:
                await seed_local(url, users)
                await seed_remote(emulator.base_url, users)
                settings = settings_for(
                    url,
                    emulator.base_url,
                    write_rate=args.change_rate,
                    max_writes_percent=100,  # 12% of the linked users: over the default guard
                )
                await run_sync(settings, Scope.FULL)
                async with aiohttp.ClientSession() as http:
                    fault = {"kind": "latency", "seconds": latency}
                    await control(http, emulator.base_url, "POST", "faults", fault)
                _pages, listing = await paging_floor(settings)
                await change_local(url, writes)
                await emulator_stats(emulator.base_url, reset=True)
                timed = await run_sync(settings, Scope.FULL)
                stats = await emulator_stats(emulator.base_url)
            floor = max(listing, writes / TWILIO_LIMIT)
            print(f"   run:           {timed.seconds:.2f} s, {counts(timed.report)}")
            print(f"   updates:       {stats['update_user']:,}, 429s {stats['too_many_requests']}")
            print(
                f"   floor:         {floor:.2f} s = max(listing {listing:.2f} s, "
                f"{writes} writes / 30/s); sum {listing + writes / TWILIO_LIMIT:.2f} s"
            )
            print(f"   wall / floor:  {timed.seconds / floor:.2f}")
            summary.append(
                f"change run {writes} writes over {users:,}: {timed.seconds:.2f} s = "
                f"{timed.seconds / floor:.2f} x max(listing {listing:.2f} s, {writes / 30:.1f} s)"
            )
    return summary


# --- 3 and 4. no-change runs --------------------------------------------------------------


async def paging_floor(settings: Settings) -> tuple[int, float]:
    """Pages and seconds for the client alone to page through every user (best of two)."""
    async with aiohttp.ClientSession() as session:
        client = remote.conversations_client(session, settings)
        best = math.inf
        pages = 0
        for _ in range(2):
            started = time.perf_counter()
            pages = len([p async for p in client.iter_user_pages()])
            best = min(best, time.perf_counter() - started)
        return pages, best


async def no_change(args: argparse.Namespace, *, full: bool, incremental: bool) -> list[str]:
    users = args.nochange_users
    print(f"\n== no-change runs over {users:,} users (both sides seeded alike, then linked)")
    async with emulator_process() as emulator, scratch_database(args.server) as url:
        local = await seed_local(url, users)
        remote = await seed_remote(emulator.base_url, users)
        print(f"   seeded: Postgres {local:.1f} s, emulator {remote:.1f} s")
        settings = fast_settings(url, emulator.base_url, in_flight=32)
        first = await run_sync(settings, Scope.FULL)
        print(
            f"   first full run (links every user): {first.seconds:.1f} s, {counts(first.report)}"
        )
        if args.nochange_latency > 0:
            async with aiohttp.ClientSession() as http:
                fault = {"kind": "latency", "seconds": args.nochange_latency}
                await control(http, emulator.base_url, "POST", "faults", fault)
            print(f"   latency {args.nochange_latency * 1000:.0f} ms per call from here on")
        summary = []
        if full:
            for _ in range(args.nochange_repeats):
                summary.append(await _no_change_full(settings, emulator))
        if incremental:
            summary.append(await _no_change_incremental(settings, emulator))
        return summary


async def _no_change_full(settings: Settings, emulator: EmulatorProcess) -> str:
    pages, floor = await paging_floor(settings)
    await emulator_stats(emulator.base_url, reset=True)
    timed = await run_sync(settings, Scope.FULL)
    stats = await emulator_stats(emulator.base_url)
    expected = pages  # nobody names a role, so the Roles list is never read
    writes = stats["create_user"] + stats["update_user"] + stats["delete_user"]
    print("-- full run, nothing to change")
    print(f"   run:           {timed.seconds:.2f} s, {counts(timed.report)}")
    print(f"   not planned:   {timed.report.unplanned:,} users left unchanged in SQL")
    print(
        f"   API calls:     {timed.report.api_calls:,} (emulator saw {stats['list_users']:,} "
        f"list pages, {stats['list_roles']} roles list, {writes} writes)"
    )
    verdict = "equal" if timed.report.api_calls == expected and writes == 0 else "DIFFERENT"
    print(f"   expected:      {expected:,} = the list pages ({verdict})")
    print(f"   paging floor:  {floor:.2f} s (the client alone, {pages:,} sequential pages)")
    print(f"   wall / floor:  {timed.seconds / floor:.2f}")
    return (
        f"no-change full: {timed.report.api_calls:,} calls ({verdict} to {expected:,}), "
        f"{timed.seconds:.2f} s = {timed.seconds / floor:.2f} x the paging floor {floor:.2f} s"
    )


async def _no_change_incremental(settings: Settings, emulator: EmulatorProcess) -> str:
    await emulator_stats(emulator.base_url, reset=True)
    timed = await run_sync(settings, Scope.INCREMENTAL)
    stats = await emulator_stats(emulator.base_url)
    calls = sum(stats.values())
    verdict = "met" if timed.seconds < 5 and timed.report.api_calls == 0 else "MISSED"
    print("-- incremental run, nothing to change")
    print(f"   run:           {timed.seconds:.2f} s, {counts(timed.report)}")
    print(f"   API calls:     {timed.report.api_calls} (emulator counted {calls})")
    print(f"   target zero calls and under 5 s: {verdict}")
    return f"no-change incremental: {timed.report.api_calls} calls, {timed.seconds:.2f} s"


# --- 5. changed -------------------------------------------------------------------------


async def changed(args: argparse.Namespace) -> list[str]:
    users, writes = args.changed_users, args.changed_writes
    print(f"\n== changed: incremental runs writing {writes} of {users:,} linked users")
    summary = []
    async with (
        emulator_process(write_limit=TWILIO_LIMIT) as emulator,
        scratch_database(args.server) as url,
    ):
        await seed_local(url, users)
        await seed_remote(emulator.base_url, users)
        await run_sync(fast_settings(url, emulator.base_url, in_flight=32), Scope.FULL)
        for latency in args.changed_latencies:
            for read_first in (True, False) * args.changed_repeats:
                summary.append(await _changed_run(url, emulator, latency, writes, read_first))
    return summary


async def _changed_run(
    url: str, emulator: EmulatorProcess, latency: float, writes: int, read_first: bool
) -> str:
    connection = await connect(url)
    try:  # new names for the first `writes` users, different on every run
        await connection.execute(
            "UPDATE internal_users SET friendly_name = 'User ' || id || ' ' || $2::text"
            " WHERE id IN (SELECT 'user-' || g FROM generate_series(1, $1::int) g)",
            writes,
            str(time.monotonic_ns()),
        )
    finally:
        await connection.close()
    async with aiohttp.ClientSession() as http:  # keep the users: no reset
        await control(http, emulator.base_url, "DELETE", "faults")
        fault = {"kind": "latency", "seconds": latency}
        await control(http, emulator.base_url, "POST", "faults", fault)
    await emulator_stats(emulator.base_url, reset=True)
    settings = settings_for(
        url,
        emulator.base_url,
        write_rate=29.5,
        max_writes_percent=100,  # 360 of 3,000 is 12 percent: an everyday batch, not held
        read_before_write=read_first,
    )
    timed = await run_sync(settings, Scope.INCREMENTAL)
    stats = await emulator_stats(emulator.base_url, reset=True)
    mode = "read first " if read_first else "from state"
    floor = writes / TWILIO_LIMIT
    line = (
        f"changed {writes} writes, {latency * 1000:.0f} ms, {mode}: {timed.seconds:.2f} s ="
        f" {timed.seconds / floor:.2f} x {floor:.0f} s, {stats['fetch_user']} reads,"
        f" {stats['update_user']} updates"
    )
    print(f"   {line}  ({counts(timed.report)})")
    return line


# --- 6. memory ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Peak:
    seconds: float
    rss_mb: float
    hwm_mb: float
    exit_code: int


async def sync_process_peak(settings_env: dict[str, str], *, scope: str) -> Peak:
    """Run `python -m service sync` and sample its RSS (and VmHWM, the kernel's own peak)
    every 20 ms; its log goes to a file, shown if the run fails."""
    env = {**os.environ, **settings_env}
    with tempfile.TemporaryFile() as log:
        peak = await _watched(env, scope=scope, log=log)
        if peak.exit_code != 0:
            log.seek(0)
            print(log.read().decode(errors="replace")[-3000:])
    return peak


async def _watched(env: dict[str, str], *, scope: str, log: IO[bytes]) -> Peak:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "sync",
        f"--{scope}",
        "--json",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    started = time.perf_counter()
    rss = hwm = 0.0
    while process.returncode is None:
        rss = max(rss, rss_mb(process.pid))
        hwm = max(hwm, _proc_status_mb(process.pid, "VmHWM"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=0.02)
    return Peak(time.perf_counter() - started, rss, hwm, process.returncode)


async def memory(args: argparse.Namespace) -> list[str]:
    summary = []
    for users in args.memory_users:
        print(f"\n== memory: full runs over {users:,} users in a separate process")
        async with emulator_process() as emulator, scratch_database(args.server) as url:
            local = await seed_local(url, users)
            remote = await seed_remote(emulator.base_url, users)
            print(f"   seeded: Postgres {local:.1f} s, emulator {remote:.1f} s")
            env = {
                "USERSYNC_DATABASE_URL": url,
                "USERSYNC_API_BASE_URL": emulator.base_url,
                "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
                "USERSYNC_LOG_LEVEL": "WARNING",
            }
            for label in ("first (links every user)", "second (nothing to change)"):
                peak = await sync_process_peak(env, scope="full")
                verdict = "met" if peak.hwm_mb < 300 else "MISSED"
                print(
                    f"-- sync process, {label} full run: {peak.seconds:.1f} s, "
                    f"exit {peak.exit_code}"
                )
                print(
                    f"   peak RSS:      {max(peak.rss_mb, peak.hwm_mb):.0f} MB (VmHWM "
                    f"{peak.hwm_mb:.0f} MB, sampled {peak.rss_mb:.0f} MB; target < 300: "
                    f"{verdict})"
                )
                summary.append(
                    f"memory {users:,} users, {label}: peak RSS "
                    f"{max(peak.rss_mb, peak.hwm_mb):.0f} MB in {peak.seconds:.0f} s"
                )
            print(f"   emulator process RSS: {emulator.rss_mb():.0f} MB (serving {users:,} users)")
    return summary


# --- main -------------------------------------------------------------------------------


def _ints(value: str) -> list[int]:
    return [int(v.replace("_", "")) for v in value.split(",")]


def _floats(value: str) -> list[float]:
    return [float(v) for v in value.split(",")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--scenario",
        choices=("all", "paced", "ceiling", "change", "full", "incremental", "changed", "memory"),
        default="all",
    )
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--paced-users", type=int, default=3_000)
    parser.add_argument("--paced-rates", type=_floats, default=[25.0, 29.5])
    parser.add_argument("--latency", type=float, default=0.05, help="paced: seconds per call")
    parser.add_argument("--ceiling-users", type=int, default=20_000)
    parser.add_argument(
        "--ceiling-in-flight", type=_ints, default=[16, 32, 64], help="max_in_flight values"
    )
    parser.add_argument("--change-users", type=int, default=3_000)
    parser.add_argument("--change-writes", type=int, default=360)
    parser.add_argument("--change-rate", type=float, default=29.5, help="change: write rate")
    parser.add_argument("--nochange-users", type=int, default=100_000)
    parser.add_argument(
        "--nochange-latency", type=float, default=0.0, help="full/incremental: seconds per call"
    )
    parser.add_argument("--nochange-repeats", type=int, default=1, help="full: runs measured")
    parser.add_argument("--memory-users", type=_ints, default=[1_000_000])
    parser.add_argument("--changed-users", type=int, default=3_000)
    parser.add_argument("--changed-writes", type=int, default=360)
    parser.add_argument("--changed-latencies", type=_floats, default=[0.05, 0.15])
    parser.add_argument("--changed-repeats", type=int, default=2)
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    chosen = args.scenario
    print(f"bench/sync.py on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    summary = []
    if chosen in ("all", "paced"):
        summary += await paced(args)
    if chosen in ("all", "ceiling"):
        summary += await ceiling(args)
    if chosen in ("all", "change"):
        summary += await change_run(args)
    if chosen in ("all", "full", "incremental"):
        both = chosen == "all"
        summary += await no_change(
            args, full=both or chosen == "full", incremental=both or chosen == "incremental"
        )
    if chosen in ("all", "changed"):
        summary += await changed(args)
    if chosen in ("all", "memory"):
        summary += await memory(args)
    print("\n== summary")
    for line in summary:
        print(f"   {line}")


def quiet_logs() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )


@contextlib.contextmanager
def _timed_total() -> Iterator[None]:
    started = time.perf_counter()
    yield
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    quiet_logs()
    with _timed_total():
        asyncio.run(main(parse_args()))
