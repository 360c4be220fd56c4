"""A run whose lock connection ends stops writing at once.

The Service lock and the run's alive lock live on the run's own lock connection. If that
connection ends (its backend terminated by an operator or a failover, say), Postgres lets go of
both, and a second run may take the Service at once. The first run must then make no further
call: it is stopped the moment the connection ends (the adversary saw such a run keep writing
for 15 s beside a second full run, 38 users updated by both), and the leases it might still ask
for are refused, as it holds no alive lock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import leases, locks, source
from service.domain.runs import RunStatus, Scope
from service.reconcile.run import RunFailed
from tests.e2e.conftest import execute, fetch_all, insert_users


def writes_made(emulator: Any) -> int:
    stats = emulator.emulator.stats
    return int(stats.get("create_user", 0) + stats.get("update_user", 0))


async def lock_backends(engine: AsyncEngine) -> list[int]:
    """The sessions holding advisory locks in the test database: the run's lock connection."""
    rows = await fetch_all(
        engine,
        "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND pid <> pg_backend_pid()",
    )
    return [r["pid"] for r in rows]


async def test_a_run_whose_lock_connection_ends_makes_no_more_calls_and_fails_saying_why(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": f"u{n:03d}"} for n in range(200)])
    fast_emulator.emulator.set_latency(0.05, operations={"create_user"})
    run = asyncio.create_task(sync(Scope.FULL, max_in_flight=2))
    while writes_made(fast_emulator) < 10:
        assert not run.done()
        await asyncio.sleep(0.01)

    when_ended = writes_made(fast_emulator)
    for pid in await lock_backends(engine):
        await execute(engine, "SELECT pg_terminate_backend(:pid)", pid=pid)
    with pytest.raises(RunFailed) as failed:
        await asyncio.wait_for(run, timeout=10)
    await asyncio.sleep(0.3)

    # The two writes in flight when it stopped land, and are recorded; nothing is sent after.
    assert writes_made(fast_emulator) <= when_ended + 4 < 200
    linked = await fetch_all(engine, "SELECT user_id FROM sync_state WHERE remote_sid IS NOT NULL")
    assert len(linked) == len(fast_emulator.emulator.users()) == writes_made(fast_emulator)
    assert failed.value.report.status is RunStatus.FAILED
    assert "lost its lock connection" in (failed.value.report.error or "")
    recorded = await fetch_all(engine, "SELECT status, error FROM sync_run ORDER BY id")
    assert recorded[-1]["status"] == "failed" and "lost its lock" in recorded[-1]["error"]
    fast_emulator.emulator.set_latency(0)
    after = await sync(Scope.FULL)  # the next run takes the Service and finishes the job
    assert after.status is RunStatus.SUCCEEDED
    assert len(fast_emulator.emulator.users()) == 200


async def test_a_run_without_its_alive_lock_is_refused_every_lease(db: Any, engine: AsyncEngine):
    await insert_users(engine, [{"id": "u1"}])
    async with db() as session:
        checked = await source.inspect(await session.connection(), "internal_users")
        request = leases.LeaseRequest(user_id="u1", fingerprint=None, version=None)
        with pytest.raises(locks.LockLost, match="run 4242 lost its lock connection"):
            await leases.take(session, [request], run_id=4242, source=checked, service_key="IStest")
    assert await fetch_all(engine, "SELECT lease_run FROM sync_state") == []


async def test_deletions_cut_off_by_a_lost_lock_are_logged_as_they_happened(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    """The deletion log says which deletions happened: a deletion whose work waited for its
    pacer's slot when the run stopped made no call and stops counting (`failed`); one whose
    call was sent stays `applied`. The adversary saw 48 `applied` for 16 made, and a later run
    held for deletions that never happened."""
    limits = {"max_deletes_per_run": 1000, "max_deletes_percent": 100}
    await insert_users(engine, [{"id": f"u{n:03d}"} for n in range(100)])
    await sync(Scope.FULL, **limits)
    await execute(engine, "UPDATE internal_users SET active = false WHERE id < 'u060'")
    fast_emulator.emulator.reset_stats()
    run = asyncio.create_task(sync(Scope.INCREMENTAL, write_rate=10, max_in_flight=16, **limits))
    while fast_emulator.emulator.stats.get("delete_user", 0) < 5:
        assert not run.done()
        await asyncio.sleep(0.01)

    for pid in await lock_backends(engine):
        await execute(engine, "SELECT pg_terminate_backend(:pid)", pid=pid)
    with pytest.raises(RunFailed) as failed:
        await asyncio.wait_for(run, timeout=10)
    await asyncio.sleep(0.3)  # a call sent before it stopped may still land

    remote = {u["identity"] for u in fast_emulator.emulator.users()}
    logged = await fetch_all(
        engine,
        "SELECT identity, state FROM sync_deletion WHERE run_id = :run",
        run=failed.value.report.run_id,
    )
    applied = {r["identity"] for r in logged if r["state"] == "applied"}
    untried = {r["identity"] for r in logged if r["state"] == "failed"}
    assert len(applied) + len(untried) == 60 and untried  # it stopped midway
    assert applied.isdisjoint(remote)  # each one `applied` was deleted
    assert untried <= remote  # each one `failed` is still there
