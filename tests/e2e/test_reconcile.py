"""The reconcile engine end to end: real Postgres, the emulator over HTTP, no mocks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.runs import RunStatus, Scope
from service.reconcile.progress import Phase, RunProgress
from service.reconcile.run import RunFailed, RunInProgress
from service.wiring import ServiceUnresolved
from tests.e2e.conftest import execute, fetch_all, generate_users, insert_users
from tests.fixtures.emulator import account_auth

WRITES = ("create_user", "update_user", "delete_user")


def remote_by_identity(emulator: Any) -> dict[str, dict[str, Any]]:
    return {u["identity"]: u for u in emulator.emulator.users()}


def writes(emulator: Any) -> int:
    stats = emulator.emulator.stats
    return sum(stats.get(op, 0) for op in WRITES)


def role_sid(emulator: Any, name: str) -> str:
    return next(r["sid"] for r in emulator.emulator.roles() if r["friendly_name"] == name)


async def test_initial_sync_creates_every_user_then_a_second_run_changes_nothing(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await generate_users(engine, 1000)

    first = await sync(Scope.FULL)

    assert first.status is RunStatus.SUCCEEDED
    assert first.counts["created"] == 1000
    remote = remote_by_identity(fast_emulator)
    assert len(remote) == 1000
    assert remote["user7@example.com"]["friendly_name"] == "User 7"
    assert json.loads(remote["user7@example.com"]["attributes"]) == {"n": 7, "team": "team-0"}

    fast_emulator.emulator.reset_stats()
    second = await sync(Scope.FULL)
    stats = fast_emulator.emulator.stats
    assert second.counts["unchanged"] == 1000
    assert writes(fast_emulator) == 0
    assert stats.get("list_users", 0) == 20  # 1000 users / 50 per page
    assert stats.get("list_roles", 0) == 0  # nobody names a role: the default is never fought
    assert second.api_calls == 20  # exactly the list pages

    fast_emulator.emulator.reset_stats()
    third = await sync(Scope.INCREMENTAL)
    assert third.api_calls == 0
    assert sum(fast_emulator.emulator.stats.get(op, 0) for op in ("list_users", "list_roles")) == 0


async def test_updates_only_the_fields_that_differ(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(
        engine,
        [
            {"id": "a", "identity": "alice", "friendly_name": "Alice", "attributes": {"x": 1}},
            {"id": "b", "identity": "bob", "friendly_name": "Bob"},
        ],
    )
    await sync(Scope.FULL)
    admin = role_sid(fast_emulator, "service admin")
    await execute(
        engine,
        "UPDATE internal_users SET role = 'service admin', attributes = '{\"x\": 2}' "
        "WHERE id = 'a'",
    )
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Robert' WHERE id = 'b'")
    fast_emulator.emulator.reset_stats()

    run = await sync(Scope.INCREMENTAL)

    remote = remote_by_identity(fast_emulator)
    assert run.counts["updated"] == 2
    assert remote["alice"]["role_sid"] == admin
    assert json.loads(remote["alice"]["attributes"]) == {"x": 2}
    assert remote["bob"]["friendly_name"] == "Robert"
    assert fast_emulator.emulator.stats.get("update_user", 0) == 2
    assert fast_emulator.emulator.stats.get("list_roles", 0) == 1  # once alice named a role


async def test_the_roles_are_read_once_per_run_however_many_users_name_one(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await generate_users(engine, 1500)
    await execute(engine, "UPDATE internal_users SET role = 'service admin'")

    run = await sync(Scope.FULL)

    assert run.counts["created"] == 1500
    assert fast_emulator.emulator.stats.get("list_roles", 0) == 1
    admin = role_sid(fast_emulator, "service admin")
    assert {u["role_sid"] for u in remote_by_identity(fast_emulator).values()} == {admin}


async def test_attribute_key_order_and_whitespace_never_cause_an_update(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice", "attributes": {"a": 1, "b": 2}}])
    await sync(Scope.FULL)
    sid = remote_by_identity(fast_emulator)["alice"]["sid"]
    # reorder remotely through the API representation: same JSON value, other text
    async with aiohttp.ClientSession(headers=account_auth(fast_emulator)) as http:
        await http.post(
            f"{fast_emulator.base_url}/v1/Users/{sid}",
            data={"Attributes": '{ "b": 2,   "a": 1 }'},
        )
    fast_emulator.emulator.reset_stats()
    run = await sync(Scope.FULL)
    assert run.counts["unchanged"] == 1
    assert writes(fast_emulator) == 0


@pytest.mark.parametrize(
    ("delete_mode", "expected_remote"),
    [
        ("managed", {"keep", "stranger", "system-bot"}),
        ("mirror", {"keep", "system-bot"}),
        ("never", {"keep", "gone", "sleeper", "stranger", "system-bot"}),
    ],
    ids=["managed deletes only its own", "mirror deletes unknown but protected", "never deletes"],
)
async def test_delete_modes_decide_what_is_deleted(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, delete_mode: str, expected_remote: set[str]
):
    await insert_users(
        engine,
        [
            {"id": "1", "identity": "keep"},
            {"id": "2", "identity": "gone"},
            {"id": "3", "identity": "sleeper"},
        ],
    )
    fast_emulator.emulator.seed_users([{"identity": "stranger"}, {"identity": "system-bot"}])
    settings = {
        "delete_mode": delete_mode,
        "protected_identity_pattern": "^system-",
        "max_deletes_percent": 100.0,
    }
    await sync(Scope.FULL, **settings)
    await execute(engine, "DELETE FROM internal_users WHERE id = '2'")
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = '3'")

    run = await sync(Scope.FULL, **settings)

    assert run.status is RunStatus.SUCCEEDED
    assert set(remote_by_identity(fast_emulator)) == expected_remote


async def test_deletion_guard_holds_back_a_mass_delete_until_released(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await generate_users(engine, 50)
    await sync(Scope.FULL)
    await execute(engine, "UPDATE internal_users SET active = false WHERE id <> 'user-1'")

    held = await sync(Scope.FULL, max_deletes_per_run=10)

    assert len(remote_by_identity(fast_emulator)) == 50
    assert len(held.held) == 49
    assert held.held_reason
    runs = await fetch_all(engine, "SELECT deletions_held, held_reason FROM sync_run ORDER BY id")
    assert runs[-1]["deletions_held"] == 49

    released = await sync(Scope.FULL, max_deletes_per_run=10, allow_deletes=True)

    assert released.counts["deleted"] == 49
    assert set(remote_by_identity(fast_emulator)) == {"user1@example.com"}


async def test_a_rename_creates_the_new_identity_then_deletes_the_old(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "u1", "identity": "old-name", "friendly_name": "Ann"}])
    await sync(Scope.FULL)
    await execute(engine, "UPDATE internal_users SET identity = 'new-name' WHERE id = 'u1'")

    await sync(Scope.INCREMENTAL)

    remote = remote_by_identity(fast_emulator)
    assert set(remote) == {"new-name"}
    assert remote["new-name"]["friendly_name"] == "Ann"
    state = await fetch_all(engine, "SELECT identity, remote_sid, retired_sid FROM sync_state")
    assert state == [
        {"identity": "new-name", "remote_sid": remote["new-name"]["sid"], "retired_sid": None}
    ]


@pytest.mark.parametrize("scope", [Scope.FULL, Scope.INCREMENTAL])
async def test_a_second_rename_before_the_first_old_user_is_gone_leaves_neither_behind(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, scope: Scope
):
    await insert_users(engine, [{"id": "u1", "identity": "first"}])
    await sync(Scope.FULL)
    fast_emulator.emulator.inject_fault("status", status=403, count=1, operations={"delete_user"})
    await execute(engine, "UPDATE internal_users SET identity = 'second' WHERE id = 'u1'")
    await sync(Scope.INCREMENTAL)  # creates "second"; deleting "first" fails
    assert set(remote_by_identity(fast_emulator)) == {"first", "second"}
    await execute(engine, "UPDATE internal_users SET identity = 'third' WHERE id = 'u1'")

    finishing = await sync(scope)

    assert set(remote_by_identity(fast_emulator)) == {"second"}  # the first rename, finished
    assert finishing.counts["linked"] == 1
    state = await fetch_all(engine, "SELECT identity, status, retired_sid FROM sync_state")
    assert state == [{"identity": "second", "status": "pending", "retired_sid": None}]

    await sync(Scope.INCREMENTAL)

    remote = remote_by_identity(fast_emulator)
    assert set(remote) == {"third"}
    state = await fetch_all(
        engine, "SELECT identity, remote_sid, status, retired_sid FROM sync_state"
    )
    assert state == [
        {
            "identity": "third",
            "remote_sid": remote["third"]["sid"],
            "status": "synced",
            "retired_sid": None,
        }
    ]


async def test_adopts_existing_remote_users_instead_of_creating_them_again(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    seeded = fast_emulator.emulator.seed_users(
        [{"identity": "alice", "friendly_name": "Alice"}, {"identity": "bob", "friendly_name": "B"}]
    )
    await insert_users(
        engine,
        [
            {"id": "a", "identity": "alice", "friendly_name": "Alice"},
            {"id": "b", "identity": "bob", "friendly_name": "Bob"},
        ],
    )

    run = await sync(Scope.FULL)

    assert fast_emulator.emulator.stats.get("create_user", 0) == 0
    assert run.counts["linked"] + run.counts["adopted"] == 2
    remote = remote_by_identity(fast_emulator)
    assert remote["bob"]["friendly_name"] == "Bob"
    assert {u["sid"] for u in seeded} == {u["sid"] for u in remote.values()}
    linked = await fetch_all(engine, "SELECT remote_sid FROM sync_state ORDER BY user_id")
    assert {r["remote_sid"] for r in linked} == {u["sid"] for u in seeded}


async def test_a_full_run_repairs_drift_made_directly_in_twilio(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await generate_users(engine, 20)
    await sync(Scope.FULL)
    remote = remote_by_identity(fast_emulator)
    async with aiohttp.ClientSession(headers=account_auth(fast_emulator)) as http:
        await http.delete(f"{fast_emulator.base_url}/v1/Users/user3@example.com")
        await http.post(
            f"{fast_emulator.base_url}/v1/Users/{remote['user4@example.com']['sid']}",
            data={"FriendlyName": "edited by hand"},
        )

    run = await sync(Scope.FULL)

    assert run.counts["created"] == 1
    assert run.counts["updated"] == 1
    remote = remote_by_identity(fast_emulator)
    assert len(remote) == 20
    assert remote["user4@example.com"]["friendly_name"] == "User 4"


async def test_bad_input_is_recorded_per_user_and_everyone_else_syncs(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(
        engine,
        [
            {"id": "ok", "identity": "fine"},
            {"id": "long", "identity": "x" * 300},
            {"id": "role", "identity": "norole", "role": "no such role"},
            {"id": "sidlike", "identity": "US" + "0" * 32},
            {"id": "big", "identity": "big", "attributes": {"blob": "y" * 17000}},
            {"id": "empty", "identity": ""},
            {"id": "ctrl", "identity": "line\nbreak"},
            {"id": "name", "identity": "named", "friendly_name": "n" * 300},
        ],
    )

    run = await sync(Scope.FULL)

    assert run.status is RunStatus.PARTIAL
    assert set(remote_by_identity(fast_emulator)) == {"fine"}
    errors = await fetch_all(engine, "SELECT user_id, field, message FROM sync_error")
    by_user = {e["user_id"]: e for e in errors}
    expected_fields = {
        "long": "identity",
        "role": "role",
        "sidlike": "identity",
        "big": "attributes",
        "empty": "identity",
        "ctrl": "identity",
        "name": "friendly_name",
    }
    assert {u: e["field"] for u, e in by_user.items()} == expected_fields
    for user_id, error in by_user.items():
        assert user_id in error["message"]
        assert expected_fields[user_id].replace("_", " ") in error["message"].replace("_", " ")
    states = await fetch_all(engine, "SELECT user_id, status FROM sync_state ORDER BY user_id")
    assert {s["user_id"]: s["status"] for s in states}["ok"] == "synced"
    assert {s["user_id"]: s["status"] for s in states}["long"] == "failed"


async def test_storms_of_5xx_429_and_timeouts_end_converged(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await generate_users(engine, 200)
    control = fast_emulator.emulator
    control.inject_fault("status", fraction=0.2, status=503)
    control.inject_fault("rate_limit", fraction=0.1, retry_after=0.01)
    control.inject_fault("drop", fraction=0.05)

    for _ in range(6):
        try:
            run = await sync(Scope.FULL, max_retries=3, failure_backoff_base=0.001)
        except ServiceUnresolved:  # the storm also hits the one read at start; nothing ran
            continue
        except RunFailed:  # the listing failed past its retries: recorded failed, try again
            continue
        if run.status is RunStatus.SUCCEEDED:
            break
    control.clear_faults()
    final = await sync(Scope.FULL)

    assert final.status is RunStatus.SUCCEEDED
    remote = remote_by_identity(fast_emulator)
    assert len(remote) == 200
    assert len(control.users()) == 200  # no identity twice


async def test_a_second_concurrent_run_is_refused_clearly(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await generate_users(engine, 30)
    fast_emulator.emulator.set_latency(0.5)
    first = asyncio.create_task(sync(Scope.FULL))
    while not await fetch_all(engine, "SELECT id FROM sync_run WHERE status = 'running'"):
        await asyncio.sleep(0.02)
    with pytest.raises(RunInProgress, match="already running"):
        await sync(Scope.FULL)
    assert (await first).status is RunStatus.SUCCEEDED


async def test_dry_run_prints_the_plan_and_writes_nothing(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice", "friendly_name": "Alice"}])

    run = await sync(Scope.FULL, dry_run=True)

    assert writes(fast_emulator) == 0
    assert fast_emulator.emulator.users() == []
    assert any("alice" in line for line in run.planned)
    assert await fetch_all(engine, "SELECT * FROM sync_state") == []


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE internal_users SET active = false WHERE id = 'u1'",
        "DELETE FROM internal_users WHERE id = 'u1'",
        "UPDATE internal_users SET identity = 'renamed' WHERE id = 'u1'",
    ],
    ids=["then deactivated", "then deleted", "then renamed"],
)
async def test_a_create_left_unrecorded_by_a_killed_run_is_still_ours(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, change: str
):
    # what a run killed between the create call and recording its outcome leaves behind
    await insert_users(engine, [{"id": "u1", "identity": "original"}])
    fast_emulator.emulator.seed_users([{"identity": "original"}])
    await execute(
        engine,
        "INSERT INTO sync_state (user_id, identity, status) VALUES ('u1', 'original', 'pending')",
    )
    await execute(engine, change)

    run = await sync(Scope.FULL, max_deletes_percent=100.0)

    assert run.status is RunStatus.SUCCEEDED
    expected = {"renamed"} if "renamed" in change else set()
    assert set(remote_by_identity(fast_emulator)) == expected


async def test_progress_follows_the_listing_then_every_user_to_the_end(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await generate_users(engine, 300)
    await sync(Scope.FULL)
    await execute(engine, "UPDATE internal_users SET active = false WHERE id <> 'user-1'")
    fast_emulator.emulator.seed_users([{"identity": "stranger"}])
    progress = RunProgress()
    seen: list[tuple[Phase, int]] = []

    async def watch() -> None:
        while True:
            seen.append((progress.phase, progress.done))
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        run = await sync(
            Scope.FULL, delete_mode="mirror", max_deletes_per_run=10, progress=progress
        )
    finally:
        watcher.cancel()

    assert len(run.held) == 300  # 299 inactive users and the stranger, over the guard
    assert progress.listed == 301
    assert progress.total == 301  # 300 internal users, then the stranger found at the end
    assert progress.done == 301
    assert progress.phase is Phase.DELETING
    order = [Phase.STARTING, Phase.LISTING, Phase.RECONCILING, Phase.DELETING]
    phases = [order.index(phase) for phase, _ in seen]
    assert phases == sorted(phases)
    assert [done for _, done in seen] == sorted(done for _, done in seen)


async def test_an_unwatched_run_does_not_count_its_users(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await generate_users(engine, 5)

    run = await sync(Scope.INCREMENTAL)

    assert run.counts["created"] == 5
    assert run.progress.total is None
    assert run.progress.done == 5


async def test_a_dry_run_counts_every_planned_user_including_deletions(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await generate_users(engine, 20)
    await sync(Scope.FULL)
    await execute(
        engine, "UPDATE internal_users SET active = false WHERE id IN ('user-1', 'user-2')"
    )
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Renamed' WHERE id = 'user-3'")
    progress = RunProgress()

    run = await sync(Scope.FULL, dry_run=True, progress=progress)

    assert len(run.planned) == 3
    assert (run.counts["planned"], run.counts["unchanged"]) == (3, 17)
    assert (progress.total, progress.done) == (20, 20)


async def test_a_create_its_own_retry_meets_as_409_adopts_the_user_with_its_named_role(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    """The 409 re-plans the user with the roles the run read for its first plan."""
    await insert_users(engine, [{"id": "a", "identity": "alice", "role": "service admin"}])
    fast_emulator.emulator.inject_fault(
        "status", status=500, count=1, operations=["create_user"], after_processing=True
    )

    run = await sync(Scope.INCREMENTAL)

    assert run.status is RunStatus.SUCCEEDED
    assert run.counts["adopted"] == 1
    alice = remote_by_identity(fast_emulator)["alice"]
    assert alice["role_sid"] == role_sid(fast_emulator, "service admin")
    rows = await fetch_all(engine, "SELECT remote_sid, status FROM sync_state WHERE user_id = 'a'")
    assert rows == [{"remote_sid": alice["sid"], "status": "synced"}]


async def test_a_run_counts_only_the_results_it_had(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice"}])

    created = await sync(Scope.FULL)
    unchanged = await sync(Scope.FULL)

    assert dict(created.counts) == {"created": 1}
    assert dict(unchanged.counts) == {"unchanged": 1}
    rows = await fetch_all(engine, "SELECT counts FROM sync_run ORDER BY id")
    assert [r["counts"] for r in rows] == [{"created": 1}, {"unchanged": 1}]
