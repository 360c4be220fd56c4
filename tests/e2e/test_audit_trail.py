"""The audit trail on the production path: the CLI as a process, the served API, the emulator
over HTTP and Postgres. Each write and each write decided against leaves one entry, with
Twilio's answer; attribute values are stored nowhere unless asked for."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from tests.e2e.conftest import execute, fetch_all, insert_users
from tests.e2e.serving import FAST, Served, leading, quietly, serve_app
from tests.e2e.test_cli import cli_env, run_cli

SECRET = "s3cr3t-badge-4711"


async def history(env: dict[str, str], user: str, *extra: str) -> list[dict[str, Any]]:
    code, out, err = await run_cli("history", user, "--json", *extra, env=env)
    assert code == 0, err
    entries: list[dict[str, Any]] = json.loads(out)["entries"]
    return entries


def admin_role(emulator: Any) -> str:
    return next(
        r["sid"] for r in emulator.emulator.roles() if r["friendly_name"] == "service admin"
    )


async def test_create_update_and_delete_each_leave_an_entry_with_twilio_s_answer(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, USERSYNC_MAX_DELETES_PERCENT="100")
    attributes = {"dept": "eng", "badge": SECRET}
    await insert_users(
        engine, [{"id": "u1", "identity": "alice", "friendly_name": "Al", "attributes": attributes}]
    )
    assert (await run_cli("sync", env=env))[0] == 0
    await execute(
        engine,
        "UPDATE internal_users SET friendly_name = 'Alice', role = 'service admin',"
        ' attributes = \'{"dept": "ops", "badge": "' + SECRET + '", "desk": 7}\''
        " WHERE id = 'u1'",
    )
    assert (await run_cli("sync", env=env))[0] == 0
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'u1'")
    assert (await run_cli("sync", env=env))[0] == 0

    deleted, updated, created = await history(env, "alice")

    assert [e["action"] for e in (deleted, updated, created)] == ["delete", "update", "create"]
    assert [e["outcome"] for e in (deleted, updated, created)] == ["deleted", "updated", "created"]
    assert [e["http_status"] for e in (deleted, updated, created)] == [204, 200, 201]
    assert all(e["request_id"].startswith("RQ") for e in (deleted, updated, created))
    assert all(e["trigger"] == "cli" and e["scope"] == "full" for e in (deleted, created))
    assert updated["changes"]["friendly_name"] == {"old": "Al", "new": "Alice"}
    assert updated["changes"]["role"]["new"] == {
        "sid": admin_role(fast_emulator),
        "name": "service admin",
    }
    assert updated["changes"]["attributes"] == {
        "added": ["desk"],
        "removed": [],
        "changed": ["dept"],
    }
    assert created["changes"]["attributes"]["added"] == ["badge", "dept"]
    assert deleted["reason"] == "inactive"
    assert deleted["sid"] == updated["sid"] == created["sid"]
    assert created["sid"].startswith("US")
    stored = await fetch_all(
        engine,
        "SELECT count(*) AS n FROM sync_audit WHERE sync_audit::text LIKE :v",
        v=f"%{SECRET}%",
    )
    assert stored == [{"n": 0}]
    assert (
        await fetch_all(
            engine, "SELECT count(*) AS n FROM sync_audit WHERE sync_audit::text LIKE '%ops%'"
        )
    ) == [{"n": 0}]


async def test_attribute_values_are_stored_when_the_setting_asks(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, USERSYNC_AUDIT_ATTRIBUTE_VALUES="true")
    await insert_users(engine, [{"id": "u1", "identity": "alice", "attributes": {"badge": SECRET}}])

    assert (await run_cli("sync", env=env))[0] == 0

    [created] = await history(env, "u1")
    assert SECRET in created["changes"]["attributes"]["new"]


async def test_a_rename_records_the_new_user_s_create_and_the_old_one_s_delete(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator)
    await insert_users(engine, [{"id": "u1", "identity": "alice"}])
    await run_cli("sync", env=env)
    [old] = fast_emulator.emulator.users()
    await execute(engine, "UPDATE internal_users SET identity = 'alice.smith' WHERE id = 'u1'")

    assert (await run_cli("sync", env=env))[0] == 0

    retired, renamed, first = await history(env, "alice.smith")
    assert (retired["action"], retired["outcome"], retired["reason"]) == (
        "delete",
        "deleted",
        "rename",
    )
    assert retired["sid"] == old["sid"] and retired["http_status"] == 204
    assert retired["identity"] == "alice"  # which identity went, not only its sid
    assert (renamed["action"], renamed["identity"], renamed["outcome"]) == (
        "create",
        "alice.smith",
        "created",
    )
    assert (first["identity"], first["run_id"] < renamed["run_id"]) == ("alice", True)


async def test_a_held_deletion_is_recorded_once_until_it_is_released(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator)
    await insert_users(engine, [{"id": f"u{i}", "identity": f"user{i}"} for i in range(3)])
    await run_cli("sync", env=env)
    await execute(engine, "UPDATE internal_users SET active = false")

    for _ in range(2):
        await run_cli("sync", env=env)
    held = await history(env, "u0")
    await run_cli("sync", "--allow-deletes", env=env)
    released = await history(env, "u0")

    assert [e["outcome"] for e in held] == ["held", "created"]
    assert held[0]["reason"] == "inactive"
    assert held[0]["sid"] == released[0]["sid"] == released[2]["sid"]
    assert [e["outcome"] for e in released] == ["deleted", "held", "created"]
    assert len(fast_emulator.emulator.users()) == 0


async def test_an_invalid_user_is_recorded_with_its_field_once_while_it_stays_invalid(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator)
    await insert_users(engine, [{"id": "bad", "identity": "bob", "role": "no such role"}])

    await run_cli("sync", env=env)
    await run_cli("sync", env=env)

    [entry] = await history(env, "bad")
    assert (entry["action"], entry["outcome"], entry["reason"]) == ("validate", "invalid", "role")
    assert "role" in entry["message"]


async def test_a_failed_write_keeps_twilio_s_status_and_request_id(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, USERSYNC_MAX_RETRIES="0")
    await insert_users(engine, [{"id": "u1", "identity": "alice"}])
    fast_emulator.emulator.inject_fault("status", count=1, status=503, operations={"create_user"})

    code, _, _ = await run_cli("sync", env=env)

    [entry] = await history(env, "alice")
    assert code == 1
    assert (entry["outcome"], entry["http_status"]) == ("failed", 503)
    assert entry["request_id"].startswith("RQ")
    errors = await fetch_all(engine, "SELECT request_id FROM sync_error")
    assert errors == [{"request_id": entry["request_id"]}]


async def test_a_no_change_run_records_nothing_and_a_dry_run_shows_what_it_would_record(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator)
    await insert_users(engine, [{"id": "u1", "identity": "alice"}])
    await run_cli("sync", env=env)
    await insert_users(engine, [{"id": "u2", "identity": "bob", "friendly_name": "[bold]Bob"}])

    code, out, _ = await run_cli("sync", "--dry-run", env=env)
    _, report, _ = await run_cli("sync", "--dry-run", "--json", env=env)
    await execute(engine, "DELETE FROM internal_users WHERE id = 'u2'")
    await run_cli("sync", env=env)

    assert code == 0
    assert "create bob (user u2): planned: friendly_name none → '[bold]Bob'" in out
    assert [(e["user_id"], e["outcome"]) for e in json.loads(report)["audit"]] == [
        ("u2", "planned")
    ]
    rows = await fetch_all(engine, "SELECT user_id, outcome FROM sync_audit ORDER BY id")
    assert rows == [{"user_id": "u1", "outcome": "created"}]


async def test_entries_past_the_retention_are_pruned_and_the_trail_refuses_updates(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, USERSYNC_AUDIT_RETENTION_DAYS="30")
    await insert_users(engine, [{"id": "u1", "identity": "alice"}])
    await run_cli("sync", env=env)
    await execute(
        engine,
        "INSERT INTO sync_audit (run_id, service_key, trigger, scope, user_id, action, outcome, at)"
        " SELECT id, service_key, 'cli', 'full', 'old' || g, 'create', 'created',"
        " now() - interval '31 days' FROM sync_run, generate_series(1, 12000) g",
    )

    await run_cli("sync", env=env)

    rows = await fetch_all(engine, "SELECT user_id FROM sync_audit")
    assert rows == [{"user_id": "u1"}]
    with pytest.raises(DBAPIError, match="append-only"):
        await execute(engine, "UPDATE sync_audit SET outcome = 'forged'")


async def test_the_audit_trail_can_be_turned_off(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator, USERSYNC_AUDIT="false")
    await insert_users(engine, [{"id": "u1", "identity": "alice"}])

    await run_cli("sync", env=env)

    assert await fetch_all(engine, "SELECT id FROM sync_audit") == []
    assert len(fast_emulator.emulator.users()) == 1


@pytest.fixture
async def served(db: Any, settings_for: Callable[..., Settings]) -> AsyncIterator[Served]:
    async with serve_app(settings_for(**FAST)) as running:
        await leading(running)
        yield running


async def test_the_api_pages_a_user_s_history_and_lists_a_run_s_actions(
    served: Served, engine: AsyncEngine, fast_emulator: Any
):
    async with quietly(engine):
        await insert_users(engine, [{"id": "u1", "identity": "alice/x", "friendly_name": "A0"}])
    for n in range(1, 4):
        async with served.http.post(served.base_url + "/sync/users/u1") as response:
            assert response.status == 200
        async with quietly(engine):
            await execute(engine, f"UPDATE internal_users SET friendly_name = 'A{n}'")
    async with served.http.post(served.base_url + "/sync/users/u1") as response:
        run_id = (await response.json())["run_id"]

    first = await served.get_json("/users/alice%2Fx/history?limit=3")
    rest = await served.get_json(first["next"])
    run = await served.get_json(f"/runs/{run_id}")
    actions = await served.get_json(f"/runs/{run_id}/actions?limit=1")

    names = [e["changes"]["friendly_name"]["new"] for e in first["entries"] + rest["entries"]]
    assert names == ["A3", "A2", "A1", "A0"]
    assert first["next"] == f"/users/alice%2Fx/history?limit=3&before={first['entries'][-1]['id']}"
    assert rest["next"] is None
    assert [(a["action"], a["trigger"]) for a in run["actions"]] == [("update", "event")]
    assert run["actions_next"] is None
    assert actions["actions"] == run["actions"]


async def test_the_api_refuses_bad_paging_and_unknown_runs(served: Served):
    async with served.http.get(served.base_url + "/users/u1/history?limit=0") as response:
        assert response.status == 400
    async with served.http.get(served.base_url + "/users/u1/history?before=x") as response:
        assert response.status == 400
    async with served.http.get(served.base_url + "/runs/999/actions") as response:
        assert response.status == 404
    empty = await served.get_json("/users/nobody/history")
    assert empty == {"user": "nobody", "entries": [], "next": None}


async def test_history_shows_hostile_data_as_written_never_as_markup_or_escapes(
    engine: AsyncEngine, db: Any, database_url: str, fast_emulator: Any
):
    env = cli_env(database_url, fast_emulator)
    name = "[red]Eve\x1b[2J"
    await insert_users(engine, [{"id": "u1", "identity": "[bold]eve", "friendly_name": name}])
    await run_cli("sync", env=env)

    code, out, _ = await run_cli("history", "[bold]eve", env=env)

    assert code == 0
    assert "create [bold]eve (user u1) US" in out
    assert "friendly_name none → '[red]Eve\\x1b[2J'" in out
    assert "\x1b" not in out
    assert "run 1 (cli, full)" in out
