"""Crash and fault campaigns: real processes, real Postgres, the emulator; the end state is exact.

    .venv/bin/python bench/campaign.py kill    [--count 20] [--seed 1] [--users 2000]
    .venv/bin/python bench/campaign.py restart [--count 2]  [--seed 1] [--users 2000]
    .venv/bin/python bench/campaign.py events  [--count 5]  [--seed 1] [--users 2000]
    .venv/bin/python bench/campaign.py races   [--count 5]  [--seed 1] [--users 200]

- kill: `--count` rounds; each changes the local table (creates, updates, role changes,
  renames, deactivations, reactivations, row deletions) and SIGKILLs `python -m service sync`
  (full or incremental) at a random moment; then one clean full run. Checked after every round:
  protected remote users (unknown locally, which `managed` must never delete) are all there and no
  active, unrenamed user's remote sid changed; at the end: the remote state is exact and no
  sync_run row is left "running".
- restart: on a private embedded Postgres (pgserver, never the machine's shared server): Postgres
  stopped for 3 s and started again during a `sync` run and during `serve` (events keep coming;
  serve is never restarted by hand); the emulator's HTTP server stopped for 3 s and started again
  on the same port with the same in-memory state during a `sync` run (in-process: the listening
  socket and every open connection go away, as when a real server restarts; state is kept
  because the Emulator object is). `--count` rounds of each.
- events: 10,000 single-row UPDATEs of internal_users while `serve` is SIGKILLed and started
  again `--count` times; at the end every row must equal the emulator's user.
- races: serve, its schedule and events, concurrent CLI runs, identity reuse, swaps, trickled
  mass deactivations and kills, all at once (see bench/races.py).

The emulator runs in this process with its write limit off; the service writes at up to
1,000/s (USERSYNC_WRITE_RATE_LIMIT_RAISED) and retries a failed user after 1-2 s instead of the
default 60 s (USERSYNC_FAILURE_BACKOFF_BASE/_MAX), so that rounds seconds apart retry them.
Each campaign prints: runs, kills, faults injected, users checked, mismatches, duplicates and
wrongful deletions (the last three must be 0), and exits 1 when any is not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
from aiohttp import web
from events import TOKEN, Service, scratch_database, service_env, until
from sqlalchemy.engine import make_url
from verdict import (
    Tally,
    compare,
    count_replaced,
    expected_users,
    role_sids,
    sids_of,
    stuck_runs,
    unresolved,
)

from service.db import migrate
from service.db.embedded import embedded_postgres
from service.db.engine import connect, create_engine
from service.emulator import Emulator, EmulatorConfig, RunningEmulator, create_app

ROLES = ("service user", "service admin")
PROTECTED = 20
RUN_TIMEOUT = 300.0
PG_BIN = Path(sys.prefix) / "lib/python3.11/site-packages/pgserver/pginstall/bin"
SERVE_LOGS = {"USERSYNC_LOG_LEVEL": "INFO"}
"""Service.start waits for serve's INFO line "serving"."""
LOG = Path(tempfile.gettempdir()) / "usersync-campaign.log"


# --- the emulator, restartable -------------------------------------------------------------


class Emulated:
    """The emulator served on 127.0.0.1; `restart` stops the server and serves the same state."""

    def __init__(self) -> None:
        self.emulator = Emulator(EmulatorConfig(write_limit_per_second=None))
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        self._runner = web.AppRunner(
            create_app(self.emulator), access_log=None, shutdown_timeout=0.1
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = int(self._runner.addresses[0][1])
        self.emulator.public_base_url = self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self, *, down: float) -> None:
        await self.stop()
        await asyncio.sleep(down)
        await self.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> RunningEmulator:
        return RunningEmulator(self.base_url, self.emulator, self.emulator.config)


@contextlib.asynccontextmanager
async def emulated() -> AsyncIterator[Emulated]:
    emulated = Emulated()
    await emulated.start()
    try:
        yield emulated
    finally:
        await emulated.stop()


def campaign_env(database_url: str, emulated: Emulated) -> dict[str, str]:
    return service_env(database_url, emulated.running) | {
        "USERSYNC_WRITE_RATE": "1000",
        "USERSYNC_WRITE_RATE_LIMIT_RAISED": "true",
        "USERSYNC_MAX_IN_FLIGHT": "32",
        "USERSYNC_FAILURE_BACKOFF_BASE": "1",
        "USERSYNC_FAILURE_BACKOFF_MAX": "2",
        "USERSYNC_MAX_DELETES_PER_RUN": "1000",
        "USERSYNC_MAX_DELETES_PERCENT": "100",
        # the campaigns check convergence under faults, not the write guard (tests/e2e do)
        "USERSYNC_MAX_WRITES_PER_RUN": "10000000",
        "USERSYNC_MAX_WRITES_PERCENT": "100",
        "USERSYNC_LOG_LEVEL": "WARNING",
    }


# --- the local table, changed at random ----------------------------------------------------


@dataclass
class World:
    """The campaign's internal_users, and what it changed (for the end-state checks)."""

    rng: random.Random
    next_id: int = 1
    former: dict[str, set[str]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)
    """Users renamed, deactivated or deleted this round: their sids may change."""

    async def populate(self, db: asyncpg.Connection, users: int) -> None:
        rows = [self._new_row() for _ in range(users)]
        await db.executemany(
            "INSERT INTO internal_users (id, identity, friendly_name, role, attributes) "
            "VALUES ($1, $2, $3, $4, $5::jsonb)",
            rows,
        )

    def _new_row(self) -> tuple[str, str, str, str, str]:
        n = self.next_id
        self.next_id += 1
        attributes = json.dumps({"n": n, "team": self.rng.choice("abc")})
        return f"u{n}", f"u{n}@example.com", f"User {n}", self.rng.choice(ROLES), attributes

    async def mutate(self, db: asyncpg.Connection, changes: int) -> None:
        self.touched = set()
        ids = [r["id"] for r in await db.fetch("SELECT id FROM internal_users ORDER BY id")]
        for _ in range(changes):
            kind = self.rng.choices(
                ("update", "role", "create", "rename", "deactivate", "reactivate", "delete"),
                weights=(35, 10, 15, 10, 15, 10, 5),
            )[0]
            await self._change(db, kind, self.rng.choice(ids))

    async def _change(self, db: asyncpg.Connection, kind: str, user_id: str) -> None:
        if kind == "update":
            attributes = json.dumps({"v": self.rng.random(), "tags": ["x", "é"]})
            await db.execute(
                "UPDATE internal_users SET friendly_name = $2, attributes = $3::jsonb "
                "WHERE id = $1",
                user_id,
                f"Renamed {self.rng.randrange(10**6)}",
                attributes,
            )
        elif kind == "role":
            await db.execute(
                "UPDATE internal_users SET role = $2 WHERE id = $1", user_id, self.rng.choice(ROLES)
            )
        elif kind == "create":
            await self.populate(db, 1)
        elif kind == "rename":
            await self._rename(db, user_id)
        elif kind == "delete":
            identity = await db.fetchval(
                "DELETE FROM internal_users WHERE id = $1 RETURNING identity", user_id
            )
            if identity is not None:
                self.gone.add(identity)
                self.touched.add(identity)
        else:
            active = kind == "reactivate"
            identity = await db.fetchval(
                "UPDATE internal_users SET active = $2 WHERE id = $1 RETURNING identity",
                user_id,
                active,
            )
            self.touched.add(identity or "")

    async def _rename(self, db: asyncpg.Connection, user_id: str) -> None:
        old = await db.fetchval("SELECT identity FROM internal_users WHERE id = $1", user_id)
        if old is None:
            return
        new = f"{user_id}-r{self.rng.randrange(10**9)}@example.com"
        await db.execute("UPDATE internal_users SET identity = $2 WHERE id = $1", user_id, new)
        self.former.setdefault(user_id, set()).add(old)
        self.touched.add(old)

    async def steady(self, db: asyncpg.Connection) -> set[str]:
        """Identities of active users not touched this round: their remote sid must not change."""
        rows = await db.fetch("SELECT identity FROM internal_users WHERE active")
        return {r["identity"] for r in rows} - self.touched


def seed_protected(emulator: Emulator) -> set[str]:
    identities = {f"foreign-{n}@elsewhere.example" for n in range(PROTECTED)}
    emulator.seed_users({"identity": identity} for identity in sorted(identities))
    return identities


async def check_end(
    db: asyncpg.Connection, emulator: Emulator, world: World, protected: set[str], tally: Tally
) -> None:
    local = await expected_users(db)
    remote = emulator.users()
    compare(
        local,
        remote,
        tally,
        roles=role_sids(emulator),
        former_identities=world.former,
        protected=protected,
    )
    claimed = {user.identity for user in local.values()}
    present = {user["identity"] for user in remote}
    for identity in world.gone & present - claimed:
        tally.mismatches += 1
        tally.note(f"{identity!r}: its local row was deleted but it still exists remotely")
    left = await stuck_runs(db)
    tally.mismatches += left
    if left:
        tally.note(f"{left} sync_run rows left 'running'")
    print(f"  sync_run rows left 'running': {left}")


# --- processes ------------------------------------------------------------------------------


async def sync(
    env: dict[str, str],
    *,
    scope: str = "--full",
    killer: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[int | None, float, bool]:
    """Runs `python -m service sync`; SIGKILLs it when `killer(pid)` returns, if still running.

    Returns (exit code, seconds, killed)."""
    started = time.perf_counter()
    with LOG.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "sync", scope, env=env, stdout=log, stderr=log
        )
    exited = asyncio.ensure_future(process.wait())
    trigger = asyncio.ensure_future(killer(process.pid) if killer else asyncio.sleep(RUN_TIMEOUT))
    await asyncio.wait({exited, trigger}, timeout=RUN_TIMEOUT, return_when="FIRST_COMPLETED")
    trigger.cancel()
    if trigger.done() and not trigger.cancelled() and trigger.exception() is not None:
        process.kill()
        await exited
        raise RuntimeError("the disruption failed") from trigger.exception()
    if exited.done():
        return exited.result(), time.perf_counter() - started, False
    process.kill()
    await exited
    return None, time.perf_counter() - started, True


async def run_opened(db: asyncpg.Connection, pid: int) -> None:
    """Returns once the process `pid` has opened its sync_run row (bounded)."""

    async def opened() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM sync_run WHERE pid = $1", pid))

    await until(opened, within=120, every=0.02)


async def clean_run(env: dict[str, str], tally: Tally, *, attempts: int = 3) -> int | None:
    """A full run to the end; a second one if the first reports failed users (bounded)."""
    code: int | None = None
    for _ in range(attempts):
        code, seconds, _ = await sync(env)
        tally.runs += 1
        print(f"  clean full run: exit {code} in {seconds:.1f} s", flush=True)
        if code == 0:
            break
        await asyncio.sleep(2.5)  # the failure backoff is at most 2 s
    return code


# --- kill -----------------------------------------------------------------------------------


async def campaign_kill(args: argparse.Namespace) -> Tally:
    tally = Tally()
    world = World(random.Random(args.seed))
    async with scratch_database() as url, emulated() as emu:
        db = await connect(url)
        try:
            env = campaign_env(url, emu)
            protected = seed_protected(emu.emulator)
            await world.populate(db, args.users)
            for n in range(args.count):
                if n:
                    await world.mutate(db, args.changes)
                await kill_round(db, env, emu, world, protected, tally, n)
            await clean_run(env, tally)
            await check_end(db, emu.emulator, world, protected, tally)
        finally:
            await db.close()
    tally.faults = tally.kills
    return tally


async def kill_round(
    db: asyncpg.Connection,
    env: dict[str, str],
    emu: Emulated,
    world: World,
    protected: set[str],
    tally: Tally,
    n: int,
) -> None:
    """One run SIGKILLed at random: during start-up 1 time in 5, else while it runs."""
    steady = await world.steady(db)
    before = sids_of(emu.emulator.users())
    scope = world.rng.choice(("--full", "--full", "--incremental"))
    last = await db.fetchval(
        "SELECT extract(epoch FROM finished_at - started_at) FROM sync_run "
        "WHERE status = 'succeeded' ORDER BY id DESC LIMIT 1"
    )
    users = await db.fetchval("SELECT count(*) FROM internal_users")
    estimate = 0.8 * float(last or users / 1000)
    early = world.rng.random() < 0.2
    delay = world.rng.uniform(0, 4.0 if early else estimate)

    async def killer(pid: int) -> None:
        if not early:
            await run_opened(db, pid)
        await asyncio.sleep(delay)

    code, seconds, killed = await sync(env, scope=scope, killer=killer)
    tally.runs += 1
    tally.kills += killed
    after = sids_of(emu.emulator.users())
    count_replaced(before, after, steady, tally)
    missing = protected - set(after)
    tally.wrongful_deletions += len(missing)
    when = f"{delay:.2f} s after {'start' if early else 'its run opened'}"
    outcome = f"killed {when}" if killed else f"exit {code} in {seconds:.2f} s"
    print(f"  round {n + 1}: sync {scope}, {outcome}, remote users {len(after)}", flush=True)


# --- events ---------------------------------------------------------------------------------


async def campaign_events(args: argparse.Namespace) -> Tally:
    tally = Tally()
    world = World(random.Random(args.seed))
    async with scratch_database() as url, emulated() as emu:
        db = await connect(url)
        env = campaign_env(url, emu)
        services: list[Service] = []
        try:
            await world.populate(db, args.users)
            await clean_run(env, tally)
            services.append(await Service.start(env | SERVE_LOGS))
            await stream_with_kills(db, env, services, world, tally, args)
            await converge(db, emu.emulator, tally, within=300)
            states, events = await unresolved(db)
            print(f"  unresolved at the end: sync_state {states}, user_event {events}")
            tally.mismatches += states + events
            await check_end(db, emu.emulator, world, set(), tally)
        finally:
            for service in services:
                await service.stop()
            await db.close()
    tally.faults = tally.kills
    return tally


async def stream_with_kills(
    db: asyncpg.Connection,
    env: dict[str, str],
    services: list[Service],
    world: World,
    tally: Tally,
    args: argparse.Namespace,
) -> None:
    kill_at = {args.updates * (k + 1) // (args.count + 1) for k in range(args.count)}
    restart: asyncio.Task[None] | None = None
    started = time.perf_counter()
    for n in range(args.updates):
        await asyncio.sleep(max(0.0, started + n / args.rate - time.perf_counter()))
        user = f"u{1 + world.rng.randrange(args.users)}"
        await db.execute(
            "UPDATE internal_users SET friendly_name = $2, attributes = $3::jsonb WHERE id = $1",
            user,
            f"event {n}",
            json.dumps({"event": n}),
        )
        if n in kill_at:
            if restart is not None:
                await restart
            services[-1].kill()
            tally.kills += 1
            tally.runs += 1
            restart = asyncio.create_task(restart_later(env, services, world.rng.uniform(0.5, 3)))
    if restart is not None:
        await restart
    print(f"  {args.updates} updates in {time.perf_counter() - started:.1f} s", flush=True)


async def restart_later(env: dict[str, str], services: list[Service], delay: float) -> None:
    await asyncio.sleep(delay)
    await services[-1].stop()
    services.append(await Service.start(env | SERVE_LOGS))
    print(f"  serve killed, started again after {delay:.1f} s", flush=True)


async def converge(
    db: asyncpg.Connection, emulator: Emulator, tally: Tally, *, within: float
) -> None:
    """Waits (bounded) until every row equals the emulator's user; no run is asked for."""

    async def exact() -> bool:
        probe = Tally()
        compare(await expected_users(db), emulator.users(), probe, roles=role_sids(emulator))
        return probe.mismatches == 0

    try:
        seconds = await until(exact, within=within, every=1.0)
        print(f"  converged {seconds:.1f} s after the last update", flush=True)
    except TimeoutError:
        tally.note(f"not converged within {within:.0f} s")
        return
    await settle(db, within=SETTLE_SECONDS)


SETTLE_SECONDS = 60.0


async def settle(db: asyncpg.Connection, *, within: float) -> None:
    """Remote users come right before the run that wrote them records its outcomes and marks
    its events done; wait (bounded) for that before anything counts what is left."""

    async def quiet() -> bool:
        return await unresolved(db) == (0, 0) and await stuck_runs(db) == 0

    with contextlib.suppress(TimeoutError):
        seconds = await until(quiet, within=within, every=0.2)
        print(f"  recorded {seconds:.1f} s after converging", flush=True)


# --- restart --------------------------------------------------------------------------------


class PrivatePostgres:
    """A pgserver data directory of our own, stopped and started with its pg_ctl."""

    def __init__(self, data_dir: Path, url: str) -> None:
        self.data_dir = data_dir
        self.url = url
        self.socket_dir = parse_qs(urlsplit(url).query)["host"][0]

    def _pg_ctl(self, *args: str) -> None:
        user = "pgserver" if os.geteuid() == 0 else None
        subprocess.run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), *args],
            check=True,
            capture_output=True,
            user=user,
            timeout=60,
        )

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        options = f'-h "" -k {self.socket_dir}'
        self._pg_ctl("-w", "-o", options, "-l", str(self.data_dir / "log"), "start")

    async def restart(self, *, down: float) -> None:
        await asyncio.to_thread(self.stop)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.start)


def _scratch_dir() -> Path:
    """Readable by the 'pgserver' user pgserver runs the server as when we are root."""
    data_dir = Path(tempfile.mkdtemp(prefix="usersync-campaign-pg-"))
    data_dir.chmod(0o777)
    return data_dir


@contextlib.asynccontextmanager
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    data_dir = _scratch_dir()
    with embedded_postgres(data_dir / "data", keep=True) as url:
        server = PrivatePostgres(data_dir / "data", url)
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def private_database(server: str) -> str:
    """A migrated database on the private server; dropped with the server's directory."""
    admin = await connect(server)
    await admin.execute('CREATE DATABASE "usersync_campaign"')
    await admin.close()
    url = make_url(server).set(database="usersync_campaign").render_as_string(hide_password=False)
    engine = create_engine(url, pool_size=1)
    await migrate.upgrade(engine)
    await engine.dispose()
    return url


async def campaign_restart(args: argparse.Namespace) -> Tally:
    tally = Tally()
    world = World(random.Random(args.seed))
    async with private_postgres() as pg, emulated() as emu:
        url = await private_database(pg.url)
        env = campaign_env(url, emu) | {"USERSYNC_WRITE_RATE": "150"}
        protected = seed_protected(emu.emulator)
        db = await Reconnecting.open(url)
        await world.populate(await db.get(), args.users)
        for n in range(args.count):
            if n:
                await world.mutate(await db.get(), args.users // 2)
            await during_run(env, db, tally, "Postgres", pg.restart)
            await world.mutate(await db.get(), args.users // 2)
            await during_run(env, db, tally, "emulator", emu.restart)
        await during_serve(db, env, pg, emu.emulator, world, tally, args)
        await check_end(await db.get(), emu.emulator, world, protected, tally)
        await db.close()
    return tally


async def during_run(
    env: dict[str, str],
    db: Reconnecting,
    tally: Tally,
    what: str,
    restart: Callable[..., Awaitable[None]],
) -> None:
    """A full run; 1 s after it opened its run row, `restart(down=3)`; then a clean run."""

    restarts: list[asyncio.Task[None]] = []

    async def disrupt(pid: int) -> None:
        await run_opened(await db.get(), pid)
        await asyncio.sleep(1.0)
        restarts.append(asyncio.create_task(restart(down=3.0)))  # outlives the run
        tally.faults += 1
        await asyncio.sleep(RUN_TIMEOUT)  # never kill it: let it end by itself

    code, seconds, _ = await sync(env, killer=disrupt)
    for task in restarts:
        await task
    tally.runs += 1
    print(f"  {what} restarted during a run: that run exit {code} in {seconds:.1f} s", flush=True)
    await clean_run(env, tally)


class Reconnecting:
    """The bench's own connection, opened again after the server went away (bounded)."""

    def __init__(self, url: str, connection: asyncpg.Connection) -> None:
        self._url = url
        self._connection = connection

    @classmethod
    async def open(cls, url: str) -> Reconnecting:
        return cls(url, await connect(url))

    async def get(self) -> asyncpg.Connection:
        if self._connection.is_closed():
            self._connection = await connect(self._url)
        return self._connection

    async def execute(self, query: str, *params: object) -> None:
        for _ in range(100):
            try:
                await (await self.get()).execute(query, *params)
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(0.2)
        raise RuntimeError("the database did not come back within 20 s")

    async def close(self) -> None:
        await self._connection.close()


async def during_serve(
    db: Reconnecting,
    env: dict[str, str],
    pg: PrivatePostgres,
    emulator: Emulator,
    world: World,
    tally: Tally,
    args: argparse.Namespace,
) -> None:
    service = await Service.start(env | SERVE_LOGS)
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            await until(lambda: _leads(http, service), within=60)
            for n in range(args.count):
                stream = asyncio.create_task(slow_stream(db, world, args, tag=f"s{n}"))
                await asyncio.sleep(3.0)
                await pg.restart(down=3.0)
                tally.faults += 1
                await stream
                print(f"  Postgres restarted during serve (round {n + 1})", flush=True)
            await converge(await db.get(), emulator, tally, within=180)
            alive = service.process.returncode is None
            leads = await until(lambda: _leads(http, service), within=60)
            print(f"  serve still running without a restart: {alive}, leads again: {leads:.1f} s")
            if not alive:
                tally.note("serve exited after a Postgres restart")
                tally.mismatches += 1
    finally:
        await service.stop()
        tally.runs += 1


async def slow_stream(
    db: Reconnecting, world: World, args: argparse.Namespace, *, tag: str
) -> None:
    """20 updates/s for 10 s, each retried until the database takes it."""
    started = time.perf_counter()
    for n in range(200):
        await asyncio.sleep(max(0.0, started + n / 20 - time.perf_counter()))
        await db.execute(
            "UPDATE internal_users SET friendly_name = $2 WHERE id = $1",
            f"u{1 + world.rng.randrange(args.users)}",
            f"{tag} {n}",
        )


async def _leads(http: aiohttp.ClientSession, service: Service) -> bool:
    return await service.role(http) == "leader"


# --- main -----------------------------------------------------------------------------------


async def campaign_races(args: argparse.Namespace) -> Tally:
    from races import campaign_races as races  # noqa: PLC0415 - races builds on this module

    return await races(args)


CAMPAIGNS = {
    "kill": campaign_kill,
    "restart": campaign_restart,
    "events": campaign_events,
    "races": campaign_races,
}
DEFAULT_COUNTS = {"kill": 20, "restart": 2, "events": 5, "races": 5}


async def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    tally = await asyncio.wait_for(CAMPAIGNS[args.campaign](args), timeout=args.timeout)
    tally.print(
        f"campaign {args.campaign} (count {args.count}, seed {args.seed}, "
        f"{time.perf_counter() - started:.0f} s)"
    )
    return 0 if tally.ok else 1


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaign", choices=sorted(CAMPAIGNS))
    parser.add_argument("--count", type=int, help="rounds, kills or restarts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=100, help="local changes per round")
    parser.add_argument("--updates", type=int, default=10_000, help="events: UPDATEs")
    parser.add_argument("--rate", type=float, default=400.0, help="events: UPDATEs per second")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for it all")
    args = parser.parse_args()
    args.count = DEFAULT_COUNTS[args.campaign] if args.count is None else args.count
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(arguments())))
