"""Incremental and targeted runs write a linked user from what its state remembers of the
remote user, without reading it first (`users.remembered`); a remote user deleted or made again
behind our back is still found by the answer of that write. Real Postgres, the emulator over
HTTP.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.runs import RunStatus, Scope
from service.emulator.directory import UserFields
from tests.e2e.conftest import execute, fetch_all, insert_users

NAMED = {"incremental": {}, "sync --user": {"targets": ["u1"]}}
SCOPES = {"incremental": Scope.INCREMENTAL, "sync --user": Scope.USERS}


def remote(emulator: Any, identity: str) -> dict[str, Any] | None:
    return next((u for u in emulator.emulator.users() if u["identity"] == identity), None)


def delete_behind_our_back(emulator: Any, identity: str) -> None:
    service = emulator.emulator.service()
    directory = emulator.emulator.directory
    user = next(u for u in directory.users(service.sid) if u.identity == identity)
    directory.delete_user(user)


async def alice_synced(engine: AsyncEngine, sync: Any) -> None:
    await insert_users(engine, [{"id": "u1", "identity": "alice", "friendly_name": "Alice"}])
    assert (await sync(Scope.FULL)).status is RunStatus.SUCCEEDED


async def rename_alice(engine: AsyncEngine, name: str) -> None:
    await execute(engine, "UPDATE internal_users SET friendly_name = :n WHERE id = 'u1'", n=name)


async def state(engine: AsyncEngine) -> dict[str, Any]:
    rows = await fetch_all(
        engine,
        "SELECT remote_sid, status, seen_friendly_name, seen_attributes FROM sync_state"
        " WHERE user_id = 'u1'",
    )
    return rows[0]


@pytest.mark.parametrize("run", list(SCOPES))
async def test_a_remembered_user_is_written_without_a_read(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, run: str
):
    await alice_synced(engine, sync)
    await rename_alice(engine, "Alice B")
    fast_emulator.emulator.reset_stats()

    report = await sync(SCOPES[run], **NAMED[run])

    assert report.status is RunStatus.SUCCEEDED
    calls = fast_emulator.emulator.stats
    assert (calls["fetch_user"], calls["update_user"]) == (0, 1)
    assert remote(fast_emulator, "alice")["friendly_name"] == "Alice B"
    assert (await state(engine))["seen_friendly_name"] == "Alice B"  # the answer, recorded


@pytest.mark.parametrize("run", list(SCOPES))
async def test_a_user_deleted_behind_our_back_is_created_again_by_the_write(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, run: str
):
    await alice_synced(engine, sync)
    old_sid = remote(fast_emulator, "alice")["sid"]
    delete_behind_our_back(fast_emulator, "alice")
    await rename_alice(engine, "Alice B")

    report = await sync(SCOPES[run], **NAMED[run])

    assert report.status is RunStatus.SUCCEEDED
    again = remote(fast_emulator, "alice")
    assert again is not None and again["sid"] != old_sid
    assert again["friendly_name"] == "Alice B"
    found = await state(engine)
    assert (found["remote_sid"], found["status"]) == (again["sid"], "synced")


@pytest.mark.parametrize("run", list(SCOPES))
async def test_a_user_made_again_behind_our_back_is_adopted_by_the_write(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, run: str
):
    await alice_synced(engine, sync)
    delete_behind_our_back(fast_emulator, "alice")
    service = fast_emulator.emulator.service()
    made = fast_emulator.emulator.directory.create_user(
        service, UserFields(identity="alice", friendly_name="Someone", attributes='{"x": 1}')
    )
    await rename_alice(engine, "Alice B")

    report = await sync(SCOPES[run], **NAMED[run])

    assert report.status is RunStatus.SUCCEEDED
    found = remote(fast_emulator, "alice")
    assert found is not None and found["sid"] == made.sid  # the 409 of a create is not hit
    assert (found["friendly_name"], found["attributes"]) == ("Alice B", "{}")
    assert (await state(engine))["remote_sid"] == made.sid


async def test_drift_on_an_unchanged_user_is_left_to_full_runs(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await alice_synced(engine, sync)
    delete_behind_our_back(fast_emulator, "alice")

    await sync(Scope.INCREMENTAL)
    assert remote(fast_emulator, "alice") is None  # nothing changed in the source: not looked at

    await sync(Scope.FULL)
    assert remote(fast_emulator, "alice") is not None


async def test_merge_mode_reads_before_writing(engine: AsyncEngine, sync: Any, fast_emulator: Any):
    merge = {"attributes_mode": "merge"}
    await insert_users(engine, [{"id": "u1", "identity": "alice", "friendly_name": "Alice"}])
    await sync(Scope.FULL, **merge)
    service = fast_emulator.emulator.service()
    user = next(u for u in fast_emulator.emulator.directory.users(service.sid))
    fast_emulator.emulator.directory.update_user(service, user, UserFields(attributes='{"k": 2}'))
    await execute(engine, """UPDATE internal_users SET attributes = '{"ours": 1}'""")

    await sync(Scope.INCREMENTAL, **merge)

    found = remote(fast_emulator, "alice")  # a write from memory would have dropped "k"
    assert json.loads(found["attributes"]) == {"k": 2, "ours": 1}


async def test_a_full_run_reads_a_user_another_run_wrote_while_it_listed(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    """The user is stale in the full run's snapshot (its state was written after the listing
    began): the full run reads it again instead of trusting what the state remembers, and so
    finds the drift made after the other run's write."""
    await alice_synced(engine, sync)
    fast_emulator.emulator.set_latency(2.0, operations=["list_users"])
    # early writes off: the other run, not the full run's early phase, writes the user
    full = asyncio.create_task(sync(Scope.FULL, request_timeout=10.0, early_writes=False))
    async with asyncio.timeout(10):
        while not await fetch_all(engine, "SELECT 1 FROM sync_run WHERE status = 'running'"):
            await asyncio.sleep(0.02)
    await rename_alice(engine, "Alice B")
    assert (await sync(Scope.USERS, targets=["u1"])).counts["updated"] == 1
    service = fast_emulator.emulator.service()
    user = next(u for u in fast_emulator.emulator.directory.users(service.sid))
    fast_emulator.emulator.directory.update_user(service, user, UserFields(attributes='{"d": 1}'))

    report = await full

    assert report.counts["updated"] == 1
    assert remote(fast_emulator, "alice")["attributes"] == "{}"
