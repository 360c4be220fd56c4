"""What the audit trail costs a run: the same runs with `USERSYNC_AUDIT` on and off.

    .venv/bin/python bench/audit.py
    .venv/bin/python bench/audit.py --initial-users 3000,20000 --nochange-users 20000 --rounds 2

- initial sync of each size in `--initial-users`, emulator limit and latency off (the emulator
  in its own process, as `bench/sync.py --scenario ceiling`): seconds and users/s with the
  trail off and on, and the entries written (one per create);
- a no-change full run and a no-change incremental run over `--nochange-users`, both sides
  seeded alike and linked first: seconds off and on, and the entries written (none).

- cost: the trail's own work for `--cost-users` creates, in process and without a run around
  it, so the machine's noise does not hide it: building the entries (the executor's part),
  and writing them in batches of 500 (the recorder's one statement per batch), per user.

Off and on alternate, `--rounds` times each, every round in a fresh scratch database and a
reset emulator; the best round of each is compared (the machine is shared: the spread between
rounds is printed too). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from sync import (
    control,
    counts,
    emulator_process,
    fast_settings,
    quiet_logs,
    run_sync,
    scratch_database,
    seed_local,
    seed_remote,
)

from service.config import Settings
from service.db import audit, records
from service.db.engine import create_engine
from service.domain.actions import CreateUser
from service.domain.audit import Answer, AuditPolicy, entries_of
from service.domain.roles import RoleDirectory
from service.domain.users import UserId
from service.reconcile.run import Scope

Measure = Callable[[bool], Awaitable[tuple[float, int]]]
BATCH = 500


async def entries(url: str) -> int:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(text("SELECT count(*) FROM sync_audit")) or 0)
    finally:
        await engine.dispose()


async def reset(base_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        await control(http, base_url, "POST", "reset")


def settings(url: str, base_url: str, *, audit: bool) -> Settings:
    return fast_settings(url, base_url, in_flight=32).model_copy(update={"audit": audit})


async def compare(name: str, measure: Measure, *, rounds: int) -> str:
    seconds: dict[bool, list[float]] = {False: [], True: []}
    written: dict[bool, int] = {}
    for _ in range(rounds):
        for on in (False, True):
            took, rows = await measure(on)
            seconds[on].append(took)
            written[on] = rows
    off, on = min(seconds[False]), min(seconds[True])
    spread = {k: ", ".join(f"{s:.2f}" for s in v) for k, v in seconds.items()}
    print(f"-- {name}")
    print(f"   audit off: best {off:.2f} s (rounds {spread[False]}), entries {written[False]:,}")
    print(f"   audit on:  best {on:.2f} s (rounds {spread[True]}), entries {written[True]:,}")
    print(f"   on / off:  {on / off:.3f}")
    return f"{name}: off {off:.2f} s, on {on:.2f} s ({on / off:.3f}), {written[True]:,} entries"


async def initial(args: argparse.Namespace, users: int) -> str:
    async with emulator_process() as emulator:

        async def measure(audit: bool) -> tuple[float, int]:
            await reset(emulator.base_url)
            async with scratch_database(args.server) as url:
                await seed_local(url, users)
                timed = await run_sync(settings(url, emulator.base_url, audit=audit), Scope.FULL)
                return timed.seconds, await entries(url)

        name = f"initial sync of {users:,} users ({users / 1000:g}k creates)"
        return await compare(name, measure, rounds=args.rounds)


async def no_change(args: argparse.Namespace) -> list[str]:
    users = args.nochange_users
    summary = []
    async with emulator_process() as emulator, scratch_database(args.server) as url:
        await seed_local(url, users)
        await seed_remote(emulator.base_url, users)
        first = await run_sync(settings(url, emulator.base_url, audit=True), Scope.FULL)
        print(f"   linked {users:,} users first: {first.seconds:.1f} s, {counts(first.report)}")
        before = await entries(url)
        for scope in (Scope.FULL, Scope.INCREMENTAL):

            async def measure(audit: bool, scope: Scope = scope) -> tuple[float, int]:
                timed = await run_sync(settings(url, emulator.base_url, audit=audit), scope)
                return timed.seconds, await entries(url) - before

            name = f"no-change {scope.value} run over {users:,} users"
            summary.append(await compare(name, measure, rounds=args.rounds))
    return summary


async def cost(args: argparse.Namespace) -> str:
    users = args.cost_users
    answer = Answer(operation="create_user", status=201, request_id="RQ" + "0" * 32)
    actions = [
        CreateUser(
            user_id=UserId(f"user-{g}"),
            identity=f"user{g}@example.com",
            friendly_name=f"User {g}",
            attributes_json=json.dumps({"n": g, "team": f"team-{g % 7}"}),
            role_sid=None,
        )
        for g in range(users)
    ]
    roles, policy = RoleDirectory.unread(), AuditPolicy()
    started = time.perf_counter()
    built = [entries_of([a], [answer], roles=roles, policy=policy, created="US") for a in actions]
    building = time.perf_counter() - started
    async with scratch_database(args.server) as url:
        engine = create_engine(url, pool_size=1)
        sessions = async_sessionmaker(engine)
        async with sessions.begin() as session:
            run_id = await records.open_run(session, OPENING)
        started = time.perf_counter()
        for first in range(0, users, BATCH):
            async with sessions.begin() as session:
                batch = [e for entries in built[first : first + BATCH] for e in entries]
                await audit.save(session, batch, run_id=run_id)
        writing = time.perf_counter() - started
        await engine.dispose()
    per_user = (building + writing) / users * 1e6
    print(f"-- cost of the trail alone, {users:,} creates")
    print(f"   building entries: {building:.2f} s ({building / users * 1e6:.0f} us per user)")
    print(
        f"   writing them, {BATCH} per statement: {writing:.2f} s "
        f"({writing / users * 1e6:.0f} us per user)"
    )
    return (
        f"the trail alone: {per_user:.0f} us per created user ({building:.2f} s + {writing:.2f} s)"
    )


OPENING = records.RunOpening(
    service_key="bench",
    trigger="bench",
    scope="full",
    target=None,
    dry_run=False,
    allow_deletes=False,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--initial-users", type=lambda v: [int(x) for x in v.split(",")], default=[3000, 20000]
    )
    parser.add_argument("--nochange-users", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cost-users", type=int, default=20_000)
    parser.add_argument(
        "--parts", default="initial,nochange,cost", help="which of initial, nochange, cost"
    )
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    print("\n== the audit trail off and on (USERSYNC_AUDIT), limits and latency off")
    parts = args.parts.split(",")
    summary = [await initial(args, n) for n in args.initial_users] if "initial" in parts else []
    if "nochange" in parts:
        summary += await no_change(args)
    if "cost" in parts:
        summary.append(await cost(args))
    print("\n== summary")
    for line in summary:
        print(f"   {line}")


if __name__ == "__main__":
    quiet_logs()
    asyncio.run(main(parse_args()))
