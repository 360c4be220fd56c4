"""The event queue against real Postgres: the trigger, NOTIFY, claiming, completing, replays."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.db import events
from service.db.engine import connect
from service.db.events import NewEvent

LEASE = timedelta(seconds=60)


async def sql(engine: AsyncEngine, statement: str, **params: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(statement), params)


async def queued(engine: AsyncEngine) -> list[tuple[str, str | None]]:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT user_id, kind FROM user_event ORDER BY id"))
        return [(r.user_id, r.kind) for r in rows]


async def test_inserts_updates_and_deletes_of_internal_users_queue_their_ids(
    db: async_sessionmaker[AsyncSession], engine: AsyncEngine
):
    await sql(engine, "INSERT INTO internal_users (id, identity) VALUES ('a', 'ann'), ('b', 'bo')")
    await sql(engine, "UPDATE internal_users SET friendly_name = 'Ann' WHERE id = 'a'")
    await sql(engine, "UPDATE internal_users SET id = 'c' WHERE id = 'b'")
    await sql(engine, "DELETE FROM internal_users WHERE id = 'a'")

    rows = await queued(engine)
    assert sorted(rows[:2]) == [("a", "insert"), ("b", "insert")]
    assert rows[2] == ("a", "update")
    assert sorted(rows[3:5]) == [("b", "update"), ("c", "update")]  # an id change: both ids
    assert rows[5:] == [("a", "delete")]


async def test_an_update_that_changes_no_synced_column_queues_nothing(
    db: async_sessionmaker[AsyncSession], engine: AsyncEngine
):
    await sql(engine, "INSERT INTO internal_users (id, identity) VALUES ('a', 'ann')")
    await sql(engine, "UPDATE internal_users SET updated_at = now() + interval '1 day'")
    await sql(engine, "UPDATE internal_users SET identity = identity")
    assert await queued(engine) == [("a", "insert")]


async def test_a_bulk_insert_queues_every_row_and_notifies_once_at_commit(
    db: async_sessionmaker[AsyncSession], engine: AsyncEngine, database_url: str
):
    listener = await connect(database_url)
    heard: list[str] = []
    await listener.add_listener(events.CHANNEL, lambda *args: heard.append(args[2]))
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO internal_users (id, identity) "
                    "SELECT 'u' || g, 'user' || g FROM generate_series(1, 5000) g"
                )
            )
            await asyncio.sleep(0.1)
            assert heard == []  # nothing before commit
        await asyncio.sleep(0.2)
    finally:
        await listener.close()
    assert len(await queued(engine)) == 5000
    assert heard == [events.CHANNEL]


async def test_two_consumers_never_claim_the_same_event(
    db: async_sessionmaker[AsyncSession], engine: AsyncEngine
):
    async with db.begin() as session:
        await events.enqueue(session, [NewEvent(f"u{n}") for n in range(10)], source="api")

    async with db.begin() as first, db.begin() as second:
        mine = await events.claim(first, owner="one", limit=6, lease=LEASE)
        theirs = await events.claim(second, owner="two", limit=6, lease=LEASE)

    assert len(mine) == 6
    assert len(theirs) == 4
    assert not {e.id for e in mine} & {e.id for e in theirs}


async def test_completed_events_are_done_and_released_ones_come_back(
    db: async_sessionmaker[AsyncSession], engine: AsyncEngine
):
    async with db.begin() as session:
        ids = await events.enqueue(session, [NewEvent("a"), NewEvent("b")], source="webhook")
    async with db.begin() as session:
        claimed = await events.claim(session, owner="me", limit=10, lease=LEASE)
    assert [e.id for e in claimed] == ids
    async with db.begin() as session:
        assert await events.claim(session, owner="me", limit=10, lease=LEASE) == []
        latencies = await events.complete(session, ids[:1], run_id=7)
        await events.release(session, ids[1:])
    assert len(latencies) == 1 and latencies[0] >= 0

    async with db.begin() as session:
        again = await events.claim(session, owner="me", limit=10, lease=LEASE)
        backlog = await events.backlog(session)
        done = await events.status(session, ids[0])
    assert [e.user_id for e in again] == ["b"]
    assert backlog.depth == 1
    assert done is not None and done.run_id == 7 and done.done_at is not None


async def test_failed_events_wait_for_their_lease_and_are_closed_after_max_attempts(
    db: async_sessionmaker[AsyncSession], engine: AsyncEngine
):
    async with db.begin() as session:
        [event_id] = await events.enqueue(session, [NewEvent("a")], source="api")
    for attempt in (1, 2):
        async with db.begin() as session:
            claimed = await events.claim(session, owner="me", limit=1, lease=timedelta(0))
            assert [e.id for e in claimed] == [event_id], attempt
            closed = await events.fail(session, [event_id], error="boom", max_attempts=2)
        assert closed == (1 if attempt == 2 else 0)
    async with db.begin() as session:
        status = await events.status(session, event_id)
        assert await events.claim(session, owner="me", limit=1, lease=timedelta(0)) == []
    assert status is not None and status.last_error == "boom" and status.done_at is not None


async def test_a_new_leader_releases_claims_left_by_a_dead_one(
    db: async_sessionmaker[AsyncSession], engine: AsyncEngine
):
    async with db.begin() as session:
        await events.enqueue(session, [NewEvent("a")], source="api")
        await events.claim(session, owner="dead", limit=1, lease=LEASE)
    async with db.begin() as session:
        assert await events.claim(session, owner="new", limit=1, lease=LEASE) == []
        assert await events.release_claims(session) == 1
        assert len(await events.claim(session, owner="new", limit=1, lease=LEASE)) == 1


async def test_a_webhook_signature_is_accepted_once(db: async_sessionmaker[AsyncSession]):
    keep = timedelta(minutes=10)
    async with db.begin() as session:
        assert await events.remember_signature(session, "sha256=abc", keep_for=keep)
        assert not await events.remember_signature(session, "sha256=abc", keep_for=keep)
        assert await events.remember_signature(session, "sha256=def", keep_for=keep)
