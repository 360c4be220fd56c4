"""The write guard end to end: a mass change of the source makes nobody billable by accident.

Twilio bills a Conversations user as active for the month when its user record is edited. A run
that would create or update more users than the limits allow, outside an initial sync, writes
none of them (the emulator is asked for no write), holds them like a mass deletion and says so;
`allow_writes` releases them. The window counts distinct users across runs of every scope.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service import report
from service.db import writes
from service.db.status import status_report
from service.reconcile.run import HELD_SHOWN, Scope
from tests.e2e.conftest import execute, fetch_all, insert_users

LIMITS = {"max_writes_per_run": 5, "max_writes_percent": 100}


def writes_made(emulator: Any) -> int:
    stats = emulator.emulator.stats
    return int(stats.get("create_user", 0) + stats.get("update_user", 0))


def attributes(emulator: Any) -> dict[str, Any]:
    return {u["identity"]: u["attributes"] for u in emulator.emulator.users()}


async def synced(engine: AsyncEngine, sync: Any, count: int) -> None:
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(count)])
    await sync(Scope.FULL, **LIMITS)


async def test_an_initial_sync_of_more_users_than_the_limit_is_not_held(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])

    run = await sync(Scope.FULL, **LIMITS)

    assert run.counts["created"] == 20
    assert run.users_written == 20
    assert run.writes_held == 0
    assert len(fast_emulator.emulator.users()) == 20
    assert await fetch_all(engine, "SELECT * FROM sync_write") == []  # spends no budget


async def test_a_mass_update_of_the_source_is_held_with_nothing_written(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 20)
    before = attributes(fast_emulator)
    fast_emulator.emulator.reset_stats()
    await execute(engine, """UPDATE internal_users SET attributes = '{"oops": true}'""")

    full = await sync(Scope.FULL, **LIMITS)
    incremental = await sync(Scope.INCREMENTAL, **LIMITS)

    assert writes_made(fast_emulator) == 0
    assert attributes(fast_emulator) == before
    for run in (full, incremental):
        assert (run.writes_held, run.users_written, run.status.value) == (20, 0, "succeeded")
        assert run.write_held_reason is not None
        assert "exceed max_writes_per_run (5)" in run.write_held_reason
    async with db() as session:
        held = await writes.held(session)
        report = await status_report(session)
    assert sorted(h.user_id for h in held) == [f"u{n:02d}" for n in range(20)]
    assert len(report.held_writes) == 20
    states = await fetch_all(engine, "SELECT count(*) AS n FROM sync_state WHERE lease_run IS NULL")
    assert states == [{"n": 20}]


async def test_allow_writes_releases_the_held_writes(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 20)
    await execute(engine, """UPDATE internal_users SET attributes = '{"team": "a"}'""")
    await sync(Scope.INCREMENTAL, **LIMITS)

    released = await sync(Scope.INCREMENTAL, allow_writes=True, **LIMITS)
    after = await sync(Scope.INCREMENTAL, **LIMITS)

    assert (released.counts["updated"], released.users_written) == (20, 20)
    assert {json.dumps(json.loads(a)) for a in attributes(fast_emulator).values()} == {
        '{"team": "a"}'
    }
    async with db() as session:
        assert await writes.held(session) == []
    assert (after.users_written, after.writes_held) == (0, 0)


async def test_writes_under_the_limits_go_ahead_and_count_against_the_window(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 20)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'A' WHERE id < 'u03'")
    first = await sync(Scope.INCREMENTAL, **LIMITS)
    await execute(
        engine, "UPDATE internal_users SET friendly_name = 'B' WHERE id IN ('u05', 'u06', 'u07')"
    )
    second = await sync(Scope.INCREMENTAL, **LIMITS)
    third = await sync(Scope.INCREMENTAL, deletion_window=0, **LIMITS)

    assert (first.users_written, first.writes_held) == (3, 0)
    assert (second.users_written, second.writes_held) == (0, 3)
    assert second.write_held_reason is not None
    assert "3 earlier in the window" in second.write_held_reason
    assert (third.users_written, third.writes_held) == (3, 0)


async def test_a_trickle_of_one_user_runs_is_held_once_the_windows_budget_is_spent(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 20)
    fast_emulator.emulator.reset_stats()

    runs = []
    for n in range(8):
        await execute(
            engine, "UPDATE internal_users SET friendly_name = 'new' WHERE id = :u", u=f"u{n:02d}"
        )
        runs.append(await sync(Scope.USERS, targets=[f"u{n:02d}"], **LIMITS))

    assert [r.users_written for r in runs] == [1] * 5 + [0] * 3
    assert [r.writes_held for r in runs] == [0] * 5 + [1] * 3
    assert writes_made(fast_emulator) == 5
    async with db() as session:
        assert sorted(h.user_id for h in await writes.held(session)) == ["u05", "u06", "u07"]


async def test_a_user_written_by_a_full_run_and_by_events_counts_once(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 20)
    for name in ("a", "b", "c"):  # the same user, written by three runs of two kinds
        await execute(
            engine, "UPDATE internal_users SET friendly_name = :f WHERE id = 'u00'", f=name
        )
        scope = Scope.FULL if name == "b" else Scope.USERS
        await sync(scope, targets=[] if scope is Scope.FULL else ["u00"], **LIMITS)
    await execute(
        engine,
        "UPDATE internal_users SET friendly_name = 'x' WHERE id IN ('u01', 'u02', 'u03', 'u04')",
    )

    run = await sync(Scope.INCREMENTAL, **LIMITS)

    assert (run.users_written, run.writes_held) == (4, 0)  # 1 + 4 distinct users = the limit
    log = await fetch_all(engine, "SELECT count(DISTINCT user_id) AS n FROM sync_write")
    assert log == [{"n": 5}]


async def test_the_percent_limit_counts_the_linked_users(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 20)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'x' WHERE id < 'u03'")

    run = await sync(
        Scope.INCREMENTAL,
        max_writes_per_run=1000,
        max_writes_percent=10,
        max_writes_percent_floor=0,
    )

    assert run.writes_held == 3
    assert run.write_held_reason is not None
    assert "15.0% of the 20 users in reach" in run.write_held_reason


async def test_a_few_edits_of_a_small_service_are_under_the_percent_floor(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 20)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'x' WHERE id < 'u03'")

    run = await sync(Scope.INCREMENTAL, max_writes_per_run=1000, max_writes_percent=10)

    assert (run.writes_held, run.users_written) == (0, 3)


async def test_new_users_beyond_the_limit_are_held_too(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 20)
    await insert_users(engine, [{"id": f"new{n}"} for n in range(6)])

    run = await sync(Scope.INCREMENTAL, **LIMITS)

    assert (run.writes_held, run.counts["created"]) == (6, 0)
    assert len(fast_emulator.emulator.users()) == 20


async def test_a_dry_run_says_what_it_would_write_and_that_it_would_be_held(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 20)
    await execute(engine, """UPDATE internal_users SET attributes = '{"oops": true}'""")
    fast_emulator.emulator.reset_stats()

    plan = await sync(Scope.INCREMENTAL, dry_run=True, **LIMITS)

    assert (plan.would_write, plan.users_written, plan.writes_held) == (20, 20, 20)
    assert writes_made(fast_emulator) == 0
    async with db() as session:
        assert await writes.held(session) == []  # a dry run holds nothing


async def test_a_full_dry_run_counts_every_user_it_would_hold_and_shows_the_first_thousand(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 1_200)
    await execute(engine, """UPDATE internal_users SET attributes = '{"oops": true}'""")

    plan = await sync(Scope.FULL, dry_run=True, **LIMITS)

    assert (plan.would_write, plan.writes_held) == (1_200, 1_200)
    shown = [user for user, _ in plan.held_writes]
    assert len(shown) == len(set(shown)) == HELD_SHOWN


async def test_a_held_user_whose_source_is_put_back_is_no_longer_held(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 20)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'x'")
    await sync(Scope.INCREMENTAL, **LIMITS)
    await execute(engine, "UPDATE internal_users SET friendly_name = NULL")

    run = await sync(Scope.FULL, **LIMITS)

    assert (run.writes_held, run.users_written) == (0, 0)
    async with db() as session:
        assert await writes.held(session) == []


async def test_a_full_run_and_a_users_run_at_once_count_each_user_once(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 20)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'x' WHERE id < 'u05'")
    fast_emulator.emulator.reset_stats()
    fast_emulator.emulator.set_latency(0.2, operations=["update_user"])

    full = asyncio.create_task(sync(Scope.FULL, **LIMITS))
    users = asyncio.create_task(sync(Scope.USERS, targets=["u00", "u01", "u02"], **LIMITS))
    runs = await asyncio.gather(full, users)
    fast_emulator.emulator.set_latency(0.0)

    assert [r.writes_held for r in runs] == [0, 0]  # 5 distinct users: the limit, not 8
    assert sum(r.users_written for r in runs) == 5 == writes_made(fast_emulator)
    log = await fetch_all(engine, "SELECT count(DISTINCT user_id) AS n FROM sync_write")
    assert log == [{"n": 5}]
    names = {u["identity"]: u["friendly_name"] for u in fast_emulator.emulator.users()}
    assert [names[f"u{n:02d}"] for n in range(6)] == ["x"] * 5 + [None]


async def test_an_incremental_run_lets_go_of_a_put_back_users_hold(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    """Put back, a held user's source row equals what was applied again: an incremental run,
    not only a full one, drops the hold, so a later change of one of them is no longer held
    for another run's review (a one-user run never writes a user held elsewhere)."""
    await synced(engine, sync, 20)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'x'")
    assert (await sync(Scope.INCREMENTAL, **LIMITS)).writes_held == 20
    await execute(engine, "UPDATE internal_users SET friendly_name = NULL")

    run = await sync(Scope.INCREMENTAL, **LIMITS)

    assert (run.writes_held, run.users_written) == (0, 0)
    async with db() as session:
        assert await writes.held(session) == []
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Ada' WHERE id = 'u03'")
    one = await sync(Scope.USERS, targets=["u03"], **LIMITS)
    assert (one.users_written, one.writes_held) == (1, 0)
    names = {u["identity"]: u["friendly_name"] for u in fast_emulator.emulator.users()}
    assert names["u03"] == "Ada"


async def test_a_user_held_by_a_run_and_looked_at_again_by_its_follow_up_counts_once(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    """u02 takes the identity u01 leaves; u01's rename is held with the rest, so u02 waits and
    the run's follow-up pass looks at both again: u01 is held once, not once a pass."""
    await synced(engine, sync, 20)
    renamed = ("u00", "u03", "u04", "u05", "u06")
    await execute(
        engine,
        "UPDATE internal_users SET friendly_name = 'x' WHERE id = ANY(:ids)",
        ids=list(renamed),
    )
    await execute(engine, "UPDATE internal_users SET identity = 'u01z' WHERE id = 'u01'")
    await execute(engine, "UPDATE internal_users SET identity = 'u01' WHERE id = 'u02'")

    run = await sync(Scope.INCREMENTAL, **LIMITS)

    rows = await fetch_all(engine, "SELECT user_id FROM sync_write WHERE state = 'held'")
    held = sorted(r["user_id"] for r in rows)
    assert held == sorted([*renamed, "u01"])
    assert run.writes_held == len(held)
    assert sorted(u for u, _ in run.held_writes) == held
    assert (run.counts["waiting"], run.users_written) == (1, 0)


async def swap(engine: AsyncEngine, one: str, other: str) -> None:
    """Two users swap identities (their ids, in `synced`) in one transaction, as an identity
    system would."""
    async with engine.begin() as connection:
        for sql, values in (
            ("UPDATE internal_users SET identity = 'swapping' WHERE id = :a", {"a": one}),
            ("UPDATE internal_users SET identity = :a WHERE id = :b", {"a": one, "b": other}),
            ("UPDATE internal_users SET identity = :b WHERE id = :a", {"a": one, "b": other}),
        ):
            await connection.execute(text(sql), values)


@pytest.mark.parametrize("scope", [Scope.FULL, Scope.INCREMENTAL])
async def test_a_swap_the_write_guard_holds_deletes_nobody_and_allow_writes_finishes_it(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, scope: Scope
):
    """A swap is two creates, and the user that lets go deletes its old remote user first:
    held, that deletion waits with the creates (the adversary saw user801 deleted and nobody
    created, for a limit of one write)."""
    limits = {"max_writes_per_run": 1, "max_writes_percent": 100}
    await synced(engine, sync, 4)
    before = {u["identity"]: u["sid"] for u in fast_emulator.emulator.users()}
    await swap(engine, "u01", "u02")
    fast_emulator.emulator.reset_stats()

    run = await sync(scope, **limits)

    assert fast_emulator.emulator.stats.get("delete_user", 0) == 0
    assert writes_made(fast_emulator) == 0
    assert {u["identity"]: u["sid"] for u in fast_emulator.emulator.users()} == before
    assert run.writes_held == 1 and run.waiting == {"u02": "u01"}  # u01 lets go first
    assert "2 users to write exceed max_writes_per_run (1)" in (run.write_held_reason or "")
    released = await sync(Scope.INCREMENTAL, allow_writes=True, **limits)
    after = {u["identity"]: u["sid"] for u in fast_emulator.emulator.users()}
    assert released.counts["created"] == 2 and after.keys() == before.keys()
    assert {after["u01"], after["u02"]}.isdisjoint({before["u01"], before["u02"]})


async def test_a_swap_within_the_write_limit_is_written_in_one_run(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    limits = {"max_writes_per_run": 2, "max_writes_percent": 100}
    await synced(engine, sync, 4)
    await swap(engine, "u01", "u02")

    run = await sync(Scope.FULL, **limits)

    assert (run.writes_held, run.counts["created"]) == (0, 2)


async def test_status_lists_the_first_thousand_held_writes_and_says_how_many_there_are(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    await synced(engine, sync, 1_002)
    await execute(engine, """UPDATE internal_users SET attributes = '{"oops": true}'""")
    assert (await sync(Scope.INCREMENTAL, **LIMITS)).writes_held == 1_002

    async with db() as session:
        summary = await status_report(session)
    console = Console(file=io.StringIO(), width=200)
    report.print_status(summary, console)

    assert (len(summary.held_writes), summary.held_writes_total) == (1_000, 1_002)
    assert (
        "Writes held (release with: user-sync sync --allow-writes): the first 1,000 of 1,002"
        in (console.file.getvalue())
    )
