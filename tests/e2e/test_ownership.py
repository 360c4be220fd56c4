"""One owner per remote user: identities handed from one user to another, end to end.

A remote user linked to one internal user is never adopted by another; an identity freed by a
rename, a removal or a deactivation gets a fresh remote user for its new owner, in the same run
when the old owner lets go in it. Real Postgres, the emulator over HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.runs import RunStatus, Scope
from tests.e2e.conftest import execute, fetch_all, insert_users


def remote_by_identity(emulator: Any) -> dict[str, dict[str, Any]]:
    return {u["identity"]: u for u in emulator.emulator.users()}


async def states(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    rows = await fetch_all(
        engine, "SELECT user_id, remote_sid, identity, status, retired_sid FROM sync_state"
    )
    return {r["user_id"]: r for r in rows}


async def assert_one_owner_per_sid(engine: AsyncEngine, emulator: Any) -> None:
    """Every linked sid exists remotely with the state's identity, and is linked once."""
    remote = {u["sid"]: u for u in emulator.emulator.users()}
    linked = [s for s in (await states(engine)).values() if s["remote_sid"]]
    assert len({s["remote_sid"] for s in linked}) == len(linked)
    for s in linked:
        assert s["remote_sid"] in remote, f"user {s['user_id']} links a dead sid"
        assert remote[s["remote_sid"]]["identity"] == s["identity"]


async def alice_synced(engine: AsyncEngine, sync: Any, emulator: Any) -> str:
    await insert_users(engine, [{"id": "u1", "identity": "alice", "friendly_name": "Alice"}])
    await sync(Scope.FULL)
    return str(remote_by_identity(emulator)["alice"]["sid"])


HAND_OVERS = {
    "rename": "UPDATE internal_users SET identity = 'alice.old' WHERE id = 'u1'",
    "removal": "DELETE FROM internal_users WHERE id = 'u1'",
    "deactivation with rename": (
        "UPDATE internal_users SET identity = 'alice.old', active = false WHERE id = 'u1'"
    ),
}


@pytest.mark.parametrize("scope", [Scope.FULL, Scope.INCREMENTAL])
@pytest.mark.parametrize("hand_over", list(HAND_OVERS))
async def test_an_identity_given_to_another_user_in_one_run_gets_a_fresh_remote_user(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, scope: Scope, hand_over: str
):
    old_sid = await alice_synced(engine, sync, fast_emulator)
    async with engine.begin() as connection:  # both changes in one transaction
        await connection.execute(text(HAND_OVERS[hand_over]))
        await connection.execute(
            text(
                "INSERT INTO internal_users (id, identity, friendly_name)"
                " VALUES ('u2', 'alice', 'Another Alice')"
            )
        )

    run = await sync(scope, max_deletes_percent=100)

    assert run.status is RunStatus.SUCCEEDED
    assert sum(run.counts.values()) == 2, run.counts  # each user counted once, by its outcome
    assert run.counts["unchanged"] == 0
    remote = remote_by_identity(fast_emulator)
    assert remote["alice"]["sid"] != old_sid  # the old owner's user was not handed over
    assert remote["alice"]["friendly_name"] == "Another Alice"
    assert old_sid not in {u["sid"] for u in remote.values()}
    found = await states(engine)
    assert found["u2"]["remote_sid"] == remote["alice"]["sid"]
    assert found["u2"]["status"] == "synced"
    if hand_over == "rename":
        assert found["u1"]["remote_sid"] == remote["alice.old"]["sid"]
    else:
        assert "alice.old" not in remote
        assert found["u1"]["remote_sid"] is None
    await assert_one_owner_per_sid(engine, fast_emulator)


async def test_the_same_change_as_one_users_run_of_both_users_ends_the_same(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    """What the event consumer runs when both changes came in one transaction."""
    old_sid = await alice_synced(engine, sync, fast_emulator)
    await execute(engine, HAND_OVERS["rename"])
    await insert_users(engine, [{"id": "u2", "identity": "alice"}])

    run = await sync(Scope.USERS, targets=["u2", "u1"])

    assert run.status is RunStatus.SUCCEEDED
    remote = remote_by_identity(fast_emulator)
    assert set(remote) == {"alice", "alice.old"}
    assert remote["alice"]["sid"] != old_sid
    await assert_one_owner_per_sid(engine, fast_emulator)


async def test_a_held_deletion_keeps_the_identity_from_the_new_owner_until_it_is_released(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    old_sid = await alice_synced(engine, sync, fast_emulator)
    await execute(engine, HAND_OVERS["removal"])
    await insert_users(engine, [{"id": "u2", "identity": "alice"}])

    held = await sync(Scope.FULL, max_deletes_per_run=0)

    assert [(d.user_id, d.sid) for d in held.held] == [("u1", old_sid)]
    assert held.counts["waiting"] == 1
    assert remote_by_identity(fast_emulator)["alice"]["sid"] == old_sid  # nobody took it
    found = await states(engine)
    assert found["u2"]["status"] == "waiting"
    assert found["u2"]["remote_sid"] is None
    assert found["u1"]["remote_sid"] == old_sid

    released = await sync(Scope.INCREMENTAL, max_deletes_per_run=0, allow_deletes=True)

    assert released.counts["deleted"] == 1
    assert released.counts["created"] == 1
    remote = remote_by_identity(fast_emulator)
    assert remote["alice"]["sid"] != old_sid
    assert (await states(engine))["u2"]["remote_sid"] == remote["alice"]["sid"]
    await assert_one_owner_per_sid(engine, fast_emulator)


async def test_a_user_waiting_on_a_never_deleted_user_says_whom_it_waits_for(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    old_sid = await alice_synced(engine, sync, fast_emulator)
    await execute(engine, HAND_OVERS["removal"])
    await insert_users(engine, [{"id": "u2", "identity": "alice"}])

    run = await sync(Scope.FULL, delete_mode="never")

    assert run.status is RunStatus.SUCCEEDED
    assert run.waiting == {"u2": "u1"}
    assert remote_by_identity(fast_emulator)["alice"]["sid"] == old_sid
    row = (await fetch_all(engine, "SELECT * FROM sync_state WHERE user_id = 'u2'"))[0]
    assert row["status"] == "waiting"
    assert "held by user u1" in row["last_error_message"]
    again = await sync(Scope.INCREMENTAL, delete_mode="never")
    assert again.waiting == {"u2": "u1"}  # looked at by every incremental run, not forgotten


async def test_an_inactive_user_never_deletes_the_remote_user_another_user_owns(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, idp_view_factory: Any
):
    view = await idp_view_factory(
        [("p1", "bob", True), ("p2", "bob-old", True)],
    )
    await sync(Scope.FULL, source_table=view, delete_mode="mirror")
    bob_sid = remote_by_identity(fast_emulator)["bob"]["sid"]
    # p2 takes bob's identity, inactive: a second row with the identity p1 still uses
    await execute(engine, "UPDATE idp.people SET email = 'bob', enabled = false WHERE uid = 'p2'")

    run = await sync(Scope.FULL, source_table=view, delete_mode="mirror", max_deletes_percent=100)

    assert run.status is RunStatus.SUCCEEDED
    remote = remote_by_identity(fast_emulator)
    assert remote["bob"]["sid"] == bob_sid  # p1's user is p1's
    assert "bob-old" not in remote  # p2's own old user went with its deactivation
    await assert_one_owner_per_sid(engine, fast_emulator)


@pytest.fixture
async def idp_view_factory(engine: AsyncEngine, db: Any) -> Any:
    """A view over an identity system's table of (uid, email, enabled) rows, no unique keys."""

    async def make(rows: list[tuple[str, str, bool]]) -> str:
        await execute(engine, "DROP SCHEMA IF EXISTS idp CASCADE")
        await execute(engine, "CREATE SCHEMA idp")
        await execute(engine, "CREATE TABLE idp.people (uid text, email text, enabled boolean)")
        await execute(
            engine,
            "CREATE VIEW idp.users_v AS SELECT uid AS id, email AS identity,"
            " NULL::text AS friendly_name, NULL::text AS role, '{}'::jsonb AS attributes,"
            " enabled AS active, now() AS updated_at FROM idp.people",
        )
        for uid, email, enabled in rows:
            await execute(
                engine,
                "INSERT INTO idp.people VALUES (:uid, :email, :enabled)",
                uid=uid,
                email=email,
                enabled=enabled,
            )
        return "idp.users_v"

    yield make
    await execute(engine, "DROP SCHEMA IF EXISTS idp CASCADE")


async def test_a_view_that_repeats_an_id_makes_that_user_bad_input_and_everyone_else_syncs(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, idp_view_factory: Any
):
    view = await idp_view_factory(
        [("p1", "ann", True), ("p2", "bob", True), ("p2", "bob2", True), ("p3", "cy", True)]
    )

    run = await sync(Scope.FULL, source_table=view)

    assert run.status is RunStatus.PARTIAL
    assert set(remote_by_identity(fast_emulator)) == {"ann", "cy"}
    errors = await fetch_all(engine, "SELECT user_id, field, message FROM sync_error")
    assert [(e["user_id"], e["field"]) for e in errors] == [("p2", "id")]
    assert "2 rows with this id" in errors[0]["message"]
    assert run.error is None


async def test_two_active_users_with_one_identity_are_bad_input_and_their_user_is_kept(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, idp_view_factory: Any
):
    view = await idp_view_factory([("p1", "ann", True), ("p3", "cy", True)])
    await sync(Scope.FULL, source_table=view)
    ann_sid = remote_by_identity(fast_emulator)["ann"]["sid"]
    await execute(engine, "INSERT INTO idp.people VALUES ('p2', 'ann', true)")
    await execute(engine, "UPDATE idp.people SET email = 'cyril' WHERE uid = 'p3'")
    fast_emulator.emulator.reset_stats()

    run = await sync(Scope.FULL, source_table=view)

    assert run.status is RunStatus.PARTIAL
    errors = await fetch_all(engine, "SELECT user_id, field FROM sync_error ORDER BY user_id")
    assert errors == [
        {"user_id": "p1", "field": "identity"},
        {"user_id": "p2", "field": "identity"},
    ]
    remote = remote_by_identity(fast_emulator)
    assert remote["ann"]["sid"] == ann_sid
    assert "cyril" in remote  # everyone else syncs
    again = await sync(Scope.FULL, source_table=view)
    assert fast_emulator.emulator.stats.get("update_user", 0) == 0  # no rewrite every run
    assert again.counts["created"] == 0

    await execute(engine, "UPDATE idp.people SET enabled = false WHERE uid = 'p2'")
    await sync(Scope.FULL, source_table=view)

    assert remote_by_identity(fast_emulator)["ann"]["sid"] == ann_sid  # p1 keeps using it
    assert (await states(engine))["p1"]["remote_sid"] == ann_sid


async def test_a_text_active_column_stops_the_run_before_any_call_naming_column_and_type(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, db: Any
):
    await execute(engine, "DROP SCHEMA IF EXISTS idp CASCADE")
    await execute(engine, "CREATE SCHEMA idp")
    await execute(
        engine,
        "CREATE VIEW idp.users_v AS SELECT 'p1'::text AS id, 'ann'::text AS identity,"
        " NULL::text AS friendly_name, NULL::text AS role, '{}'::jsonb AS attributes,"
        " 'false'::text AS active, now() AS updated_at",
    )
    fast_emulator.emulator.reset_stats()
    try:
        with pytest.raises(Exception, match=r"column active of the source idp\.users_v is text"):
            await sync(Scope.FULL, source_table="idp.users_v")
    finally:
        await execute(engine, "DROP SCHEMA idp CASCADE")

    calls = dict(fast_emulator.emulator.stats)
    calls.pop("fetch_configuration", None)  # the process resolving its Service at start
    assert sum(calls.values()) == 0  # nothing listed, nothing written
    run = (await fetch_all(engine, "SELECT status, error FROM sync_run"))[0]
    assert run["status"] == "failed"
    assert "it must be boolean" in run["error"]


async def test_a_view_with_integer_ids_is_a_source(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, db: Any
):
    await execute(engine, "DROP SCHEMA IF EXISTS idp CASCADE")
    await execute(engine, "CREATE SCHEMA idp")
    await execute(engine, "CREATE TABLE idp.staff (n bigint PRIMARY KEY, mail varchar(80))")
    await execute(engine, "INSERT INTO idp.staff VALUES (1, 'ann'), (2, 'bob')")
    await execute(
        engine,
        "CREATE VIEW idp.users_v AS SELECT n AS id, mail AS identity, NULL::text AS"
        " friendly_name, NULL::text AS role, '{}'::jsonb AS attributes, true AS active,"
        " now() AS updated_at FROM idp.staff",
    )
    try:
        first = await sync(Scope.FULL, source_table="idp.users_v")
        await execute(engine, "UPDATE idp.staff SET mail = 'bobby' WHERE n = 2")
        second = await sync(Scope.USERS, targets=["2"], source_table="idp.users_v")
    finally:
        await execute(engine, "DROP SCHEMA idp CASCADE")

    assert first.counts["created"] == 2
    assert second.counts["created"] == 1
    assert set(remote_by_identity(fast_emulator)) == {"ann", "bobby"}


async def test_mirror_mode_a_user_renamed_and_deactivated_onto_a_foreign_user_records_every_outcome(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    await insert_users(engine, [{"id": f"u{n}", "identity": f"user{n}"} for n in range(30)])
    await sync(Scope.FULL, delete_mode="mirror")
    fast_emulator.emulator.seed_users([{"identity": "stranger"}])
    await execute(
        engine, "UPDATE internal_users SET identity = 'stranger', active = false WHERE id = 'u3'"
    )
    await execute(engine, "UPDATE internal_users SET friendly_name = 'New' WHERE id = 'u7'")

    run = await sync(Scope.FULL, delete_mode="mirror", max_deletes_percent=100)

    assert run.status is RunStatus.SUCCEEDED, run.error
    remote = remote_by_identity(fast_emulator)
    assert "user3" not in remote and "stranger" not in remote
    assert remote["user7"]["friendly_name"] == "New"
    found = await states(engine)
    assert found["u3"]["status"] == "deleted"
    assert found["u7"]["status"] == "synced"


@pytest.mark.parametrize("scope", [Scope.INCREMENTAL, Scope.USERS])
async def test_mirror_mode_deletes_linked_users_without_a_full_listing(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, scope: Scope
):
    await insert_users(engine, [{"id": f"u{n}", "identity": f"user{n}"} for n in range(20)])
    await sync(Scope.FULL, delete_mode="mirror")
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'u4'")

    run = await sync(scope, targets=["u4"] if scope is Scope.USERS else (), delete_mode="mirror")

    assert run.held == []
    assert run.counts["deleted"] == 1
    assert "user4" not in remote_by_identity(fast_emulator)


@pytest.mark.parametrize("scope", [Scope.FULL, Scope.INCREMENTAL])
async def test_two_users_swapping_identities_end_with_each_others_identity_in_one_run(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, scope: Scope
):
    await insert_users(
        engine,
        [
            {"id": "u1", "identity": "alice", "friendly_name": "One"},
            {"id": "u2", "identity": "bob", "friendly_name": "Two"},
        ],
    )
    await sync(Scope.FULL)
    before = {u["identity"]: u["sid"] for u in fast_emulator.emulator.users()}
    async with engine.begin() as connection:
        for sql in (
            "UPDATE internal_users SET identity = 'swap' WHERE id = 'u1'",
            "UPDATE internal_users SET identity = 'alice' WHERE id = 'u2'",
            "UPDATE internal_users SET identity = 'bob' WHERE id = 'u1'",
        ):
            await connection.execute(text(sql))

    run = await sync(scope)

    assert run.status is RunStatus.SUCCEEDED
    assert run.waiting == {}
    assert sum(run.counts.values()) == 2, run.counts  # each user counted once, by its outcome
    assert run.counts["created"] == 2
    remote = remote_by_identity(fast_emulator)
    assert set(remote) == {"alice", "bob"}
    assert (remote["bob"]["friendly_name"], remote["alice"]["friendly_name"]) == ("One", "Two")
    assert not {remote["alice"]["sid"], remote["bob"]["sid"]} & set(before.values())
    found = await states(engine)
    assert (found["u1"]["identity"], found["u2"]["identity"]) == ("bob", "alice")
    await assert_one_owner_per_sid(engine, fast_emulator)


ROTATIONS = {
    "chain": (  # u3 takes u2's identity, u2 takes u1's, u1 a new one
        {"u1": "alice", "u2": "bob", "u3": "carol"},
        {"u1": "dave", "u2": "alice", "u3": "bob"},
    ),
    "cycle of three": (
        {"u1": "alice", "u2": "bob", "u3": "carol"},
        {"u1": "bob", "u2": "carol", "u3": "alice"},
    ),
}
ROTATION_RUNS = {
    "full": {"scope": Scope.FULL},
    "incremental": {"scope": Scope.INCREMENTAL},
    "sync --user of all three": {"scope": Scope.USERS, "targets": ["u1", "u2", "u3"]},
}


@pytest.mark.parametrize("run_as", list(ROTATION_RUNS))
@pytest.mark.parametrize("rotation", list(ROTATIONS))
async def test_identities_passed_round_end_right_and_each_user_counts_once(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, rotation: str, run_as: str
):
    before, after = ROTATIONS[rotation]
    await insert_users(engine, [{"id": u, "identity": i} for u, i in before.items()])
    await sync(Scope.FULL)
    async with engine.begin() as connection:  # one transaction: by way of free identities
        for user in after:
            await connection.execute(
                text("UPDATE internal_users SET identity = :i WHERE id = :u"),
                {"u": user, "i": f"moving-{user}"},
            )
        for user, identity in after.items():
            await connection.execute(
                text("UPDATE internal_users SET identity = :i WHERE id = :u"),
                {"u": user, "i": identity},
            )

    run = await sync(**ROTATION_RUNS[run_as], max_deletes_percent=100)

    assert run.status is RunStatus.SUCCEEDED
    assert run.waiting == {}
    assert sum(run.counts.values()) == 3, run.counts
    remote = remote_by_identity(fast_emulator)
    assert set(remote) == set(after.values())
    found = await states(engine)
    for user, identity in after.items():
        assert (found[user]["identity"], found[user]["remote_sid"]) == (
            identity,
            remote[identity]["sid"],
        )
    await assert_one_owner_per_sid(engine, fast_emulator)
