"""Reversible offboarding through `user-sync` as a process: suspend, list, delete when due,
restore on reactivation, and the guard counting suspensions (Postgres and the emulator)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.emulator.records import RoleScope
from tests.e2e.conftest import execute, fetch_all, insert_users
from tests.e2e.serving import FAST, serve_app
from tests.e2e.test_cli import cli_env, run_cli

GRACE = {
    "USERSYNC_DELETE_GRACE": "3600",
    "USERSYNC_SUSPENDED_ROLE": "suspended",
    "USERSYNC_MAX_DELETES_PERCENT": "100",
}


def suspended_role(emulator: Any) -> str:
    """A role with no permissions, as an operator would create it on the Service."""
    service = emulator.emulator.service()
    role = emulator.emulator.directory.create_role(service, "suspended", RoleScope.SERVICE, ())
    return str(role.sid)


def remote(emulator: Any, identity: str) -> dict[str, Any] | None:
    return next((u for u in emulator.emulator.users() if u["identity"] == identity), None)


async def sync(env: dict[str, str], *args: str) -> dict[str, Any]:
    code, out, err = await run_cli("sync", "--json", *args, env=env)
    assert code == 0, err
    return dict(json.loads(out))


async def grace_over(engine: AsyncEngine, user_id: str) -> None:
    """Instead of waiting: the suspension's date moves into the past."""
    await execute(
        engine,
        "UPDATE sync_state SET delete_after = now() - interval '1 second' WHERE user_id = :id",
        id=user_id,
    )


async def test_a_deactivated_user_is_suspended_listed_with_its_date_and_deleted_when_due(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    role = suspended_role(fast_emulator)
    await insert_users(engine, [{"id": "a", "identity": "alice"}, {"id": "b", "identity": "bob"}])
    env = cli_env(database_url, fast_emulator, **GRACE)
    await sync(env)
    sid = remote(fast_emulator, "alice")["sid"]  # type: ignore[index]
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'a'")

    report = await sync(env)
    assert report["counts"]["suspended"] == 1 and report["counts"]["deleted"] == 0
    suspended = remote(fast_emulator, "alice")
    assert suspended is not None and (suspended["sid"], suspended["role_sid"]) == (sid, role)

    code, out, _ = await run_cli("status", "--json", env=env)
    assert code == 0
    [listed] = json.loads(out)["suspended"]
    assert (listed["user_id"], listed["sid"], listed["status"]) == ("a", sid, "suspended")
    assert listed["delete_after"] is not None
    _, table, _ = await run_cli("status", env=env)
    assert "Suspended users" in table and "alice" in table

    assert (await sync(env, "--incremental"))["counts"]["deleted"] == 0
    assert remote(fast_emulator, "alice") is not None
    await grace_over(engine, "a")
    assert (await sync(env, "--incremental"))["counts"]["deleted"] == 1
    assert remote(fast_emulator, "alice") is None and remote(fast_emulator, "bob") is not None
    query = "SELECT status, delete_after FROM sync_state WHERE user_id = 'a'"
    [state] = await fetch_all(engine, query)
    assert state == {"status": "deleted", "delete_after": None}


async def test_reactivating_a_suspended_user_restores_role_and_attributes_on_the_same_sid(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    suspended_role(fast_emulator)
    env = cli_env(
        database_url,
        fast_emulator,
        **GRACE,
        USERSYNC_ATTRIBUTES_MODE="merge",
        USERSYNC_SUSPENDED_MARKER="offboarded",
    )
    await insert_users(engine, [{"id": "a", "identity": "alice", "attributes": {"team": "x"}}])
    await sync(env)
    before = remote(fast_emulator, "alice")
    assert before is not None
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'a'")
    await sync(env)
    suspended = remote(fast_emulator, "alice")
    assert suspended is not None
    assert json.loads(suspended["attributes"]) == {"team": "x", "offboarded": True}

    await execute(engine, "UPDATE internal_users SET active = true WHERE id = 'a'")
    report = await sync(env, "--incremental")
    after = remote(fast_emulator, "alice")
    assert report["counts"]["updated"] == 1 and report["counts"]["deleted"] == 0
    assert after is not None and after["sid"] == before["sid"]
    assert after["role_sid"] == before["role_sid"]
    assert json.loads(after["attributes"]) == {"team": "x"}
    assert fast_emulator.emulator.stats.get("delete_user", 0) == 0
    [state] = await fetch_all(engine, "SELECT status, delete_after FROM sync_state")
    assert state == {"status": "synced", "delete_after": None}


async def test_a_removed_row_is_suspended_and_restored_when_it_comes_back_with_its_id(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    role = suspended_role(fast_emulator)
    env = cli_env(database_url, fast_emulator, **GRACE)
    await insert_users(engine, [{"id": "a", "identity": "alice", "role": "service admin"}])
    await sync(env)
    before = remote(fast_emulator, "alice")
    assert before is not None
    await execute(engine, "DELETE FROM internal_users WHERE id = 'a'")

    assert (await sync(env, "--incremental"))["counts"]["suspended"] == 1
    assert remote(fast_emulator, "alice")["role_sid"] == role  # type: ignore[index]
    await insert_users(engine, [{"id": "a", "identity": "alice", "role": "service admin"}])
    await sync(env, "--incremental")
    after = remote(fast_emulator, "alice")
    assert after is not None and after["sid"] == before["sid"]
    assert after["role_sid"] == before["role_sid"]


async def test_a_newcomer_with_a_suspended_users_identity_waits_until_that_user_is_deleted(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    suspended_role(fast_emulator)
    env = cli_env(database_url, fast_emulator, **GRACE)
    await insert_users(engine, [{"id": "a", "identity": "alice"}])
    await sync(env)
    old = remote(fast_emulator, "alice")["sid"]  # type: ignore[index]
    await execute(engine, "DELETE FROM internal_users WHERE id = 'a'")
    await sync(env)
    await insert_users(engine, [{"id": "b", "identity": "alice"}])

    report = await sync(env)
    assert report["waiting"] == [{"user_id": "b", "held_by": "a"}]
    assert [u["sid"] for u in fast_emulator.emulator.users()] == [old]
    await grace_over(engine, "a")
    report = await sync(env, "--incremental")
    assert report["counts"]["deleted"] == 1 and report["counts"]["created"] == 1
    [new] = fast_emulator.emulator.users()
    assert new["identity"] == "alice" and new["sid"] != old


async def test_a_mass_deactivation_is_held_because_suspensions_count_as_deletions(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    role = suspended_role(fast_emulator)
    env = cli_env(database_url, fast_emulator, **GRACE, USERSYNC_MAX_DELETES_PER_RUN="3")
    await insert_users(engine, [{"id": f"u{n}", "identity": f"user{n}"} for n in range(10)])
    await sync(env)
    await execute(engine, "UPDATE internal_users SET active = false")

    report = await sync(env)
    assert report["counts"]["held"] == 10 and report["counts"]["suspended"] == 0
    assert "max_deletes_per_run" in report["held_reason"]
    assert all(u["role_sid"] != role for u in fast_emulator.emulator.users())
    held = await fetch_all(engine, "SELECT DISTINCT reason FROM sync_deletion WHERE state='held'")
    assert held == [{"reason": "suspend (inactive)"}]

    released = await sync(env, "--allow-deletes")
    assert released["counts"]["suspended"] == 10
    assert all(u["role_sid"] == role for u in fast_emulator.emulator.users())


async def test_a_dry_run_shows_the_suspension_and_changes_nothing(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    suspended_role(fast_emulator)
    env = cli_env(database_url, fast_emulator, **GRACE)
    await insert_users(engine, [{"id": "a", "identity": "alice"}])
    await sync(env)
    before = fast_emulator.emulator.users()
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'a'")

    code, out, _ = await run_cli("sync", "--dry-run", env=env)
    assert code == 0
    assert "suspend alice (user a)" in out and "(suspended)" in out
    assert fast_emulator.emulator.users() == before


async def test_a_suspended_role_the_service_lacks_fails_the_user_naming_the_setting(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, **GRACE)
    await insert_users(engine, [{"id": "a", "identity": "alice"}])
    await sync(env)
    before = fast_emulator.emulator.users()
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'a'")

    code, out, _ = await run_cli("sync", "--json", env=env)
    report = json.loads(out)
    assert code == 1
    assert "USERSYNC_SUSPENDED_ROLE" in report["failures"][0]["message"]
    assert fast_emulator.emulator.users() == before


async def test_serve_exposes_suspended_users_and_those_due_in_metrics_and_runs(
    engine: AsyncEngine,
    db: Any,
    database_url: str,
    fast_emulator: Any,
    settings_for: Callable[..., Settings],
):
    suspended_role(fast_emulator)
    env = cli_env(database_url, fast_emulator, **GRACE)
    await insert_users(engine, [{"id": f"u{n}", "identity": f"user{n}"} for n in range(3)])
    await sync(env)
    await execute(engine, "UPDATE internal_users SET active = false WHERE id IN ('u0', 'u1')")
    await sync(env)
    await grace_over(engine, "u0")

    async with serve_app(settings_for(**FAST)) as served:
        async with served.anonymous.get(served.base_url + "/metrics") as response:
            assert response.status == 200
            scraped = await response.text()
        listed = await served.get_json("/runs")
    assert 'usersync_users{status="suspended"} 2.0' in scraped
    assert "usersync_suspended_users_due 1.0" in scraped
    assert [u["user_id"] for u in listed["suspended"]] == ["u0", "u1"]


async def test_a_user_suspended_by_a_one_user_run_keeps_its_date_through_later_full_runs(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    role = suspended_role(fast_emulator)
    env = cli_env(database_url, fast_emulator, **GRACE)
    await insert_users(engine, [{"id": "a", "identity": "alice"}])
    await sync(env)
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'a'")
    assert (await sync(env, "--user", "a"))["counts"]["suspended"] == 1
    [first] = await fetch_all(engine, "SELECT delete_after FROM sync_state")
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Al' WHERE id = 'a'")

    again = await sync(env)
    assert again["counts"]["suspended"] == 0 and again["counts"]["held"] == 0
    assert await fetch_all(engine, "SELECT delete_after FROM sync_state") == [first]
    counted = await fetch_all(engine, "SELECT reason FROM sync_deletion WHERE state = 'applied'")
    assert counted == [{"reason": "suspend (inactive)"}]
    assert remote(fast_emulator, "alice")["role_sid"] == role  # type: ignore[index]


async def test_suspensions_arriving_one_user_at_a_time_are_held_once_the_window_is_spent(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    suspended_role(fast_emulator)
    env = cli_env(database_url, fast_emulator, **GRACE, USERSYNC_MAX_DELETES_PER_RUN="2")
    await insert_users(engine, [{"id": f"u{n}", "identity": f"user{n}"} for n in range(3)])
    await sync(env)
    await execute(engine, "UPDATE internal_users SET active = false")

    results = [(await sync(env, "--user", f"u{n}"))["counts"] for n in range(3)]
    assert [(c["suspended"], c["held"]) for c in results] == [(1, 0), (1, 0), (0, 1)]


async def test_with_the_grace_period_set_back_to_zero_a_full_run_deletes_the_suspended_users(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    suspended_role(fast_emulator)
    env = cli_env(database_url, fast_emulator, **GRACE)
    await insert_users(engine, [{"id": "a", "identity": "alice"}])
    await sync(env)
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'a'")
    await sync(env)

    without = {k: v for k, v in env.items() if k not in ("USERSYNC_SUSPENDED_ROLE",)}
    without["USERSYNC_DELETE_GRACE"] = "0"
    assert (await sync(without, "--incremental"))["counts"]["deleted"] == 0
    assert (await sync(without))["counts"]["deleted"] == 1
    assert fast_emulator.emulator.users() == []
