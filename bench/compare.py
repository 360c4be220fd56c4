"""user-sync side by side with the scripts users write today, in one run (issue 14).

    .venv/bin/python bench/compare.py [--repeat 3] [--latency 0.05 0.15] [--jitter 0.2]
                                      [--sizes 3000 20000] [--rows 1 2 3 4 5] [--quick]

`--quick` is one repetition at 50 ms over 3,000 users only (a smoke run, about 20 minutes).

The emulator runs in its own process at Twilio's 30 writes/s per Service, with each call's
latency drawn around `--latency` (normal law, standard deviation `--jitter` times it). Every
trial starts from the same state for every contender: the emulator reset (a fresh, empty
Service) and a fresh scratch database migrated with `user-sync migrate`'s code and the same
users table. The contenders run the way their users run them, as subprocesses timed from
start to exit (interpreter start and imports included, for all alike). The project's modules
and the peers' are compiled to bytecode first (`compileall`), as pip compiles an installed
wheel's: an editable install run with `PYTHONDONTWRITEBYTECODE=1` (as on the machines these
figures come from) would otherwise compile every module at every start (0.2-0.5 s).

- **user-sync**: the installed CLI, `.venv/bin/user-sync sync --full` (or `--incremental`),
  default settings but `USERSYNC_MAX_WRITES_PERCENT=100` (the bench's changes are meant);
- **A** (`bench/peers/sequential.py`): read the table, list with the official `twilio`
  package, diff, write one at a time;
- **C** (`bench/peers/concurrent_writes.py`): the same diff, 16 writer threads that sleep 1 s
  and retry on 429.

In each repetition the contenders alternate (the order rotates), so drift in the shared
machine's load falls on all of them. Rows, each printed as median [min-max] of the runs,
and the ratio user-sync / best peer (seconds; below 1 is ahead):

1. **initial**: sync of N users into the empty Service: seconds, writes/s as a share of
   30/s, 429s per run. Target: >= 0.97 of 30/s, <= 0.1 % of writes answered 429, faster than
   every peer.
2. **shared**: the same beside another client writing 10/s (`PUT /__emulator/load`): writes/s
   as a share of the 20/s left, and the share of the other client's writes refused during
   the run. Target: >= 0.9 of 20/s, other client's 429s <= 1 %.
3. **change**: 360 changed users over N already in sync (user-sync linked them in an untimed
   first run): user-sync incremental and full, the peers' one mode. Target: <= 1.1 x
   max(listing floor, 360 / 30 s), the listing floor being pages x latency.
4. **no-change**: a full run over N users already in sync (each of `--sizes`). Target:
   <= 1.1 x the paging floor (ceil(N / 50) pages x latency) and no slower than any peer.
5. **serve**: the initial sync of N users through `user-sync serve` (the app
   `service.app.create_app` builds, so `serve`'s pacer), triggered with `POST /sync` and timed
   until `GET /runs/{id}` says it finished: writes/s as a share of 30/s.

Figures from a shared 2-core machine are noisy: read the ranges, repeat before concluding.
Not a test: it prints figures and whether each target was met.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from sync import (
    EmulatorProcess,
    control,
    emulator_process,
    scratch_database,
    seed_local,
    seed_remote,
)

from service.db.engine import connect
from service.emulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, DEFAULT_SERVICE_SID

ROOT = Path(__file__).resolve().parents[1]
USER_SYNC = str(Path(sys.executable).with_name("user-sync"))
PEERS = ROOT / "bench" / "peers"
SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
TWILIO_LIMIT = 30.0
PAGE_SIZE = 50
CHANGED = 360
OTHER_CLIENT = 10.0
API_TOKEN = "bench-compare-token-0123456789"


# --- one trial ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    seconds: float
    writes: int
    too_many_requests: int
    other_attempted: int = 0
    other_refused: int = 0

    @property
    def per_second(self) -> float:
        return self.writes / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Setup:
    """What a trial starts from; every contender of a row gets the same."""

    users: int
    latency: float
    jitter: float
    in_sync: bool = False  # the Service already holds every user (seeded alike)
    changed: int = 0  # rows changed after that
    other_client: float | None = None


Run = Callable[[EmulatorProcess, str], Awaitable[float]]


@dataclass(frozen=True)
class Contender:
    name: str
    run: Run
    is_ours: bool
    links_first: bool = False  # needs an untimed run to link a Service already in sync


def user_sync_env(emulator: EmulatorProcess, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSYNC_", "TWILIO_"))}
    return env | {
        "USERSYNC_DATABASE_URL": database_url,
        "USERSYNC_API_BASE_URL": emulator.base_url,
        "USERSYNC_SERVICE_SID": DEFAULT_SERVICE_SID,
        "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
        "USERSYNC_MAX_WRITES_PERCENT": "100",
        "USERSYNC_LOG_LEVEL": "WARNING",
    }


async def timed_process(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from start to exit; a failed process (or failed user) stops the bench."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = (out + err).decode(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(argv[:3])} exited {process.returncode}:\n{tail}")
    return seconds


def user_sync(scope: str) -> Run:
    async def run(emulator: EmulatorProcess, database_url: str) -> float:
        argv = [USER_SYNC, "sync", f"--{scope}", "--json"]
        return await timed_process(argv, user_sync_env(emulator, database_url))

    return run


def peer(script: str) -> Run:
    async def run(emulator: EmulatorProcess, database_url: str) -> float:
        argv = [
            sys.executable,
            str(PEERS / script),
            "--service-sid",
            DEFAULT_SERVICE_SID,
            "--account-sid",
            DEFAULT_ACCOUNT_SID,
            "--auth-token",
            DEFAULT_AUTH_TOKEN,
            "--base-url",
            emulator.base_url,
            "--database-url",
            database_url,
        ]
        return await timed_process(argv, dict(os.environ))

    return run


async def served(emulator: EmulatorProcess, database_url: str) -> float:
    """A full run through `user-sync serve`'s HTTP API: seconds from `POST /sync` to done.

    The users table was loaded after the migrations, so its trigger queued an event per user;
    `serve` would apply them as event runs beside the full run (measured 2026-12-02: 115.1 s
    against the CLI's 106.7 s in the same round). They are dropped first: the row measures an
    initial sync, as when `serve` is deployed next to a table loaded before it."""
    await drop_queued_events(database_url)
    env = user_sync_env(emulator, database_url) | {
        "USERSYNC_API_TOKEN": API_TOKEN,
        "USERSYNC_SCHEDULE_ENABLED": "false",
        "USERSYNC_HTTP_HOST": "127.0.0.1",
        "USERSYNC_HTTP_PORT": "0",
        "USERSYNC_LOG_FORMAT": "json",
        "USERSYNC_LOG_LEVEL": "INFO",
    }
    process = await asyncio.create_subprocess_exec(
        USER_SYNC,
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{await _serving_port(process)}"
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            await _until_leader(http, base)
            started = time.perf_counter()
            async with http.post(f"{base}/sync", json={"scope": "full"}) as response:
                if response.status != 202:
                    raise RuntimeError(f"POST /sync: {response.status} {await response.text()}")
                run_id = (await response.json())["run_id"]
            while True:
                async with http.get(f"{base}/runs/{run_id}") as response:
                    run = (await response.json())["run"]
                if run["status"] != "running":
                    break
                await asyncio.sleep(0.05)
            seconds = time.perf_counter() - started
        if run["status"] != "succeeded":
            raise RuntimeError(f"the served run did not succeed: {run}")
        return seconds
    finally:
        process.terminate()
        await process.wait()


async def drop_queued_events(database_url: str) -> None:
    connection = await connect(database_url)
    try:
        await connection.execute("DELETE FROM user_event")
    finally:
        await connection.close()


async def _serving_port(process: asyncio.subprocess.Process) -> int:
    """Read serve's JSON log until it says which port it listens on; the rest is drained."""
    assert process.stderr is not None
    while raw := await asyncio.wait_for(process.stderr.readline(), timeout=60):
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("event") == "serving":
            asyncio.get_running_loop().create_task(_drain(process.stderr))
            return int(line["port"])
    raise RuntimeError("serve exited before serving")


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def _until_leader(http: aiohttp.ClientSession, base: str) -> None:
    for _ in range(600):
        async with http.get(f"{base}/readyz") as response:
            if response.status == 200 and (await response.json()).get("role") == "leader":
                return
        await asyncio.sleep(0.05)
    raise RuntimeError("serve did not become the leader within 30 s")


USER_SYNC_FULL = Contender("user-sync", user_sync("full"), True, links_first=True)
USER_SYNC_INCREMENTAL = Contender(
    "user-sync incremental", user_sync("incremental"), True, links_first=True
)
PEER_A = Contender("A sequential", peer("sequential.py"), False)
PEER_C = Contender("C 16 threads", peer("concurrent_writes.py"), False)
SERVE = Contender("user-sync serve", served, True)


async def trial(
    emulator: EmulatorProcess, setup: Setup, contender: Contender, server: str
) -> Outcome:
    """One contender once, from `setup`; what the emulator counted during its run."""
    base = emulator.base_url
    async with scratch_database(server) as url, aiohttp.ClientSession() as http:
        await seed_local(url, setup.users)
        await control(http, base, "POST", "reset")
        if setup.in_sync:
            await seed_remote(base, setup.users)
            if contender.links_first:
                await user_sync("full")(emulator, url)
        await change_rows(url, setup.changed)
        fault = {"kind": "latency", "seconds": setup.latency, "jitter": setup.jitter}
        await control(http, base, "POST", "faults", fault)
        await control(http, base, "DELETE", "stats")
        before = {"attempted": 0, "refused": 0}
        if setup.other_client:
            body = {"writes_per_second": setup.other_client}
            await control(http, base, "PUT", "load", body)
            await asyncio.sleep(1.0)  # the other client is writing before we start
            before = await control(http, base, "GET", "load")
        seconds = await contender.run(emulator, url)
        stats = await control(http, base, "GET", "stats")
        after = before
        if setup.other_client:
            after = await control(http, base, "PUT", "load", {"writes_per_second": None})
    attempts = sum(stats.get(k, 0) for k in ("create_user", "update_user", "delete_user"))
    writes = attempts - stats.get("too_many_requests", 0)  # the emulator counts refused ones
    return Outcome(
        seconds,
        writes,
        stats.get("too_many_requests", 0),
        after["attempted"] - before["attempted"],
        after["refused"] - before["refused"],
    )


async def change_rows(url: str, count: int) -> None:
    """Rename `count` users, the same ones for every contender (ordered by a hash of id)."""
    if not count:
        return
    connection = await connect(url)
    try:
        await connection.execute(
            "UPDATE internal_users SET friendly_name = friendly_name || ' (changed)' "
            "WHERE id IN (SELECT id FROM internal_users ORDER BY md5(id) LIMIT $1)",
            count,
        )
    finally:
        await connection.close()


# --- rows ---------------------------------------------------------------------------------


@dataclass
class Row:
    title: str
    setup: Setup
    contenders: list[Contender]
    floor: float | None = None  # seconds no contender can beat
    budget: float = TWILIO_LIMIT  # writes/s the contenders have
    target: str = ""
    met: Callable[[Row, str], bool] = lambda row, name: True
    results: dict[str, list[Outcome]] = field(default_factory=dict)


def median_of(row: Row, name: str, value: Callable[[Outcome], float]) -> float:
    return statistics.median(value(o) for o in row.results[name])


def best_peer_seconds(row: Row) -> float:
    peers = [c.name for c in row.contenders if not c.is_ours]
    return min((median_of(row, p, lambda o: o.seconds) for p in peers), default=math.inf)


def rejected_share(outcome: Outcome) -> float:
    return outcome.too_many_requests / max(1, outcome.writes + outcome.too_many_requests)


def at_the_limit(row: Row, name: str) -> bool:
    """>= 0.97 of the budget, <= 0.1 % 429s, and faster than every peer."""
    share = median_of(row, name, lambda o: o.per_second) / row.budget
    return (
        share >= 0.97
        and median_of(row, name, rejected_share) <= 0.001
        and median_of(row, name, lambda o: o.seconds) < best_peer_seconds(row)
    )


def sharing(row: Row, name: str) -> bool:
    """>= 0.9 of what the other client leaves, and <= 1 % of its writes refused."""
    refused = median_of(row, name, lambda o: o.other_refused / max(1, o.other_attempted))
    return median_of(row, name, lambda o: o.per_second) / row.budget >= 0.9 and refused <= 0.01


def near_the_floor(row: Row, name: str) -> bool:
    """<= 1.1 x the floor and no slower than any peer."""
    seconds = median_of(row, name, lambda o: o.seconds)
    assert row.floor is not None
    return seconds <= 1.1 * row.floor and seconds <= best_peer_seconds(row)


def pages(users: int) -> int:
    return math.ceil(users / PAGE_SIZE)


def rows_for(args: argparse.Namespace, latency: float) -> list[Row]:
    jitter = args.jitter * latency
    initial_size = args.sizes[0]
    rows: list[Row] = []
    if 1 in args.rows:
        rows.append(
            Row(
                f"1. initial sync of {initial_size:,}",
                Setup(initial_size, latency, jitter),
                [USER_SYNC_FULL, PEER_A, PEER_C],
                floor=initial_size / TWILIO_LIMIT,
                target=">= 0.97 of 30/s, <= 0.1% 429s, ahead of every peer",
                met=at_the_limit,
            )
        )
    if 2 in args.rows:
        left = TWILIO_LIMIT - OTHER_CLIENT
        rows.append(
            Row(
                f"2. initial sync of {initial_size:,} beside a client writing {OTHER_CLIENT:g}/s",
                Setup(initial_size, latency, jitter, other_client=OTHER_CLIENT),
                [USER_SYNC_FULL, PEER_A, PEER_C],
                floor=initial_size / left,
                budget=left,
                target=f">= 0.9 of {left:g}/s, other client's 429s <= 1%",
                met=sharing,
            )
        )
    if 3 in args.rows:
        listing = pages(initial_size) * latency
        rows.append(
            Row(
                f"3. change run, {CHANGED} changed of {initial_size:,}",
                Setup(initial_size, latency, jitter, in_sync=True, changed=CHANGED),
                [USER_SYNC_INCREMENTAL, USER_SYNC_FULL, PEER_A, PEER_C],
                floor=max(listing, min(CHANGED, initial_size) / TWILIO_LIMIT),
                target="<= 1.1 x floor, ahead of every peer",
                met=near_the_floor,
            )
        )
    if 4 in args.rows:
        for size in args.sizes:
            rows.append(
                Row(
                    f"4. no-change full run over {size:,}",
                    Setup(size, latency, jitter, in_sync=True),
                    [USER_SYNC_FULL, PEER_A, PEER_C],
                    floor=pages(size) * latency,
                    target="<= 1.1 x floor, ahead of every peer",
                    met=near_the_floor,
                )
            )
    if 5 in args.rows:
        rows.append(
            Row(
                f"5. initial sync of {initial_size:,} through serve (POST /sync)",
                Setup(initial_size, latency, jitter),
                [SERVE],
                floor=initial_size / TWILIO_LIMIT,
                target=">= 0.97 of 30/s, <= 0.1% 429s",
                met=at_the_limit,
            )
        )
    return rows


async def measure(emulator: EmulatorProcess, row: Row, args: argparse.Namespace) -> None:
    """`--repeat` rounds, the contenders alternating, the first one rotating each round."""
    for round_ in range(args.repeat):
        turn = round_ % len(row.contenders)
        for contender in row.contenders[turn:] + row.contenders[:turn]:
            outcome = await trial(emulator, row.setup, contender, args.server)
            row.results.setdefault(contender.name, []).append(outcome)
            print(
                f"    [{row.title} @ {row.setup.latency * 1000:.0f} ms, round {round_ + 1}]"
                f" {contender.name}: {outcome.seconds:.1f} s, {outcome.writes} writes,"
                f" {outcome.too_many_requests} 429s",
                flush=True,
            )


# --- report -------------------------------------------------------------------------------


def spread(values: list[float], fmt: str) -> str:
    median = statistics.median(values)
    if len(values) == 1:
        return format(median, fmt)
    return f"{format(median, fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def describe(row: Row) -> list[str]:
    lines = [f"  {row.title} (floor {row.floor:.1f} s)" if row.floor else f"  {row.title}"]
    best_peer = best_peer_seconds(row)
    for contender in row.contenders:
        runs = row.results[contender.name]
        seconds = [o.seconds for o in runs]
        share = [o.per_second / row.budget for o in runs]
        rejected = [float(o.too_many_requests) for o in runs]
        refused_share = [rejected_share(o) for o in runs]
        line = (
            f"    {contender.name:<22} {spread(seconds, '.1f')} s;"
            f" {spread(share, '.3f')} of {row.budget:g}/s;"
            f" 429s {spread(rejected, '.0f')} ({spread(refused_share, '.2%')})"
        )
        if row.setup.other_client:
            refused = [o.other_refused / max(1, o.other_attempted) for o in runs]
            line += f"; other client refused {spread(refused, '.2%')}"
        if row.floor:
            line += f"; x floor {statistics.median(seconds) / row.floor:.2f}"
        if contender.is_ours and best_peer < math.inf:
            line += f"; / best peer {statistics.median(seconds) / best_peer:.2f}"
        if contender.is_ours and row.target:
            line += f"; target {row.target}: {'met' if row.met(row, contender.name) else 'MISSED'}"
        lines.append(line)
    return lines


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.05, 0.15])
    parser.add_argument(
        "--jitter", type=float, default=0.2, help="standard deviation, a share of the latency"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[3_000, 20_000])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--server", default=SERVER, help="Postgres for the scratch databases")
    parser.add_argument("--quick", action="store_true", help="1 repetition, 50 ms, 3,000 only")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.latency, args.sizes = 1, [0.05], [3_000]
    return args


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    print(
        f"bench/compare.py on {os.cpu_count()} CPUs: {args.repeat} round(s), latency"
        f" {', '.join(f'{x * 1000:g} ms' for x in args.latency)} (jitter sd {args.jitter:g} x),"
        f" sizes {args.sizes}, rows {args.rows}",
        flush=True,
    )
    for tree in ("service", "bench"):
        compileall.compile_dir(ROOT / tree, quiet=1)
    report: list[str] = []
    async with emulator_process(write_limit=TWILIO_LIMIT) as emulator:
        for latency in args.latency:
            report.append(f"\n== latency {latency * 1000:g} ms")
            for row in rows_for(args, latency):
                await measure(emulator, row, args)
                report += describe(row)
                print("\n".join(describe(row)), flush=True)
    print("\n".join(report))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
