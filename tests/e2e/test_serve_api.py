"""The served admin API end to end: auth, on-demand runs, runs and users, OpenAPI, metrics."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.triggers.auth import PUBLIC_PATHS
from tests.e2e.conftest import fetch_all, generate_users, insert_users
from tests.e2e.serving import FAST, Served, eventually, leading, quietly, serve_app


@pytest.fixture
async def served(db: Any, settings_for: Callable[..., Settings]) -> AsyncIterator[Served]:
    async with serve_app(settings_for(**FAST)) as running:
        await leading(running)
        yield running


def routes(served: Served) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in served.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_health_and_readiness_need_no_token_and_name_the_role(served: Served):
    async with served.anonymous.get(served.base_url + "/healthz") as response:
        assert response.status == 200
    async with served.anonymous.get(served.base_url + "/readyz") as response:
        body = await response.json()
    assert response.status == 200
    assert body["status"] == "ready"
    assert body["role"] == "leader"
    assert body["migrations"]["current"] == body["migrations"]["head"]


async def test_every_other_endpoint_refuses_a_missing_or_wrong_token(served: Served):
    protected = sorted(r for r in routes(served) if r[1] not in PUBLIC_PATHS)
    assert len(protected) >= 7
    for method, path in protected:
        url = served.base_url + concrete(path)
        async with served.anonymous.request(method, url) as response:
            assert response.status == 401, (method, path)
            assert "Bearer" in (await response.json())["message"]
        wrong = {"Authorization": "Bearer not-the-token"}
        async with served.anonymous.request(method, url, headers=wrong) as response:
            assert response.status == 403, (method, path)
            assert (await response.json())["error"] == "forbidden"


async def test_openapi_describes_exactly_the_routes_of_the_app(served: Served):
    spec = await served.get_json("/openapi.json")
    described = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert described == routes(served)


async def test_post_sync_answers_at_once_with_the_run_id_and_the_run_completes(
    served: Served, engine: AsyncEngine, fast_emulator: Any
):
    async with quietly(engine):
        await generate_users(engine, 30)
    fast_emulator.emulator.set_latency(0.2, operations=["list_users"])

    async with served.http.post(served.base_url + "/sync", json={"scope": "full"}) as response:
        assert response.status == 202
        accepted = await response.json()
    run_id = accepted["run_id"]
    assert response.headers["Location"] == f"/runs/{run_id}"
    assert (await served.get_json(f"/runs/{run_id}"))["run"]["status"] == "running"

    async def finished() -> Any:
        run = (await served.get_json(f"/runs/{run_id}"))["run"]
        return run if run["status"] != "running" else None

    run = await eventually(finished)
    assert run["status"] == "succeeded"
    assert run["trigger"] == "http"
    assert run["counts"]["created"] == 30
    assert len(fast_emulator.emulator.users()) == 30


async def test_post_sync_while_a_run_is_going_answers_409(
    served: Served, engine: AsyncEngine, fast_emulator: Any
):
    await generate_users(engine, 5)
    fast_emulator.emulator.set_latency(0.5, operations=["list_users"])
    async with served.http.post(served.base_url + "/sync", json={}) as first:
        assert first.status == 202
    async with served.http.post(served.base_url + "/sync", json={"scope": "incremental"}) as second:
        assert second.status == 409
        assert (await second.json())["error"] == "run_in_progress"


async def test_post_sync_refuses_a_body_that_makes_no_sense(served: Served):
    for body in ({"scope": "everything"}, {"dry_run": "yes"}, {"force": True}, [1]):
        async with served.http.post(served.base_url + "/sync", json=body) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "bad_request"


async def test_sync_user_reconciles_one_user_and_returns_its_outcome(
    served: Served, engine: AsyncEngine, fast_emulator: Any
):
    async with quietly(engine):
        await insert_users(engine, [{"id": "a1", "identity": "alice", "friendly_name": "Alice"}])

    async with served.http.post(served.base_url + "/sync/users/alice") as response:
        assert response.status == 200
        outcome = await response.json()

    assert outcome["user_id"] == "a1"
    assert outcome["outcome"] == "synced"
    assert outcome["run_status"] == "succeeded"
    assert outcome["state"]["remote_sid"].startswith("US")
    remote = fast_emulator.emulator.users()
    assert [(u["identity"], u["friendly_name"]) for u in remote] == [("alice", "Alice")]


async def test_sync_user_reports_a_failed_user_with_its_error(served: Served, engine: AsyncEngine):
    async with quietly(engine):
        await insert_users(engine, [{"id": "b1", "identity": "bob", "role": "no such role"}])

    async with served.http.post(served.base_url + "/sync/users/b1") as response:
        outcome = await response.json()

    assert outcome["outcome"] == "failed"
    assert "role" in outcome["error"]["message"]
    user = await served.get_json("/users/bob")
    assert user["state"]["status"] in {"failed", "quarantined"}
    assert "role" in user["last_error"]["message"]
    run = await served.get_json(f"/runs/{outcome['run_id']}")
    assert [e["user_id"] for e in run["errors"]] == ["b1"]


async def test_unknown_users_and_runs_are_404(served: Served):
    for method, path in (
        ("POST", "/sync/users/nobody"),
        ("GET", "/users/nobody"),
        ("GET", "/runs/999"),
    ):
        async with served.http.request(method, served.base_url + path) as response:
            assert response.status == 404
            assert (await response.json())["error"] == "not_found"


async def test_metrics_are_present_and_move(
    served: Served, engine: AsyncEngine, fast_emulator: Any
):
    async def scrape() -> str:
        async with served.anonymous.get(served.base_url + "/metrics") as response:
            assert response.status == 200
            return await response.text()

    before = await scrape()
    for name in (
        "usersync_is_leader 1.0",
        "usersync_event_queue_depth",
        "usersync_event_queue_oldest_age_seconds",
        'usersync_last_success_timestamp_seconds{scope="full"} 0.0',
        'usersync_users{status="quarantined"}',
        "usersync_write_wait_seconds_total",
        "usersync_write_arrival_margin_seconds 0.01",  # no write answered yet: the minimum
    ):
        assert name in before, name
    await insert_users(engine, [{"id": "m1", "identity": "mia"}])
    await eventually(lambda: _events_done(engine))
    assert await _remote_has(fast_emulator, "mia")
    async with served.http.post(served.base_url + "/sync", json={"scope": "full"}) as response:
        run_id = (await response.json())["run_id"]
    await eventually(lambda: _run_done(engine, run_id))

    after = await scrape()
    assert 'usersync_runs_total{scope="users",status="succeeded",trigger="event"}' in after
    assert 'usersync_runs_total{scope="full",status="succeeded",trigger="http"}' in after
    assert 'usersync_actions_total{kind="create",outcome="ok"} 1.0' in after
    assert 'usersync_api_calls_total{operation="create_user",status="201"} 1.0' in after
    assert "usersync_event_latency_seconds_count 1.0" in after
    assert 'usersync_users{status="synced"} 1.0' in after
    assert 'usersync_last_success_timestamp_seconds{scope="full"} 0.0' not in after


async def _remote_has(emulator: Any, identity: str) -> bool:
    return any(u["identity"] == identity for u in emulator.emulator.users())


async def _run_done(engine: AsyncEngine, run_id: int) -> bool:
    rows = await fetch_all(engine, "SELECT status FROM sync_run WHERE id = :id", id=run_id)
    return bool(rows) and rows[0]["status"] != "running"


async def _events_done(engine: AsyncEngine) -> bool:
    rows = await fetch_all(engine, "SELECT count(*) AS n FROM user_event WHERE done_at IS NULL")
    return rows[0]["n"] == 0
