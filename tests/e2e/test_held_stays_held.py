"""What a guard holds stays held until an operator releases it, whatever later runs count.

A one-user run (an event, or the follow-up pass for a newcomer waiting for a held user's
identity) is under every limit on its own; it must not carry out a deletion or a write the
guard is holding for review. The guards' logs are kept for their whole window, whatever the
error retention, and the audit trail's history of a key is one person's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import deletions
from service.domain.runs import Scope
from tests.e2e.conftest import execute, fetch_all, insert_users
from tests.e2e.test_audit_trail import history
from tests.e2e.test_cli import cli_env, run_cli

DELETES = {"max_deletes_per_run": 3, "max_deletes_percent": 100}
WRITES = {"max_writes_per_run": 5, "max_writes_percent": 100}


def sids_by_identity(emulator: Any) -> dict[str, str]:
    return {u["identity"]: u["sid"] for u in emulator.emulator.users()}


async def test_a_newcomer_waiting_for_a_held_users_identity_deletes_nobody(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    await sync(Scope.FULL, **DELETES)
    before = sids_by_identity(fast_emulator)
    await execute(engine, "DELETE FROM internal_users WHERE id < 'u05'")
    held = await sync(Scope.FULL, **DELETES)
    assert len(held.held) == 5
    await insert_users(engine, [{"id": "new02", "identity": "u02"}])

    full = await sync(Scope.FULL, **DELETES)
    event = await sync(Scope.USERS, targets=["new02"], **DELETES)

    assert full.counts.get("deleted", 0) == event.counts.get("deleted", 0) == 0
    assert sids_by_identity(fast_emulator) == before  # u02's remote user is still there
    assert full.held_reason is not None and "allow_deletes" in full.held_reason
    async with db() as session:
        assert len(await deletions.held(session)) == 5
    log = await fetch_all(engine, "SELECT count(*) AS n FROM sync_deletion WHERE state = 'applied'")
    assert log == [{"n": 0}]

    released = await sync(Scope.FULL, allow_deletes=True, **DELETES)

    assert released.counts["deleted"] == 5
    assert sids_by_identity(fast_emulator)["u02"] != before["u02"]  # the newcomer's own


async def test_a_users_held_write_is_not_made_by_a_one_user_run(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    await sync(Scope.FULL, **WRITES)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'mass' WHERE id < 'u08'")
    held = await sync(Scope.INCREMENTAL, **WRITES)
    assert held.writes_held == 8

    one = await sync(Scope.USERS, targets=["u01"], **WRITES)

    assert (one.users_written, one.writes_held) == (0, 1)
    assert one.write_held_reason is not None and "allow_writes" in one.write_held_reason
    names = {u["identity"]: u["friendly_name"] for u in fast_emulator.emulator.users()}
    assert "mass" not in names.values()


async def test_a_run_that_held_its_writes_holds_its_follow_up_passes_too(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    await sync(Scope.FULL, **WRITES)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'mass' WHERE id >= 'u10'")
    await execute(engine, "DELETE FROM internal_users WHERE id = 'u01'")
    await insert_users(engine, [{"id": "new01", "identity": "u01"}])

    run = await sync(Scope.FULL, max_deletes_per_run=10, max_deletes_percent=100, **WRITES)

    assert run.writes_held >= 10
    assert run.users_written == 0
    assert "mass" not in {u["friendly_name"] for u in fast_emulator.emulator.users()}


async def test_the_deletion_log_is_kept_for_its_window_whatever_the_error_retention(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    window = {"deletion_window": 30 * 86_400, "error_retention_days": 1, **DELETES}
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    await sync(Scope.FULL, **window)
    await execute(engine, "DELETE FROM internal_users WHERE id < 'u03'")
    assert (await sync(Scope.FULL, **window)).counts["deleted"] == 3
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    await execute(engine, "UPDATE sync_deletion SET decided_at = :at", at=two_days_ago)
    await execute(engine, "DELETE FROM internal_users WHERE id < 'u06'")

    run = await sync(Scope.FULL, **window)

    assert run.counts.get("deleted", 0) == 0 and len(run.held) == 3
    assert run.held_reason is not None and "3 earlier in the window" in run.held_reason


async def test_a_key_that_is_one_users_id_and_anothers_identity_shows_only_the_first(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator)
    users = [{"id": "42", "identity": "alice"}, {"id": "alice", "identity": "bob"}]
    await insert_users(engine, users)
    assert (await run_cli("sync", env=env))[0] == 0

    entries = await history(env, "alice")

    assert {e["user_id"] for e in entries} == {"alice"}
    assert {e["identity"] for e in entries} == {"bob"}


async def test_writes_the_guard_holds_leave_an_audit_entry_once(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, USERSYNC_MAX_WRITES_PER_RUN="5")
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    assert (await run_cli("sync", env=env))[0] == 0
    await execute(engine, "UPDATE internal_users SET friendly_name = 'mass' WHERE id < 'u08'")

    await run_cli("sync", env=env)
    await run_cli("sync", env=env)  # held again: the entry is not repeated

    held = [e for e in await history(env, "u01") if e["outcome"] == "held"]
    assert len(held) == 1
    assert (held[0]["action"], held[0]["reason"]) == ("update", "write guard")
    assert "max_writes_per_run" in held[0]["message"]


async def test_an_incremental_run_lets_go_of_the_holds_of_users_put_back(
    engine: AsyncEngine, db: Any, sync: Any, fast_emulator: Any
):
    """Deactivated past the limit, then reactivated: nothing is to be deleted any more, and an
    incremental run (not only a full one) drops the held deletions; held creates of new users
    whose rows were removed again go too."""
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    await sync(Scope.FULL, **DELETES, **WRITES)
    await execute(engine, "UPDATE internal_users SET active = false WHERE id < 'u05'")
    assert len((await sync(Scope.INCREMENTAL, **DELETES, **WRITES)).held) == 5
    await insert_users(engine, [{"id": f"new{n}"} for n in range(6)])
    assert (await sync(Scope.INCREMENTAL, **DELETES, **WRITES)).writes_held == 6
    await execute(engine, "UPDATE internal_users SET active = true WHERE id < 'u05'")
    await execute(engine, "DELETE FROM internal_users WHERE id LIKE 'new%'")

    run = await sync(Scope.INCREMENTAL, **DELETES, **WRITES)

    assert (len(run.held), run.writes_held, run.users_written) == (0, 0, 0)
    held = await fetch_all(
        engine,
        "SELECT 'deletion' AS kind, user_id FROM sync_deletion WHERE state = 'held'"
        " UNION ALL SELECT 'write', user_id FROM sync_write WHERE state = 'held'",
    )
    assert held == []
    assert len(fast_emulator.emulator.users()) == 20
