"""Deletion guards that nobody slips past: the linked users as the base, a rolling window.

A mass deletion held when it comes in one UPDATE must be held when it comes as a trickle of
one-user runs too; held deletions of several runs show together and are released together.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import deletions
from service.db.status import status_report
from service.domain.runs import Scope
from tests.e2e.conftest import execute, fetch_all, insert_users


def remote_identities(emulator: Any) -> set[str]:
    return {u["identity"] for u in emulator.emulator.users()}


async def test_the_percent_guard_counts_the_users_we_link_not_every_remote_user(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    fast_emulator.emulator.seed_users([{"identity": f"foreign{n}"} for n in range(200)])
    await insert_users(engine, [{"id": f"u{n}", "identity": f"managed{n}"} for n in range(10)])
    await sync(Scope.FULL)
    await execute(engine, "DELETE FROM internal_users")

    full = await sync(Scope.FULL)
    incremental = await sync(Scope.INCREMENTAL)

    assert len(full.held) == 10
    assert full.held_reason is not None and "of the 10 remote users in reach" in full.held_reason
    assert len(incremental.held) == 10
    assert {f"managed{n}" for n in range(10)} <= remote_identities(fast_emulator)


async def test_a_mass_deactivation_arriving_one_user_at_a_time_is_held_after_the_limit(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(50)])
    await sync(Scope.FULL)
    limits = {"max_deletes_per_run": 5, "max_deletes_percent": 100}

    for n in range(30):
        await execute(
            engine, "UPDATE internal_users SET active = false WHERE id = :u", u=f"u{n:02d}"
        )
        await sync(Scope.USERS, targets=[f"u{n:02d}"], **limits)

    assert len(remote_identities(fast_emulator)) == 45  # 5 deleted, 25 held
    async with db() as session:
        held = await deletions.held(session)
        report = await status_report(session)
    assert len(held) == 25
    assert len({h.run_id for h in held}) == 25  # held by 25 runs, shown together
    assert len(report.held) == 25

    released = await sync(Scope.FULL, allow_deletes=True, **limits)

    assert released.counts["deleted"] == 25
    assert len(remote_identities(fast_emulator)) == 20
    async with db() as session:
        assert await deletions.held(session) == []
    log = await fetch_all(engine, "SELECT state, count(*) AS n FROM sync_deletion GROUP BY 1")
    assert log == [{"state": "applied", "n": 30}]


async def test_the_window_counts_deletions_of_every_run_and_a_zero_window_counts_none(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    await sync(Scope.FULL)
    limits = {"max_deletes_per_run": 2, "max_deletes_percent": 100}

    await execute(engine, "UPDATE internal_users SET active = false WHERE id IN ('u00', 'u01')")
    first = await sync(Scope.INCREMENTAL, **limits)
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'u02'")
    second = await sync(Scope.INCREMENTAL, **limits)
    third = await sync(Scope.INCREMENTAL, deletion_window=0, **limits)

    assert first.counts["deleted"] == 2
    assert [d.user_id for d in second.held] == ["u02"]
    assert second.held_reason is not None and "2 earlier in the window" in second.held_reason
    assert third.counts["deleted"] == 1


async def test_a_held_user_reactivated_is_no_longer_held(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    await sync(Scope.FULL)
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'u03'")
    held = await sync(Scope.INCREMENTAL, max_deletes_per_run=0)
    await execute(engine, "UPDATE internal_users SET active = true WHERE id = 'u03'")

    await sync(Scope.USERS, targets=["u03"], max_deletes_per_run=0)

    assert len(held.held) == 1
    async with db() as session:
        assert await deletions.held(session) == []
    assert "u03" in remote_identities(fast_emulator)


async def test_a_remote_user_counts_once_in_the_window_however_many_runs_logged_its_deletion(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    """A deletion whose call was in flight when its run stopped stays `applied` (it may have
    happened) and is tried again by the next run, which logs it again: the window counts the
    remote user once (the adversary saw 362 rows for 347 users hold 122 deletions that were
    within the limit)."""
    limits = {"max_deletes_per_run": 2, "max_deletes_percent": 100}
    await insert_users(engine, [{"id": f"u{n}"} for n in range(5)])
    await sync(Scope.FULL, **limits)
    key = (await fetch_all(engine, "SELECT service_key FROM sync_run LIMIT 1"))[0]["service_key"]
    for run_id in (901, 902):  # one remote user's deletion, logged by two runs
        await execute(
            engine,
            "INSERT INTO sync_deletion (service_key, run_id, state, sid, user_id, identity,"
            " reason) VALUES (:key, :run, 'applied', 'USgone', 'gone', 'gone', 'removed')",
            key=key,
            run=run_id,
        )
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'u1'")

    run = await sync(Scope.INCREMENTAL, **limits)

    assert (run.counts["deleted"], len(run.held)) == (1, 0)  # 1 + 1 in the window: the limit
    assert "u1" not in remote_identities(fast_emulator)
