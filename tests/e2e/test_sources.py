"""Operators may point the service at a view of their own tables, and own attributes jointly."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.runs import RunStatus, Scope
from tests.e2e.conftest import execute, fetch_all, insert_users
from tests.e2e.serving import FAST, leading, serve_app
from tests.fixtures.emulator import account_auth


@pytest.fixture
async def idp_view(engine: AsyncEngine, db: Any) -> AsyncIterator[str]:
    """An identity system's own table, exposed through a view with text attributes."""
    await execute(engine, "DROP SCHEMA IF EXISTS idp CASCADE")
    await execute(engine, "CREATE SCHEMA idp")
    await execute(
        engine,
        "CREATE TABLE idp.people (uid text PRIMARY KEY, email text, display text, "
        "profile text, enabled boolean)",
    )
    await execute(
        engine,
        "CREATE VIEW idp.users_v AS SELECT uid AS id, email AS identity, "
        "display AS friendly_name, NULL::text AS role, profile AS attributes, "
        "enabled AS active, now() AS updated_at FROM idp.people",
    )
    yield "idp.users_v"
    await execute(engine, "DROP SCHEMA idp CASCADE")


async def test_a_view_with_text_attributes_is_a_source_and_bad_json_names_the_user(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, idp_view: str
):
    await execute(
        engine,
        "INSERT INTO idp.people VALUES "
        "('p1', 'ann@example.com', 'Ann', '{\"team\": \"a\"}', true), "
        "('p2', 'bob@example.com', 'Bob', '{not json', true), "
        "('p3', 'cy@example.com', 'Cy', '[1, 2]', true)",
    )

    run = await sync(Scope.FULL, source_table=idp_view)

    assert run.status is RunStatus.PARTIAL
    remote = {u["identity"]: u for u in fast_emulator.emulator.users()}
    assert set(remote) == {"ann@example.com"}
    assert json.loads(remote["ann@example.com"]["attributes"]) == {"team": "a"}
    errors = await fetch_all(engine, "SELECT user_id, field FROM sync_error ORDER BY user_id")
    assert errors == [
        {"user_id": "p2", "field": "attributes"},
        {"user_id": "p3", "field": "attributes"},
    ]


async def test_merge_mode_keeps_keys_others_set_and_removes_keys_we_stopped_managing(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice", "attributes": {"x": 1, "y": 2}}])
    await sync(Scope.FULL, attributes_mode="merge")
    sid = fast_emulator.emulator.users()[0]["sid"]
    async with aiohttp.ClientSession(headers=account_auth(fast_emulator)) as http:
        await http.post(
            f"{fast_emulator.base_url}/v1/Users/{sid}",
            data={"Attributes": json.dumps({"x": 1, "y": 2, "avatar": "cat.png"})},
        )
    await execute(engine, "UPDATE internal_users SET attributes = '{\"x\": 5}' WHERE id = 'a'")

    await sync(Scope.FULL, attributes_mode="merge")

    attributes = json.loads(fast_emulator.emulator.users()[0]["attributes"])
    assert attributes == {"x": 5, "avatar": "cat.png"}


@pytest.fixture
async def bare_view(engine: AsyncEngine, db: Any) -> AsyncIterator[str]:
    """A view with integer ids and no `updated_at` column: nothing the sync needs is missing."""
    await execute(engine, "DROP SCHEMA IF EXISTS bare CASCADE")
    await execute(engine, "CREATE SCHEMA bare")
    await execute(engine, "CREATE TABLE bare.people (n integer PRIMARY KEY, mail text)")
    await execute(
        engine,
        "CREATE VIEW bare.users_v AS SELECT n AS id, mail AS identity, mail AS friendly_name, "
        "NULL::text AS role, '{}'::jsonb AS attributes, true AS active FROM bare.people",
    )
    await execute(engine, "INSERT INTO bare.people VALUES (7, 'gus@example.com')")
    yield "bare.users_v"
    await execute(engine, "DROP SCHEMA bare CASCADE")


async def test_a_view_without_updated_at_syncs_and_its_users_are_shown_by_id_and_identity(
    settings_for: Any, fast_emulator: Any, bare_view: str
):
    async with serve_app(settings_for(**FAST, source_table=bare_view)) as served:
        await leading(served)
        async with served.http.post(served.base_url + "/sync/users/7") as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["outcome"] == "synced"
        for key in ("7", "gus@example.com"):
            shown = await served.get_json(f"/users/{key}")
            assert shown["local"] == {
                "id": "7",
                "identity": "gus@example.com",
                "active": True,
                "updated_at": None,
            }
    assert [u["identity"] for u in fast_emulator.emulator.users()] == ["gus@example.com"]


async def test_a_source_missing_a_needed_column_is_named_by_the_user_endpoints(
    engine: AsyncEngine, settings_for: Any, bare_view: str
):
    await execute(engine, "DROP VIEW bare.users_v")
    await execute(engine, "CREATE VIEW bare.users_v AS SELECT n AS id FROM bare.people")
    async with serve_app(settings_for(**FAST, source_table=bare_view)) as served:
        await leading(served)
        for method, path in (("GET", "/users/7"), ("POST", "/sync/users/7")):
            async with served.http.request(method, served.base_url + path) as response:
                assert response.status == 503, (method, await response.text())
                body = await response.json()
            assert body["error"] == "source_unreadable"
            assert "has no column identity" in body["message"]


async def test_a_view_named_in_capitals_is_the_view_postgres_finds_for_that_unquoted_name(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, idp_view: str
):
    await execute(engine, "INSERT INTO idp.people VALUES ('p1', 'ann@x', 'Ann', '{}', true)")

    run = await sync(Scope.FULL, source_table=idp_view.upper())

    assert run.status is RunStatus.SUCCEEDED, run.error
    assert [u["identity"] for u in fast_emulator.emulator.users()] == ["ann@x"]
