"""The races campaign (`bench/campaign.py races`): everything at once, then the end state exact.

    .venv/bin/python bench/campaign.py races [--count 5] [--seed 1] [--users 200]

`serve` runs with events and a schedule (a full run every 4 s, an incremental one every 1 s),
and each of `--count` rounds, concurrently:
- changes rows the way identity systems do, identity reuse included: a user renamed while a new
  user takes its old identity in the same transaction, a user deleted while a new one takes its
  identity, two users swapping identities, renames, updates, reactivations;
- deactivates users one row at a time, 0.2 s apart (a trickled mass deactivation: the guard,
  5 deletions per hour here, must hold all but 5 of them whichever runs carry them);
- runs `sync --full` and `sync --user` from the command line, next to serve's own runs, and
  SIGKILLs some of them at a random moment;
- SIGKILLs `serve` at a random moment and starts it again.
After every round the claims in `sync_state` are checked (a sid linked or retired by one user
only; never linked by a user other than the first that linked it); at the end one
`sync --full --allow-deletes` releases what the guard held, the remote side must equal the
source exactly, no protected or untouched user may have been deleted or replaced, and the
guarded deletions of runs without `--allow-deletes` must not exceed the limit.
Printed: runs, kills, users checked, mismatches, duplicates, wrongful deletions, handovers and
guard overruns (the last five must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field

import asyncpg
from campaign import (
    SERVE_LOGS,
    World,
    campaign_env,
    check_end,
    clean_run,
    emulated,
    run_opened,
    seed_protected,
    sync,
)
from events import Service, scratch_database, until
from verdict import Tally, count_replaced, sids_of

from service.db.engine import connect, connect_kwargs

LIMIT = 5
TRICKLE = 8


def races_env(env: dict[str, str]) -> dict[str, str]:
    return env | {
        "USERSYNC_MAX_DELETES_PER_RUN": str(LIMIT),
        "USERSYNC_MAX_DELETES_PERCENT": "100",
        "USERSYNC_DELETION_WINDOW": "3600",
        "USERSYNC_SCHEDULE_ENABLED": "true",
        "USERSYNC_FULL_SYNC_INTERVAL": "4",
        "USERSYNC_INCREMENTAL_INTERVAL": "1",
        "USERSYNC_EVENT_POLL_INTERVAL": "0.5",
    }


@dataclass
class Races:
    """What the checks remember across rounds."""

    world: World
    first_owner: dict[str, str] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    """Identities touched at any time: their sids may change."""

    async def hand_over(self, db: asyncpg.Connection, *, by: str) -> None:
        """A user leaves its identity (renamed or deleted) and a new user takes it, in one
        transaction."""
        row = await db.fetchrow(
            "SELECT id, identity FROM internal_users WHERE active ORDER BY random() LIMIT 1"
        )
        if row is None:
            return
        async with db.transaction():
            if by == "rename":
                new = f"{row['id']}-r{self.world.rng.randrange(10**9)}@example.com"
                await db.execute(
                    "UPDATE internal_users SET identity = $2 WHERE id = $1", row["id"], new
                )
                self.world.former.setdefault(row["id"], set()).add(row["identity"])
            else:
                await db.execute("DELETE FROM internal_users WHERE id = $1", row["id"])
            n = self.world.next_id
            self.world.next_id += 1
            await db.execute(
                "INSERT INTO internal_users (id, identity, friendly_name) VALUES ($1, $2, $3)",
                f"u{n}",
                row["identity"],
                f"Took over {row['identity']}",
            )
        self.touched.add(row["identity"])

    async def swap(self, db: asyncpg.Connection) -> None:
        rows = await db.fetch(
            "SELECT id, identity FROM internal_users WHERE active ORDER BY random() LIMIT 2"
        )
        if len(rows) < 2:
            return
        (a, ai), (b, bi) = ((r["id"], r["identity"]) for r in rows)
        async with db.transaction():
            await db.execute(
                "UPDATE internal_users SET identity = $2 WHERE id = $1", a, f"{a}-swap"
            )
            await db.execute("UPDATE internal_users SET identity = $2 WHERE id = $1", b, ai)
            await db.execute("UPDATE internal_users SET identity = $2 WHERE id = $1", a, bi)
        self.touched |= {ai, bi}

    async def trickle(self, db: asyncpg.Connection) -> None:
        rows = await db.fetch(
            "SELECT id, identity FROM internal_users WHERE active ORDER BY random() LIMIT $1",
            TRICKLE,
        )
        for row in rows:
            await db.execute("UPDATE internal_users SET active = false WHERE id = $1", row["id"])
            self.touched.add(row["identity"])
            await asyncio.sleep(0.2)

    async def changes(self, db: asyncpg.Connection, count: int) -> None:
        for _ in range(count):
            kind = self.world.rng.choice(("rename", "delete", "swap", "other", "other"))
            if kind == "swap":
                await self.swap(db)
            elif kind == "other":
                await self.world.mutate(db, 3)
                self.touched |= self.world.touched
                self.touched |= {i for ids in self.world.former.values() for i in ids}
            else:
                await self.hand_over(db, by=kind)
            await asyncio.sleep(self.world.rng.uniform(0.0, 0.3))

    async def check_claims(self, db: asyncpg.Connection, tally: Tally) -> None:
        twice = await db.fetchval(
            "SELECT count(*) FROM sync_state a JOIN sync_state b ON a.user_id <> b.user_id"
            " AND a.remote_sid IS NOT NULL AND a.remote_sid IN (b.remote_sid, b.retired_sid)"
        )
        if twice:
            tally.duplicates += int(twice)
            tally.note(f"{twice} remote sids claimed by two users at once")
        for row in await db.fetch(
            "SELECT user_id, remote_sid, retired_sid FROM sync_state"
            " WHERE remote_sid IS NOT NULL OR retired_sid IS NOT NULL"
        ):
            for sid in (row["remote_sid"], row["retired_sid"]):
                if sid is None:
                    continue
                owner = self.first_owner.setdefault(sid, row["user_id"])
                if owner != row["user_id"]:
                    tally.handovers += 1
                    tally.note(f"{sid} of user {owner} is now claimed by {row['user_id']}")


async def cli_runs(env: dict[str, str], db: asyncpg.Connection, races: Races, tally: Tally) -> None:
    """A full run and a few one-user runs, some SIGKILLed at a random moment."""
    rng = races.world.rng
    for scope in ("--full", "--user", "--user"):
        argument = scope
        if scope == "--user":
            target = await db.fetchval("SELECT id FROM internal_users ORDER BY random() LIMIT 1")
            argument = f"--user={target}"
        kill = rng.random() < 0.4
        delay = rng.uniform(0.0, 1.0)

        async def killer(pid: int, delay: float = delay) -> None:
            await run_opened(db, pid)
            await asyncio.sleep(delay)

        _, _, killed = await sync(env, scope=argument, killer=killer if kill else None)
        tally.runs += 1
        tally.kills += killed


async def serve_kill(
    env: dict[str, str], services: list[Service], rng: random.Random, tally: Tally
) -> None:
    await asyncio.sleep(rng.uniform(0.2, 2.0))
    services[-1].kill()
    tally.kills += 1
    await services[-1].stop()
    await asyncio.sleep(rng.uniform(0.2, 1.5))
    services.append(await Service.start(env | SERVE_LOGS))


async def guard_overruns(db: asyncpg.Connection, tally: Tally) -> None:
    applied = await db.fetchval(
        "SELECT count(*) FROM sync_deletion d JOIN sync_run r ON r.id = d.run_id"
        " WHERE d.state = 'applied' AND NOT r.allow_deletes"
    )
    print(f"  guarded deletions applied without --allow-deletes: {applied} (limit {LIMIT})")
    held = await db.fetchval("SELECT count(*) FROM sync_deletion WHERE state = 'held'")
    print(f"  held before the release: {held}")
    if applied > LIMIT:
        tally.guard_overruns += int(applied) - LIMIT
        tally.note(f"{applied} guarded deletions within the window, over the limit of {LIMIT}")


async def campaign_races(args: argparse.Namespace) -> Tally:
    tally = Tally()
    races = Races(World(random.Random(args.seed)))
    async with scratch_database() as url, emulated() as emu:
        db = await connect(url)
        env = races_env(campaign_env(url, emu))
        services: list[Service] = []
        try:
            protected = seed_protected(emu.emulator)
            await races.world.populate(db, args.users)
            await clean_run(env, tally)
            initial = sids_of(emu.emulator.users())
            services.append(await Service.start(env | SERVE_LOGS))
            pool = await asyncpg.create_pool(**connect_kwargs(url), min_size=3, max_size=3)
            for n in range(args.count):
                started = time.perf_counter()
                async with pool.acquire() as a, pool.acquire() as b, pool.acquire() as c:
                    await asyncio.gather(
                        races.changes(a, 10),
                        races.trickle(b) if n % 2 == 0 else asyncio.sleep(0),
                        cli_runs(env, c, races, tally),
                        serve_kill(env, services, races.world.rng, tally),
                    )
                await races.check_claims(db, tally)
                print(f"  round {n + 1}: {time.perf_counter() - started:.1f} s", flush=True)
            await pool.close()
            await settle_serve(db)
            await guard_overruns(db, tally)
            for service in services:  # the release and the checks must not race serve's runs
                await service.stop()
            services.clear()
            await release(env, db, tally)
            await races.check_claims(db, tally)
            untouched = set(initial) - races.touched - protected
            count_replaced(initial, sids_of(emu.emulator.users()), untouched, tally)
            await check_end(db, emu.emulator, races.world, protected, tally)
        finally:
            for service in services:
                await service.stop()
            await db.close()
    return tally


async def settle_serve(db: asyncpg.Connection) -> None:
    """Let serve's event and scheduled runs catch up with the last changes (bounded)."""

    async def quiet() -> bool:
        left = await db.fetchval("SELECT count(*) FROM user_event WHERE done_at IS NULL")
        return int(left) == 0

    with contextlib.suppress(TimeoutError):
        await until(quiet, within=60, every=0.5)
    await asyncio.sleep(2.5)  # an incremental run or two after the last event


async def release(env: dict[str, str], db: asyncpg.Connection, tally: Tally) -> None:
    """Release what the guard held, then runs until one changes nothing (bounded)."""
    code, seconds, _ = await sync(env | {"USERSYNC_LOG_LEVEL": "WARNING"}, scope="--full")
    tally.runs += 1
    released, _, _ = await sync(env, scope="--allow-deletes")
    tally.runs += 1
    print(f"  full run exit {code} in {seconds:.1f} s; release exit {released}", flush=True)
    await clean_run(env, tally)
