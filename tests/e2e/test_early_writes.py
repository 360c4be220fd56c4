"""Full runs write while they list (`reconcile.early`): a linked user whose source row changed
and whose state remembers its remote user is written as the listing starts, under the write
guard, once, and drift behind our back on it is still found. Real Postgres, the emulator over
HTTP (a slow listing through its latency control).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.runs import RunStatus, Scope
from service.emulator.directory import UserFields
from service.reconcile.progress import Phase, RunProgress
from tests.e2e.conftest import execute, fetch_all, insert_users, wait_until_leased

SLOW_LISTING = 1.5
"""Seconds each list page takes: long enough to see a write land before the listing ends."""


def remote(emulator: Any, identity: str) -> dict[str, Any] | None:
    return next((u for u in emulator.emulator.users() if u["identity"] == identity), None)


def updates(emulator: Any) -> int:
    return int(emulator.emulator.stats.get("update_user", 0))


def writes_made(emulator: Any) -> int:
    return int(emulator.emulator.stats.get("create_user", 0)) + updates(emulator)


def directory_user(emulator: Any, identity: str) -> Any:
    service = emulator.emulator.service()
    return next(u for u in emulator.emulator.directory.users(service.sid) if u.identity == identity)


async def users_synced(engine: AsyncEngine, sync: Any, count: int, **settings: Any) -> None:
    rows = [
        {"id": f"u{n:02d}", "identity": f"user{n:02d}", "friendly_name": "Old"}
        for n in range(count)
    ]
    await insert_users(engine, rows)
    assert (await sync(Scope.FULL, **settings)).status is RunStatus.SUCCEEDED


async def rename(engine: AsyncEngine, ids: list[str], name: str = "New") -> None:
    await execute(
        engine, "UPDATE internal_users SET friendly_name = :n WHERE id = ANY(:ids)", n=name, ids=ids
    )


@pytest.mark.parametrize("in_flight", [32, 2])  # 2: one request of the listing, one write
async def test_the_writes_of_changed_users_start_before_the_listing_ends(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, in_flight: int
):
    await users_synced(engine, sync, 3)
    await rename(engine, ["u01"])
    fast_emulator.emulator.set_latency(SLOW_LISTING, operations={"list_users"})
    fast_emulator.emulator.reset_stats()
    progress = RunProgress(watched=True)

    run = asyncio.create_task(sync(Scope.FULL, progress=progress, max_in_flight=in_flight))
    while remote(fast_emulator, "user01")["friendly_name"] != "New":
        assert not run.done()
        await asyncio.sleep(0.02)
    phase_when_written = progress.phase
    report = await run

    assert phase_when_written is Phase.LISTING
    assert report.status is RunStatus.SUCCEEDED
    assert (report.counts["updated"], report.counts["unchanged"]) == (1, 2)
    assert (updates(fast_emulator), report.users_written) == (1, 1)  # not written twice
    state = await fetch_all(
        engine,
        "SELECT fingerprint IS NOT NULL AS f, seen_friendly_name FROM sync_state"
        " WHERE user_id = 'u01'",
    )
    assert state == [{"f": True, "seen_friendly_name": "New"}]

    fast_emulator.emulator.set_latency(0)
    again = await sync(Scope.FULL)
    assert (again.counts["unchanged"], updates(fast_emulator)) == (3, 1)


async def test_one_request_at_a_time_early_writes_share_the_pool_of_two_connections(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await users_synced(engine, sync, 3)
    await rename(engine, ["u01", "u02"])
    fast_emulator.emulator.reset_stats()

    async with asyncio.timeout(20):  # a connection held while another is awaited: 30 s
        report = await sync(Scope.FULL, max_in_flight=1)

    assert (report.status, report.counts["updated"], updates(fast_emulator)) == (
        RunStatus.SUCCEEDED,
        2,
        2,
    )


OFF = {
    "early_writes off": {"early_writes": False},
    "merge mode": {"attributes_mode": "merge"},
    "read before write": {"read_before_write": True},
}


@pytest.mark.parametrize("settings", list(OFF))
async def test_without_early_writes_the_write_waits_for_the_listing(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, settings: str
):
    await users_synced(engine, sync, 3, **OFF[settings])
    await rename(engine, ["u01"])
    fast_emulator.emulator.set_latency(SLOW_LISTING, operations={"list_users"})
    progress = RunProgress(watched=True)

    run = asyncio.create_task(sync(Scope.FULL, progress=progress, **OFF[settings]))
    while remote(fast_emulator, "user01")["friendly_name"] != "New":
        assert not run.done()
        await asyncio.sleep(0.02)
    phase_when_written = progress.phase
    await run

    assert phase_when_written is not Phase.LISTING


async def test_an_early_group_over_the_write_limit_is_held_with_nothing_written(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    limits = {"max_writes_per_run": 5, "max_writes_percent": 100}
    await users_synced(engine, sync, 20, **limits)
    await rename(engine, [f"u{n:02d}" for n in range(8)])
    fast_emulator.emulator.reset_stats()

    run = await sync(Scope.FULL, **limits)

    assert writes_made(fast_emulator) == 0
    assert (run.writes_held, run.users_written) == (8, 0)
    assert run.write_held_reason is not None and "max_writes_per_run (5)" in run.write_held_reason
    assert {u["friendly_name"] for u in fast_emulator.emulator.users()} == {"Old"}


async def test_new_users_count_with_the_early_group_so_the_change_is_held_as_a_whole(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    limits = {"max_writes_per_run": 5, "max_writes_percent": 100}
    await users_synced(engine, sync, 10, **limits)
    await rename(engine, ["u00", "u01", "u02"])  # 3 early updates: under the limit alone
    await insert_users(engine, [{"id": f"new{n}"} for n in range(4)])  # 4 creates
    fast_emulator.emulator.reset_stats()

    run = await sync(Scope.FULL, **limits)

    assert writes_made(fast_emulator) == 0
    assert (run.writes_held, run.users_written) == (7, 0)


async def test_an_early_group_within_the_limit_is_written_and_logged_against_the_window(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    limits = {"max_writes_per_run": 5, "max_writes_percent": 100}
    await users_synced(engine, sync, 10, **limits)
    await rename(engine, ["u00", "u01", "u02"])
    fast_emulator.emulator.reset_stats()

    run = await sync(Scope.FULL, **limits)
    logged = await fetch_all(
        engine, "SELECT user_id FROM sync_write WHERE state = 'applied' ORDER BY user_id"
    )

    assert (run.users_written, run.writes_held, updates(fast_emulator)) == (3, 0, 3)
    assert [r["user_id"] for r in logged] == ["u00", "u01", "u02"]
    await rename(engine, ["u03", "u04", "u05"], name="Newer")  # 3 more: 6 in the window
    later = await sync(Scope.FULL, **limits)
    assert (later.writes_held, later.users_written, updates(fast_emulator)) == (3, 0, 3)


async def test_an_early_user_deleted_behind_our_back_is_created_again(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await users_synced(engine, sync, 3)
    old_sid = remote(fast_emulator, "user01")["sid"]
    fast_emulator.emulator.directory.delete_user(directory_user(fast_emulator, "user01"))
    await rename(engine, ["u01"])

    run = await sync(Scope.FULL)

    again = remote(fast_emulator, "user01")
    assert run.status is RunStatus.SUCCEEDED
    assert again is not None and again["sid"] != old_sid and again["friendly_name"] == "New"
    state = await fetch_all(engine, "SELECT remote_sid, status FROM sync_state WHERE user_id='u01'")
    assert state == [{"remote_sid": again["sid"], "status": "synced"}]
    assert len(fast_emulator.emulator.users()) == 3


async def test_drift_on_an_early_user_in_fields_the_source_kept_is_written_too(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await users_synced(engine, sync, 3)
    service = fast_emulator.emulator.service()
    user = directory_user(fast_emulator, "user01")
    fast_emulator.emulator.directory.update_user(
        service, user, UserFields(attributes='{"drift": 1}')
    )
    await rename(engine, ["u01"])
    fast_emulator.emulator.reset_stats()

    run = await sync(Scope.FULL)

    found = remote(fast_emulator, "user01")
    assert run.status is RunStatus.SUCCEEDED
    assert (found["friendly_name"], json.loads(found["attributes"])) == ("New", {})
    seen = await fetch_all(engine, "SELECT seen_attributes FROM sync_state WHERE user_id='u01'")
    assert json.loads(seen[0]["seen_attributes"]) == {}
    assert updates(fast_emulator) == 2  # the early write, then the drift its answer showed
    assert (run.counts["updated"], run.counts["unchanged"], run.users_written) == (1, 2, 1)


async def test_a_dry_run_writes_nothing_early(engine: AsyncEngine, sync: Any, fast_emulator: Any):
    await users_synced(engine, sync, 3)
    await rename(engine, ["u01"])
    fast_emulator.emulator.reset_stats()
    before = await fetch_all(engine, "SELECT * FROM sync_state ORDER BY user_id")

    run = await sync(Scope.FULL, dry_run=True)

    assert writes_made(fast_emulator) == 0
    assert remote(fast_emulator, "user01")["friendly_name"] == "Old"
    assert [line for line in run.planned if "user01" in line or "u01" in line] != []
    assert run.users_written == 1  # would write
    assert await fetch_all(engine, "SELECT * FROM sync_state ORDER BY user_id") == before


async def test_an_early_user_another_run_is_writing_is_left_to_that_run(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await users_synced(engine, sync, 3)
    await rename(engine, ["u01"])
    fast_emulator.emulator.set_latency(1.0, operations={"update_user"})
    fast_emulator.emulator.reset_stats()

    event = asyncio.create_task(sync(Scope.USERS, targets=["u01"]))
    await wait_until_leased(engine, "u01")  # the event run is writing u01
    full = await sync(Scope.FULL)
    await event

    assert (full.counts["deferred"], full.counts["unchanged"], full.users_written) == (1, 2, 0)
    assert updates(fast_emulator) == 1  # the event run's: the full run wrote nobody
    assert remote(fast_emulator, "user01")["friendly_name"] == "New"
    fast_emulator.emulator.set_latency(0)
    after = await sync(Scope.FULL)
    assert (after.counts["unchanged"], updates(fast_emulator)) == (3, 1)


async def test_a_run_stopped_during_its_listing_records_the_early_writes_it_made(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await users_synced(engine, sync, 3)
    await rename(engine, ["u01"])
    fast_emulator.emulator.set_latency(5.0, operations={"list_users"})
    progress = RunProgress(watched=True)

    run = asyncio.create_task(sync(Scope.FULL, progress=progress))
    async with asyncio.timeout(4):
        while remote(fast_emulator, "user01")["friendly_name"] != "New":
            await asyncio.sleep(0.02)
        while progress.done < 1:  # the write answered, its outcome not yet recorded
            await asyncio.sleep(0.01)
    assert progress.phase is Phase.LISTING
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run

    recorded = await fetch_all(
        engine, "SELECT seen_friendly_name, lease_run FROM sync_state WHERE user_id = 'u01'"
    )
    assert recorded == [{"seen_friendly_name": "New", "lease_run": None}]
    aborted = await fetch_all(engine, "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")
    assert aborted == [{"status": "aborted"}]
    fast_emulator.emulator.set_latency(0)
    fast_emulator.emulator.reset_stats()
    incremental = await sync(Scope.INCREMENTAL)
    assert (incremental.users_written, updates(fast_emulator)) == (0, 0)


async def test_a_row_changed_again_after_its_early_write_is_written_again_in_the_run(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await users_synced(engine, sync, 3)
    await rename(engine, ["u01"])
    fast_emulator.emulator.set_latency(SLOW_LISTING, operations={"list_users"})

    run = asyncio.create_task(sync(Scope.FULL))
    async with asyncio.timeout(5):
        while remote(fast_emulator, "user01")["friendly_name"] != "New":
            await asyncio.sleep(0.02)
    await rename(engine, ["u01"], name="Newer")  # while the listing still runs
    report = await run

    assert report.status is RunStatus.SUCCEEDED
    assert remote(fast_emulator, "user01")["friendly_name"] == "Newer"
    fast_emulator.emulator.set_latency(0)
    fast_emulator.emulator.reset_stats()
    incremental = await sync(Scope.INCREMENTAL)
    assert (incremental.users_written, updates(fast_emulator)) == (0, 0)


async def test_an_early_user_another_run_held_is_planned_after_the_listing_and_its_drift_fixed(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    """The other run writes from memory only the field the source changed, and its answer
    shows drift it leaves (its state then remembers nothing): the full run, whose listing
    ends after that run, plans the user it could not lease early and writes the drift away."""
    await users_synced(engine, sync, 3)
    service = fast_emulator.emulator.service()
    user = directory_user(fast_emulator, "user01")
    fast_emulator.emulator.directory.update_user(
        service, user, UserFields(attributes='{"drift": 1}')
    )
    await rename(engine, ["u01"])
    fast_emulator.emulator.set_latency(1.0, operations={"update_user"})

    event = asyncio.create_task(sync(Scope.USERS, targets=["u01"], request_timeout=10.0))
    await wait_until_leased(engine, "u01")
    fast_emulator.emulator.set_latency(2.0, operations={"list_users"})
    full = await sync(Scope.FULL, request_timeout=10.0)
    assert (await event).counts["updated"] == 1

    found = remote(fast_emulator, "user01")
    assert (found["friendly_name"], json.loads(found["attributes"])) == ("New", {})
    assert (full.counts["updated"], full.counts["deferred"], full.counts["unchanged"]) == (1, 0, 2)
    assert full.users_written == 1 and full.deferred == []


@pytest.mark.parametrize("window", [0, 3600])
async def test_drift_found_after_the_early_writes_counts_with_them_in_any_window(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, window: int
):
    """4 early updates, then 3 users drifted on the remote side: 7 writes for a run limit of
    5. The run's own early writes count at `settle` even with a window of 0 (each run
    alone), so the drift is held: the adversary saw all 7 written at window 0."""
    limits = {"max_writes_per_run": 5, "max_writes_percent": 100, "deletion_window": window}
    await users_synced(engine, sync, 20, **limits)
    await rename(engine, ["u01", "u02", "u03", "u04"])
    service = fast_emulator.emulator.service()
    for identity in ("user11", "user12", "user13"):
        fast_emulator.emulator.directory.update_user(
            service, directory_user(fast_emulator, identity), UserFields(friendly_name="Drift")
        )
    fast_emulator.emulator.reset_stats()

    run = await sync(Scope.FULL, **limits)

    assert (run.users_written, run.writes_held, updates(fast_emulator)) == (4, 3, 4)
    assert {remote(fast_emulator, f"user1{n}")["friendly_name"] for n in (1, 2, 3)} == {"Drift"}
