"""Events end to end: row changes and webhooks reach the remote side through the queue."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.triggers.auth import sign
from tests.e2e.conftest import execute, fetch_all, insert_users
from tests.e2e.serving import (
    FAST,
    WEBHOOK_SECRET,
    Served,
    eventually,
    leading,
    quietly,
    serve_app,
)


@pytest.fixture
async def served(db: Any, settings_for: Callable[..., Settings]) -> AsyncIterator[Served]:
    async with serve_app(settings_for(**FAST)) as running:
        await leading(running)
        yield running


def remote(emulator: Any) -> dict[str, dict[str, Any]]:
    return {u["identity"]: u for u in emulator.emulator.users()}


async def all_done(engine: AsyncEngine) -> bool:
    rows = await fetch_all(engine, "SELECT count(*) AS n FROM user_event WHERE done_at IS NULL")
    return rows[0]["n"] == 0


async def test_inserts_updates_and_deletes_reach_the_remote_side(
    db: Any, settings_for: Callable[..., Settings], engine: AsyncEngine, fast_emulator: Any
):
    # one user of one: the percent deletion guard would hold its deletion back
    async with serve_app(settings_for(**FAST, max_deletes_percent=100)) as served:
        await leading(served)
        await _insert_update_delete(engine, fast_emulator)
    runs = await fetch_all(engine, "SELECT DISTINCT trigger, scope FROM sync_run")
    assert runs == [{"trigger": "event", "scope": "users"}]


async def _insert_update_delete(engine: AsyncEngine, fast_emulator: Any) -> None:
    await insert_users(engine, [{"id": "1", "identity": "ann", "friendly_name": "Ann"}])
    await eventually(lambda: _has(fast_emulator, "ann", "Ann"))

    await execute(engine, "UPDATE internal_users SET friendly_name = 'Annie' WHERE id = '1'")
    await eventually(lambda: _has(fast_emulator, "ann", "Annie"))

    await execute(engine, "DELETE FROM internal_users WHERE id = '1'")
    await eventually(lambda: _gone(fast_emulator, "ann"))


async def test_an_id_change_reconciles_both_the_old_and_the_new_id(
    served: Served, engine: AsyncEngine, fast_emulator: Any
):
    await insert_users(engine, [{"id": "old", "identity": "otto"}])
    await eventually(lambda: _has(fast_emulator, "otto"))
    await eventually(lambda: all_done(engine))

    await execute(engine, "UPDATE internal_users SET id = 'new' WHERE id = 'old'")
    await eventually(lambda: all_done(engine))

    events = await fetch_all(engine, "SELECT user_id FROM user_event WHERE kind = 'update'")
    assert sorted(e["user_id"] for e in events) == ["new", "old"]
    states = await fetch_all(engine, "SELECT user_id, status FROM sync_state ORDER BY user_id")
    assert {s["user_id"] for s in states} >= {"new"}
    assert list(remote(fast_emulator)) == ["otto"]


async def test_events_queued_while_stopped_are_coalesced_into_one_run_at_start(
    db: Any, settings_for: Callable[..., Settings], engine: AsyncEngine, fast_emulator: Any
):
    await insert_users(engine, [{"id": str(n), "identity": f"u{n}"} for n in range(5)])
    for version in range(4):
        await execute(engine, "UPDATE internal_users SET friendly_name = :v", v=f"v{version}")
    assert len(await fetch_all(engine, "SELECT id FROM user_event")) == 25

    async with serve_app(settings_for(**FAST)):
        await eventually(lambda: all_done(engine))

    runs = await fetch_all(engine, "SELECT DISTINCT run_id FROM user_event")
    assert len(runs) == 1
    [run] = await fetch_all(engine, "SELECT trigger, counts FROM sync_run")
    assert run["trigger"] == "event"
    assert run["counts"] == {"created": 5}
    assert {u["friendly_name"] for u in remote(fast_emulator).values()} == {"v3"}


async def test_a_webhook_event_reaches_the_remote_side(
    served: Served, engine: AsyncEngine, fast_emulator: Any
):
    async with quietly(engine):
        await insert_users(engine, [{"id": "w1", "identity": "wendy"}])

    event = {"type": "user.created", "id": "w1", "extra": "ignored"}
    async with served.http.post(served.base_url + "/events", json=[event]) as response:
        assert response.status == 202
        assert (await response.json())["accepted"] == 1

    await eventually(lambda: _has(fast_emulator, "wendy"))


async def post_signed(
    served: Served, body: bytes, *, timestamp: str | None = None, signature: str | None = None
) -> tuple[int, dict[str, Any]]:
    stamp = timestamp or str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-UserSync-Timestamp": stamp,
        "X-UserSync-Signature": signature or sign(WEBHOOK_SECRET, timestamp=stamp, body=body),
    }
    async with served.anonymous.post(
        served.base_url + "/events", data=body, headers=headers
    ) as response:
        return response.status, await response.json()


async def test_webhook_authentication_refuses_missing_wrong_stale_and_replayed_requests(
    served: Served, engine: AsyncEngine
):
    body = json.dumps({"type": "user.updated", "id": "x1"}).encode()
    url = served.base_url + "/events"

    async with served.anonymous.post(url, data=body) as response:
        assert (response.status, (await response.json())["error"]) == (401, "unauthorized")
    async with served.anonymous.post(url, data=body, headers={"Authorization": "Bearer no"}) as r:
        assert r.status == 403
    status, answer = await post_signed(served, body, signature="sha256=" + "0" * 64)
    assert (status, answer["message"]) == (
        403,
        "the signature does not match the body and timestamp",
    )
    stale = str(int(time.time()) - 301)
    status, answer = await post_signed(served, body, timestamp=stale)
    assert status == 403 and "timestamp" in answer["message"]

    stamp = str(int(time.time()))
    assert (await post_signed(served, body, timestamp=stamp))[0] == 202
    status, answer = await post_signed(served, body, timestamp=stamp)
    assert status == 403 and "replay" in answer["message"]

    queued = await fetch_all(engine, "SELECT user_id, source, kind FROM user_event")
    assert queued == [{"user_id": "x1", "source": "webhook", "kind": "user.updated"}]


async def test_a_webhook_body_that_makes_no_sense_is_refused_naming_the_problem(served: Served):
    cases = [
        ({"type": "user.exploded", "id": "1"}, "the event: type: Input should be 'user.created'"),
        ([{"type": "user.created", "id": "1"}, {"type": "user.created"}], "event #1: id"),
        ([], "empty list"),
        ({"type": "user.created", "id": " \t"}, "the event: id: must hold a non-blank character"),
        ({"type": "user.created", "id": "a\x00"}, "and no NUL character"),
        ({"type": "user.created", "id": 7}, "the event: id: Input should be a valid string"),
    ]
    for body, message in cases:
        async with served.http.post(served.base_url + "/events", json=body) as response:
            assert response.status == 400
            assert message in (await response.json())["message"]


async def test_a_standby_serves_the_api_and_accepts_events_but_starts_no_run(
    served: Served, settings_for: Callable[..., Settings], engine: AsyncEngine, fast_emulator: Any
):
    async with quietly(engine):
        await insert_users(engine, [{"id": "s1", "identity": "sam"}])
    async with serve_app(settings_for(**FAST)) as standby:
        assert await standby.role() == "standby"
        async with standby.http.post(standby.base_url + "/sync", json={}) as response:
            assert response.status == 503
            assert (await response.json())["error"] == "standby"
        event = {"type": "user.created", "id": "s1"}
        async with standby.http.post(standby.base_url + "/events", json=event) as response:
            assert response.status == 202
        await eventually(lambda: _has(fast_emulator, "sam"))
        async with standby.http.post(standby.base_url + "/sync/users/sam") as response:
            assert (await response.json())["outcome"] == "synced"
        assert await standby.role() == "standby"


async def test_the_leader_recovers_when_its_database_sessions_are_killed_and_loses_no_event(
    served: Served, engine: AsyncEngine, fast_emulator: Any
):
    await insert_users(engine, [{"id": "r1", "identity": "rex"}])
    await eventually(lambda: _has(fast_emulator, "rex"))

    await execute(
        engine,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    await execute(engine, "UPDATE internal_users SET friendly_name = 'Rex 2' WHERE id = 'r1'")
    await insert_users(engine, [{"id": "r2", "identity": "roy"}])

    await eventually(lambda: _has(fast_emulator, "rex", "Rex 2"), within=15)
    await eventually(lambda: _has(fast_emulator, "roy"), within=15)
    await leading(served)
    await eventually(lambda: all_done(engine))


async def _has(emulator: Any, identity: str, friendly_name: str | None = None) -> bool:
    user = remote(emulator).get(identity)
    return user is not None and (friendly_name is None or user["friendly_name"] == friendly_name)


async def _gone(emulator: Any, identity: str) -> bool:
    return identity not in remote(emulator)


async def count_remote(emulator: Any, n: int) -> bool:
    return len(emulator.emulator.users()) == n


async def has_identity(emulator: Any, identity: str) -> bool:
    return identity in remote(emulator)


async def test_a_mass_deactivation_trickled_through_events_is_held_after_the_limit(
    db: Any, settings_for: Callable[..., Settings], engine: AsyncEngine, fast_emulator: Any
):
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(50)])
    settings = settings_for(**FAST, max_deletes_per_run=5)
    async with serve_app(settings) as served:
        await leading(served)
        await eventually(lambda: count_remote(fast_emulator, 50))
        for n in range(30):
            await execute(
                engine, "UPDATE internal_users SET active = false WHERE id = :u", u=f"u{n:02d}"
            )
            await asyncio.sleep(0.05)  # one row at a time, as an identity system offboards
        await eventually(lambda: all_done(engine))
        listed = await served.get_json("/runs")

    assert len(fast_emulator.emulator.users()) == 45  # 5 deletions, whichever runs made them
    assert len(listed["held_deletions"]) == listed["held_deletions_total"] == 25
    assert len({h["run_id"] for h in listed["held_deletions"]}) > 1  # held by several runs


async def test_an_identity_handed_over_in_one_transaction_gets_a_fresh_remote_user(
    db: Any, settings_for: Callable[..., Settings], engine: AsyncEngine, fast_emulator: Any
):
    await insert_users(engine, [{"id": "1", "identity": "alice"}])
    async with serve_app(settings_for(**FAST, max_deletes_percent=100)) as served:
        await leading(served)
        await eventually(lambda: has_identity(fast_emulator, "alice"))
        old = remote(fast_emulator)["alice"]["sid"]
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE internal_users SET identity = 'alice.old' WHERE id = '1'")
            )
            await connection.execute(
                text("INSERT INTO internal_users (id, identity) VALUES ('2', 'alice')")
            )
        await eventually(lambda: has_identity(fast_emulator, "alice.old"))
        await eventually(lambda: all_done(engine))

    users = remote(fast_emulator)
    assert set(users) == {"alice", "alice.old"}
    assert users["alice"]["sid"] != old
    states = await fetch_all(engine, "SELECT user_id, remote_sid FROM sync_state ORDER BY 1")
    assert states == [
        {"user_id": "1", "remote_sid": users["alice.old"]["sid"]},
        {"user_id": "2", "remote_sid": users["alice"]["sid"]},
    ]


async def test_an_event_for_a_user_another_run_holds_is_tried_again_and_applied(
    db: Any,
    settings_for: Callable[..., Settings],
    engine: AsyncEngine,
    fast_emulator: Any,
    sync: Any,
):
    await insert_users(engine, [{"id": "slow", "identity": "slow"}])
    await sync(max_in_flight=1)
    await execute(engine, "UPDATE internal_users SET friendly_name = 'First' WHERE id = 'slow'")
    await execute(engine, "UPDATE user_event SET done_at = now()")  # only the next change counts
    fast_emulator.emulator.set_latency(1.0, operations=["update_user"])
    # no poll comes to the rescue: the consumer looks again when the deferred event is due
    async with serve_app(settings_for(**{**FAST, "event_poll_interval": 300})) as served:
        await leading(served)
        full = asyncio.create_task(sync(max_in_flight=1))
        await eventually(lambda: leased(engine, "slow"))
        await execute(
            engine, "UPDATE internal_users SET friendly_name = 'Second' WHERE id = 'slow'"
        )
        await full
        await eventually(lambda: all_done(engine), within=5)
    fast_emulator.emulator.set_latency(0.0)

    assert remote(fast_emulator)["slow"]["friendly_name"] == "Second"
    deferred = await fetch_all(
        engine, "SELECT counts->>'deferred' AS n FROM sync_run WHERE trigger = 'event'"
    )
    assert any(r["n"] for r in deferred)  # the event's first run left the user to the full run


async def leased(engine: AsyncEngine, user_id: str) -> bool:
    rows = await fetch_all(
        engine, "SELECT 1 FROM sync_state WHERE user_id = :u AND lease_run IS NOT NULL", u=user_id
    )
    return bool(rows)
