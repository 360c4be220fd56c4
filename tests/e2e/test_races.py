"""Interleavings an adversary found: each test reproduces one, and holds the rule against it.

Sources here are plain tables without constraints (as a view over an identity system may be),
so an inactive and an active row can share an identity.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.runs import RunStatus, Scope
from service.reconcile.run import RunReport
from tests.e2e.conftest import execute, fetch_all, insert_users

LOOSE = "loose_users"


@pytest.fixture
async def loose(engine: AsyncEngine, db: Any) -> Any:
    """A source table without keys: write rows with `put(id, identity, active=True)`."""
    await execute(engine, f"DROP TABLE IF EXISTS {LOOSE}")
    await execute(
        engine,
        f"CREATE TABLE {LOOSE} (id text, identity text, friendly_name text, role text,"
        " attributes jsonb DEFAULT '{}', active boolean DEFAULT true,"
        " updated_at timestamptz DEFAULT now())",
    )

    async def put(*rows: tuple[str, str] | tuple[str, str, bool]) -> None:
        for row in rows:
            user_id, identity, *rest = row
            await execute(
                engine,
                f"INSERT INTO {LOOSE} (id, identity, active) VALUES (:i, :n, :a)",
                i=user_id,
                n=identity,
                a=rest[0] if rest else True,
            )

    yield put
    await execute(engine, f"DROP TABLE IF EXISTS {LOOSE}")


def remote(emulator: Any) -> dict[str, dict[str, Any]]:
    return {u["identity"]: u for u in emulator.emulator.users()}


async def state(engine: AsyncEngine, user_id: str) -> dict[str, Any]:
    rows = await fetch_all(engine, "SELECT * FROM sync_state WHERE user_id = :u", u=user_id)
    return rows[0]


ANY_SHARE = {"source_table": LOOSE, "max_deletes_percent": 100}


async def test_a_delete_that_happened_unconfirmed_frees_the_identity_on_the_next_run(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, loose: Any
):
    await loose(("a", "alice"))
    await sync(Scope.FULL, **ANY_SHARE)
    old = remote(fast_emulator)["alice"]["sid"]
    async with engine.begin() as connection:
        await connection.execute(text(f"UPDATE {LOOSE} SET active = false WHERE id = 'a'"))
        await connection.execute(text(f"INSERT INTO {LOOSE} (id, identity) VALUES ('b', 'alice')"))
    fast_emulator.emulator.inject_fault(
        "status", status=500, count=1, operations=["delete_user"], after_processing=True
    )

    await sync(Scope.INCREMENTAL, max_retries=0, **ANY_SHARE)  # deleted, answered 500
    await sync(Scope.INCREMENTAL, **ANY_SHARE)

    assert remote(fast_emulator)["alice"]["sid"] != old
    assert (await state(engine, "b"))["remote_sid"] == remote(fast_emulator)["alice"]["sid"]
    assert (await state(engine, "a"))["status"] == "deleted"


async def test_a_swap_whose_let_go_delete_happened_unconfirmed_still_finishes(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice"}, {"id": "b", "identity": "bob"}])
    await sync(Scope.FULL)
    await swap(engine, ("a", "alice"), ("b", "bob"))
    fast_emulator.emulator.inject_fault(
        "status", status=500, count=1, operations=["delete_user"], after_processing=True
    )

    await sync(Scope.INCREMENTAL, max_retries=0)
    await sync(Scope.INCREMENTAL)

    assert (await state(engine, "a"))["identity"] == "bob"
    assert (await state(engine, "b"))["identity"] == "alice"
    assert set(remote(fast_emulator)) == {"alice", "bob"}


async def swap(engine: AsyncEngine, *users: tuple[str, str]) -> None:
    """Rotate identities: each user takes the next one's (in one transaction)."""
    async with engine.begin() as connection:
        for user_id, _ in users:
            await connection.execute(
                text("UPDATE internal_users SET identity = identity || '-tmp' WHERE id = :u"),
                {"u": user_id},
            )
        for (user_id, _), (_, identity) in zip(users, users[1:] + users[:1], strict=True):
            await connection.execute(
                text("UPDATE internal_users SET identity = :i WHERE id = :u"),
                {"u": user_id, "i": identity},
            )


@pytest.mark.parametrize("scope", [Scope.INCREMENTAL, Scope.FULL])
async def test_a_cycle_of_three_renames_finishes_in_one_run(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, scope: Scope
):
    users = [("a", "alice"), ("b", "bob"), ("c", "carol")]
    await insert_users(engine, [{"id": u, "identity": i} for u, i in users])
    await sync(Scope.FULL)
    await swap(engine, *users)  # a takes bob, b carol, c alice

    run = await sync(scope)

    assert run.waiting == {}
    assert [(await state(engine, u))["identity"] for u, _ in users] == ["bob", "carol", "alice"]
    assert set(remote(fast_emulator)) == {"alice", "bob", "carol"}


async def test_a_swap_run_for_one_user_leaves_nobody_stranded(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": "a", "identity": "alice"}, {"id": "b", "identity": "bob"}])
    await sync(Scope.FULL)
    await swap(engine, ("a", "alice"), ("b", "bob"))

    await sync(Scope.USERS, targets=["a"])
    await sync(Scope.INCREMENTAL)

    assert (await state(engine, "a"))["identity"] == "bob"
    assert (await state(engine, "b"))["identity"] == "alice"
    assert set(remote(fast_emulator)) == {"alice", "bob"}


async def test_a_waiting_user_is_never_linked_to_a_remote_user_deleted_during_the_listing(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, loose: Any
):
    await loose(("a", "alice"), ("b", "bob"))
    await sync(Scope.FULL, **ANY_SHARE)
    dead = remote(fast_emulator)["alice"]["sid"]
    fast_emulator.emulator.seed_users([{"identity": f"filler{n:03d}"} for n in range(300)])
    async with engine.begin() as connection:  # a leaves alice, b takes it; a's deletion is held
        await connection.execute(text(f"UPDATE {LOOSE} SET active = false WHERE id = 'a'"))
        await connection.execute(text(f"UPDATE {LOOSE} SET identity = 'alice' WHERE id = 'b'"))
    await sync(Scope.INCREMENTAL, source_table=LOOSE, max_deletes_per_run=0)
    fast_emulator.emulator.set_latency(0.3, operations=["list_users"])

    full: asyncio.Task[RunReport] = asyncio.create_task(sync(Scope.FULL, **ANY_SHARE))
    while fast_emulator.emulator.stats.get("list_users", 0) < 2:  # page 1 (alice) is read
        await asyncio.sleep(0.02)
    released = await sync(Scope.USERS, targets=["a"], allow_deletes=True, **ANY_SHARE)
    await full
    fast_emulator.emulator.set_latency(0.0)
    await sync(Scope.INCREMENTAL, **ANY_SHARE)

    assert released.counts["deleted"] == 1
    alice = remote(fast_emulator)["alice"]
    assert alice["sid"] != dead
    assert (await state(engine, "b"))["remote_sid"] == alice["sid"]
    assert "bob" not in remote(fast_emulator)


async def test_mirror_mode_never_deletes_a_remote_user_adopted_while_it_was_an_orphan(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    fast_emulator.emulator.seed_users([{"identity": f"orphan{n:02d}"} for n in range(12)])
    fast_emulator.emulator.seed_users([{"identity": "zzz"}])
    zzz = remote(fast_emulator)["zzz"]["sid"]
    fast_emulator.emulator.set_latency(0.3, operations=["delete_user"])
    policy = {"delete_mode": "mirror", "max_deletes_percent": 100, "max_in_flight": 1}

    full: asyncio.Task[RunReport] = asyncio.create_task(sync(Scope.FULL, **policy))
    while fast_emulator.emulator.stats.get("delete_user", 0) < 1:
        await asyncio.sleep(0.02)
    await insert_users(engine, [{"id": "z", "identity": "zzz"}])
    meanwhile = await sync(Scope.USERS, targets=["z"], **policy)
    report = await full
    fast_emulator.emulator.set_latency(0.0)
    adopted = await sync(Scope.USERS, targets=["z"], **policy)

    assert meanwhile.deferred == ["z"]  # the mirror run had zzz in its deletions: left alone
    assert report.status is RunStatus.SUCCEEDED
    assert adopted.counts["linked"] == 1
    assert remote(fast_emulator)["zzz"]["sid"] == zzz
    assert (await state(engine, "z"))["remote_sid"] == zzz
    assert not [n for n in range(12) if f"orphan{n:02d}" in remote(fast_emulator)]


async def test_deletions_that_may_have_happened_keep_counting_against_the_window(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": f"u{n:02d}"} for n in range(20)])
    await sync(Scope.FULL)
    fast_emulator.emulator.inject_fault(
        "status", status=500, fraction=1.0, operations=["delete_user"], after_processing=True
    )
    limits = {"max_deletes_per_run": 3, "max_deletes_percent": 100, "max_retries": 0}

    for n in range(10):
        await execute(
            engine, "UPDATE internal_users SET active = false WHERE id = :u", u=f"u{n:02d}"
        )
        await sync(Scope.USERS, targets=[f"u{n:02d}"], **limits)
        await sync(Scope.INCREMENTAL, failure_backoff_base=0.001, **limits)

    assert len(remote(fast_emulator)) >= 17  # at most 3 deleted, whatever the API answered


async def test_an_integer_id_source_is_not_stopped_by_a_state_of_a_text_id(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, db: Any
):
    await insert_users(engine, [{"id": "legacy-1", "identity": "legacy"}])
    await sync(Scope.FULL)
    await execute(engine, "DROP TABLE IF EXISTS staff CASCADE")
    await execute(engine, "CREATE TABLE staff (n integer PRIMARY KEY, mail text)")
    await execute(engine, "INSERT INTO staff VALUES (1, 'ann'), (2, 'bob')")
    await execute(
        engine,
        "CREATE VIEW staff_v AS SELECT n AS id, mail AS identity, NULL::text AS friendly_name,"
        " NULL::text AS role, '{}'::jsonb AS attributes, true AS active, now() AS updated_at"
        " FROM staff",
    )
    try:
        policy = {"source_table": "staff_v", "max_deletes_percent": 100}
        full = await sync(Scope.FULL, **policy)
        incremental = await sync(Scope.INCREMENTAL, **policy)
    finally:
        await execute(engine, "DROP TABLE staff CASCADE")

    assert full.status is RunStatus.SUCCEEDED, full.error
    assert incremental.status is RunStatus.SUCCEEDED
    assert set(remote(fast_emulator)) == {"ann", "bob"}  # legacy-1 is gone from the source


@pytest.mark.parametrize(
    ("column", "wanted"),
    [
        ("id::float8 AS id", "id of the source float_v is double precision"),
        ("id::numeric(30, 2) AS id", "id of the source float_v is numeric"),
        ("current_date AS updated_at", "updated_at of the source float_v is date"),
    ],
)
async def test_ids_that_are_not_text_integers_or_uuids_are_refused(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, db: Any, column: str, wanted: str
):
    columns = {
        "id": "1 AS id",
        "updated_at": "now() AS updated_at",
    }
    name = column.rsplit(" AS ", 1)[1]
    columns[name] = column.replace("id::", "1::") if name == "id" else column
    await execute(
        engine,
        f"CREATE OR REPLACE VIEW float_v AS SELECT {columns['id']}, 'ann'::text AS identity,"
        " NULL::text AS friendly_name, NULL::text AS role, '{}'::jsonb AS attributes,"
        f" true AS active, {columns['updated_at']}",
    )
    try:
        with pytest.raises(Exception, match=wanted):
            await sync(Scope.FULL, source_table="float_v")
    finally:
        await execute(engine, "DROP VIEW float_v")
    assert remote(fast_emulator) == {}


async def test_a_protected_identity_is_kept_when_the_user_that_adopted_it_is_renamed(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    fast_emulator.emulator.seed_users([{"identity": "ext-bot"}])
    bot = remote(fast_emulator)["ext-bot"]["sid"]
    policy = {"delete_mode": "mirror", "protected_identity_pattern": "^ext-"}
    await insert_users(engine, [{"id": "c", "identity": "ext-bot"}])
    await sync(Scope.FULL, **policy)
    await execute(engine, "UPDATE internal_users SET identity = 'carol' WHERE id = 'c'")

    await sync(Scope.INCREMENTAL, **policy)
    await sync(Scope.FULL, **policy)

    assert remote(fast_emulator)["ext-bot"]["sid"] == bot
    assert (await state(engine, "c"))["remote_sid"] == remote(fast_emulator)["carol"]["sid"]


async def test_a_user_whose_identity_stops_being_shared_is_synced_by_the_next_incremental(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, loose: Any
):
    await loose(("y", "yvonne"))
    await sync(Scope.FULL, source_table=LOOSE)
    await loose(("q", "yvonne"))
    shared = await sync(Scope.INCREMENTAL, source_table=LOOSE)
    await execute(engine, f"DELETE FROM {LOOSE} WHERE id = 'q'")  # y's row is as it was

    again = await sync(Scope.INCREMENTAL, source_table=LOOSE)

    assert shared.counts["invalid"] == 2
    assert (await state(engine, "y"))["status"] == "synced"
    assert again.failures == []
