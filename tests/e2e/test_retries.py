"""Failed users are retried by later runs with backoff, and quarantined after K attempts."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.runs import RunStatus, Scope
from tests.e2e.conftest import execute, fetch_all, insert_users


async def state_of(engine: AsyncEngine, user_id: str) -> dict[str, Any]:
    rows = await fetch_all(
        engine,
        "SELECT status, attempts, last_error_code, next_attempt_at > now() AS waiting "
        "FROM sync_state WHERE user_id = :id",
        id=user_id,
    )
    return rows[0]


async def test_a_failed_user_waits_for_its_backoff_before_an_incremental_retry(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice"}, {"id": "b", "identity": "bob"}])
    fast_emulator.emulator.inject_fault("status", status=400, count=1, operations={"create_user"})

    first = await sync(Scope.INCREMENTAL)

    assert first.status is RunStatus.PARTIAL
    failed = [s for s in ("a", "b") if (await state_of(engine, s))["status"] == "failed"]
    assert len(failed) == 1
    assert (await state_of(engine, failed[0]))["waiting"] is True

    fast_emulator.emulator.reset_stats()
    second = await sync(Scope.INCREMENTAL)
    assert second.api_calls == 0  # not due yet: nothing to do

    await execute(engine, "UPDATE sync_state SET next_attempt_at = now() - interval '1 second'")
    third = await sync(Scope.INCREMENTAL)
    assert third.status is RunStatus.SUCCEEDED
    assert (await state_of(engine, failed[0]))["status"] == "synced"
    assert {u["identity"] for u in fast_emulator.emulator.users()} == {"alice", "bob"}


async def test_a_user_that_keeps_failing_is_quarantined_and_still_retried(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice"}])
    fast_emulator.emulator.inject_fault("status", status=400, operations={"create_user"})
    settings = {"failure_backoff_base": 0.001, "failure_backoff_max": 0.001, "quarantine_after": 3}

    for _ in range(3):
        await sync(Scope.INCREMENTAL, **settings)
        await asyncio.sleep(0.01)

    state = await state_of(engine, "a")
    assert state["status"] == "quarantined"
    assert state["attempts"] == 3
    errors = await fetch_all(engine, "SELECT http_status, action FROM sync_error")
    assert [(e["http_status"], e["action"]) for e in errors] == [(400, "create")] * 3

    fast_emulator.emulator.clear_faults()
    await sync(Scope.INCREMENTAL, **settings)
    assert (await state_of(engine, "a"))["status"] == "synced"
    assert [u["identity"] for u in fast_emulator.emulator.users()] == ["alice"]
