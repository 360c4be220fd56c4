"""Runs that overlap: a full run's plan is never applied once it is stale.

Runs of named users (events, `sync --user`) take another lock than full runs, so they can run
while a full run is in progress; what keeps them apart is the per-user lease, which compares
the planned fingerprint and state version just before any write. Each test holds a full run
in the middle (slow writes of other users, injected in the emulator) while a one-user run
changes what the full run had planned for.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.runs import Scope
from service.reconcile.run import RunReport
from tests.e2e.conftest import execute, fetch_all, insert_users, wait_until_leased


def remote_by_identity(emulator: Any) -> dict[str, dict[str, Any]]:
    return {u["identity"]: u for u in emulator.emulator.users()}


SLOW = {"max_in_flight": 1, "max_deletes_percent": 100, "early_writes": False}
"""One request at a time, so the full run's later users wait behind the slow ones; every user
planned from the listing, so the slow user's lease says the others are planned (a changed user
the state remembers is otherwise written as the listing starts: tests/e2e/test_early_writes.py)."""


async def test_a_full_run_does_not_delete_a_user_reactivated_and_synced_meanwhile(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a-slow"}, {"id": "y"}])
    await sync(Scope.FULL)
    y_sid = remote_by_identity(fast_emulator)["y"]["sid"]
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'y'")
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Slow' WHERE id = 'a-slow'")
    fast_emulator.emulator.set_latency(1.0, operations=["update_user"])

    full: asyncio.Task[RunReport] = asyncio.create_task(sync(Scope.FULL, **SLOW))
    await wait_until_leased(engine, "a-slow")  # y's deletion is planned, waiting its turn
    await execute(engine, "UPDATE internal_users SET active = true WHERE id = 'y'")
    confirmed = await sync(Scope.USERS, targets=["y"])
    report = await full

    assert confirmed.counts["unchanged"] == 1
    assert report.counts["deleted"] == 0
    assert report.counts["deferred"] == 1
    assert remote_by_identity(fast_emulator)["y"]["sid"] == y_sid
    fast_emulator.emulator.set_latency(0.0)
    after = await sync(Scope.FULL)
    assert after.counts["created"] == 0
    assert remote_by_identity(fast_emulator)["y"]["sid"] == y_sid


async def test_a_rename_finished_by_a_user_run_is_not_undone_by_the_full_runs_stale_update(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    # more than the pool (2 slots) leases ahead: the full run leases 4 at once, then 2 more
    # whenever one of the first finishes
    slow = [{"id": f"a-slow{n}"} for n in range(6)]
    await insert_users(engine, [*slow, {"id": "zz", "identity": "x-old"}])
    await sync(Scope.FULL)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Slow' WHERE id <> 'zz'")
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Zed' WHERE id = 'zz'")
    fast_emulator.emulator.set_latency(0.5, operations=["update_user"])

    full: asyncio.Task[RunReport] = asyncio.create_task(sync(Scope.FULL, **SLOW))
    await wait_until_leased(engine, "a-slow0")  # zz's update of x-old is planned
    await execute(engine, "UPDATE internal_users SET identity = 'x-new' WHERE id = 'zz'")
    renamed = await sync(Scope.USERS, targets=["zz"])
    report = await full

    assert renamed.counts["created"] == 1
    assert report.counts["deferred"] == 1
    remote = remote_by_identity(fast_emulator)
    assert "x-old" not in remote
    assert remote["x-new"]["friendly_name"] == "Zed"
    state = (await fetch_all(engine, "SELECT * FROM sync_state WHERE user_id = 'zz'"))[0]
    assert (state["remote_sid"], state["identity"]) == (remote["x-new"]["sid"], "x-new")


async def test_a_user_run_leaves_alone_a_user_the_full_run_is_applying(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a-slow"}])
    await sync(Scope.FULL)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Slow' WHERE id = 'a-slow'")
    fast_emulator.emulator.set_latency(1.0, operations=["update_user"])

    full: asyncio.Task[RunReport] = asyncio.create_task(sync(Scope.FULL, **SLOW))
    await wait_until_leased(engine, "a-slow")
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Slower' WHERE id = 'a-slow'")
    overlapping = await sync(Scope.USERS, targets=["a-slow"])
    await full
    fast_emulator.emulator.set_latency(0.0)
    after = await sync(Scope.USERS, targets=["a-slow"])

    assert overlapping.deferred == ["a-slow"]
    assert fast_emulator.emulator.stats.get("update_user", 0) == 2  # once each, never together
    assert after.counts["updated"] == 1
    assert remote_by_identity(fast_emulator)["a-slow"]["friendly_name"] == "Slower"


async def test_a_run_killed_mid_way_does_not_keep_its_users_from_the_next_run(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a-slow"}])
    await sync(Scope.FULL)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Slow' WHERE id = 'a-slow'")
    fast_emulator.emulator.set_latency(5.0, operations=["update_user"])
    full: asyncio.Task[RunReport] = asyncio.create_task(sync(Scope.FULL, **SLOW))
    await wait_until_leased(engine, "a-slow")
    full.cancel()
    await asyncio.gather(full, return_exceptions=True)
    fast_emulator.emulator.set_latency(0.0)

    after = await sync(Scope.USERS, targets=["a-slow"])

    assert after.deferred == []
    assert remote_by_identity(fast_emulator)["a-slow"]["friendly_name"] == "Slow"


async def test_a_user_deleted_by_a_user_run_during_a_mirror_full_run_is_one_held_deletion(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    """The full run planned the removed user's deletion from its state, then (the user run
    having deleted it meanwhile) found its remote user in the snapshot as nobody's: one
    deletion, held once, not a run that fails recording the same sid twice."""
    policy = {**SLOW, "delete_mode": "mirror", "max_deletes_per_run": 0}
    await insert_users(engine, [{"id": "a-gone"}, {"id": "b-slow"}])
    await sync(Scope.FULL)
    gone_sid = remote_by_identity(fast_emulator)["a-gone"]["sid"]
    await execute(engine, "DELETE FROM internal_users WHERE id = 'a-gone'")
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Slow' WHERE id = 'b-slow'")
    fast_emulator.emulator.set_latency(1.0, operations=["update_user"])

    full: asyncio.Task[RunReport] = asyncio.create_task(sync(Scope.FULL, **policy))
    await wait_until_leased(engine, "b-slow")  # a-gone's deletion is planned from its state
    deleted = await sync(Scope.USERS, targets=["a-gone"], allow_deletes=True)
    report = await full

    assert deleted.counts["deleted"] == 1
    assert report.error is None
    assert report.counts["updated"] == 1
    assert [d.sid for d in report.held] == [gone_sid]
    held = await fetch_all(engine, "SELECT sid, user_id FROM sync_deletion WHERE state = 'held'")
    assert held == [{"sid": gone_sid, "user_id": "a-gone"}]
    fast_emulator.emulator.set_latency(0.0)
    await sync(Scope.FULL, **policy)  # looked at everyone: nothing left to hold
    assert await fetch_all(engine, "SELECT sid FROM sync_deletion WHERE state = 'held'") == []
