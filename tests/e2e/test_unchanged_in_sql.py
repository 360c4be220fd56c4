"""Full runs leave unchanged users to Postgres (`db.unchanged`): the SQL that skips them and
the planner that would have found nothing to do agree, on the production path (the real full
selection over a real listing of the emulator, the real planner), on data made to trip them.

The model kept equal to production here is the skip condition itself: every user it skips must
be one the planner sorts as "unchanged, already recorded" (`domain.batch`, `ready`); a user
it does not skip costs only time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.db import gather, source
from service.db import unchanged as unchanged_sql
from service.domain.batch import plan_batch
from service.domain.outcome import Result
from service.domain.policy import Policy
from service.domain.roles import RoleDirectory
from service.domain.runs import RunStatus, Scope
from service.emulator.directory import UserFields
from service.emulator.records import RoleScope
from tests.e2e.conftest import execute, insert_users
from tests.integration.client_factory import target

VIEW = "users_view"
"""The source: a view that repeats an id once `extra_rows` holds it."""
ROLE_NAMES = ("Agent", "Supervisor")
EXACT = '{"n": 12345678901234567890, "f": 1.10, "e": 1e400, "s": "1.10"}'
"""Numbers a float would round (jsonb keeps them exactly), as the source holds them."""
UNTOUCHED = [
    {"id": "plain"},
    {"id": "named", "friendly_name": "Named"},
    {"id": "empty-name", "friendly_name": ""},
    {"id": "exact"},  # attributes: EXACT
    {"id": "unicode", "friendly_name": "Zoë ☃", "attributes": {"ключ": "значение", "e": "\u00e9"}},
    {"id": "nested", "attributes": {"a": {"b": [1, 2, {"c": None}]}, "t": True}},
    {"id": "role-by-name", "role": "Agent"},
    {"id": "role-folded", "role": "supervisor"},
    {"id": "role-blank", "role": "   "},
    {"id": "role-empty", "role": ""},
]
TOUCHED = {
    "drift-name": "the remote friendly name changed behind our back",
    "drift-attrs-text": "the remote attributes: the same JSON value, another text",
    "drift-role": "the remote role changed behind our back",
    "local-change": "the source row changed",
    "deleted-remote": "the remote user was deleted behind our back",
    "recreated-remote": "the remote user was deleted and made again (another sid)",
    "role-gone": "the role the row names was renamed at the Service",
    "role-remade": "the role the row names was deleted and made again (another sid)",
    "held-write": "a held write row",
    "forgotten": "the state does not remember the remote user (an older state)",
    "inactive": "the user became inactive",
    "duplicate": "the source repeats the id",
}


@pytest.fixture
async def view(engine: AsyncEngine) -> AsyncIterator[str]:
    await execute(engine, "CREATE TABLE extra_rows (LIKE internal_users INCLUDING DEFAULTS)")
    await execute(
        engine,
        f"CREATE VIEW {VIEW} AS SELECT * FROM internal_users UNION ALL SELECT * FROM extra_rows",
    )
    yield VIEW
    await execute(engine, f"DROP VIEW {VIEW}")
    await execute(engine, "DROP TABLE extra_rows")


def remote_user(emulator: Any, identity: str) -> Any:
    service = emulator.emulator.service()
    return next(u for u in emulator.emulator.directory.users(service.sid) if u.identity == identity)


async def seed(engine: AsyncEngine, sync: Any, emulator: Any) -> None:
    service = emulator.emulator.service()
    directory = emulator.emulator.directory
    for name in (*ROLE_NAMES, "Gone", "Remade"):
        directory.create_role(service, name, RoleScope.SERVICE, ("sendMessage",))
    users = [*UNTOUCHED, *({"id": i} for i in TOUCHED)]
    for u in users:
        if u["id"] in ("role-gone", "role-remade", "drift-role"):
            u["role"] = {"role-gone": "Gone", "role-remade": "Remade"}.get(u["id"], "Agent")
        if u["id"] == "drift-name":
            u["friendly_name"] = "Mine"
    await insert_users(engine, users)
    await execute(
        engine,
        "UPDATE internal_users SET attributes = CAST(:a AS jsonb) WHERE id = 'exact'",
        a=EXACT,
    )
    assert (await sync(Scope.FULL, source_table=VIEW)).status is RunStatus.SUCCEEDED


async def touch(engine: AsyncEngine, emulator: Any) -> None:
    service = emulator.emulator.service()
    directory = emulator.emulator.directory
    update = directory.update_user
    update(service, remote_user(emulator, "drift-name"), UserFields(friendly_name="Them"))
    update(service, remote_user(emulator, "drift-attrs-text"), UserFields(attributes="{ }"))
    other_role = next(r for r in service.roles.values() if r.friendly_name == "Supervisor")
    update(service, remote_user(emulator, "drift-role"), UserFields(role_sid=other_role.sid))
    directory.delete_user(remote_user(emulator, "deleted-remote"))
    gone = remote_user(emulator, "recreated-remote")
    directory.delete_user(gone)
    directory.create_user(service, UserFields(identity="recreated-remote", attributes="{}"))
    for role in list(service.roles.values()):
        if role.friendly_name == "Gone":
            service.roles[role.sid] = dataclasses.replace(role, friendly_name="Renamed")
        if role.friendly_name == "Remade":
            directory.delete_role(service, role)
            directory.create_role(service, "Remade", RoleScope.SERVICE, ("sendMessage",))
    await execute(
        engine, "UPDATE internal_users SET friendly_name = 'New' WHERE id = 'local-change'"
    )
    await execute(engine, "UPDATE internal_users SET active = false WHERE id = 'inactive'")
    await execute(
        engine,
        "INSERT INTO extra_rows (id, identity, attributes, active)"
        " VALUES ('duplicate', 'duplicate-2', '{}', true)",
    )
    await execute(
        engine,
        "UPDATE sync_state SET seen_attributes = NULL, seen_friendly_name = NULL"
        " WHERE user_id = 'forgotten'",
    )
    await execute(
        engine,
        "INSERT INTO sync_write (service_key, user_id, identity, state, run_id)"
        " SELECT 'elsewhere', 'held-write', 'held-write', 'held', max(id) FROM sync_run",
    )


async def sides_now(
    connection: AsyncConnection, client: Any
) -> tuple[set[str], set[str], set[str]]:
    """(every user of the full selection, those the SQL skips, those the planner finds
    unchanged and already recorded), over one listing."""
    await gather.create_remote_snapshot(connection)
    pages = []
    async for page in client.iter_user_pages():
        await gather.copy_remote_page(connection, page)
        pages.append([u.sid for u in page])
    await gather.finish_remote_snapshot(connection)
    since = await gather.database_now(connection)
    src = await source.inspect(connection, VIEW)
    roles = RoleDirectory(await client.list_roles())
    names = await unchanged_sql.role_names(connection, source=src)
    skip = unchanged_sql.Unchanged.resolving(names, roles)
    everyone, kept, ready = set(), set(), set()
    async for batch in gather.stream(connection, gather.full(source=src, listed_since=since)):
        everyone |= {c.user_id for c in batch if c.user_id}
        plan = plan_batch(batch, policy=Policy(), roles=roles, dry_run=False)
        ready |= {o.user_id for o in plan.ready if o.result is Result.UNCHANGED and o.user_id}
    left = await set_aside_at_once(connection, src, since=since, skip=skip)
    at_once = await put_aside(connection)
    assert await aside_page_by_page(connection, src, pages, since=since, skip=skip) == at_once
    selection = gather.full(source=src, listed_since=since, set_aside=True)
    async for batch in gather.stream(connection, selection):
        kept |= {c.user_id for c in batch if c.user_id}
    skipped = everyone - kept
    assert left == len(skipped) == len(at_once)
    return everyone, skipped, ready


async def set_aside_at_once(
    connection: AsyncConnection,
    src: source.Source,
    *,
    since: datetime,
    skip: unchanged_sql.Unchanged,
) -> int:
    """One evaluation over the whole listing, once it is in: what the page-by-page one
    (`aside_page_by_page`, the production path) must equal."""
    await gather.begin_set_aside(connection, source=src)
    found = await gather.set_aside(connection, listed_since=since, unchanged=skip)
    await gather.end_set_aside(connection)
    return found


async def put_aside(connection: AsyncConnection) -> set[str]:
    return set((await connection.execute(text(f"SELECT id FROM {gather.ASIDE_TABLE}"))).scalars())


async def aside_page_by_page(
    connection: AsyncConnection,
    src: source.Source,
    pages: list[list[str]],
    *,
    since: Any,
    skip: unchanged_sql.Unchanged,
) -> set[str]:
    """The users a run puts aside chunk by chunk of its listing (as `reconcile.sides` does,
    here two listed users a chunk), which must be those of one evaluation over the whole
    listing."""
    await gather.begin_set_aside(connection, source=src)
    listed = [sid for page in pages for sid in page]
    chunks = [listed[n : n + 2] for n in range(0, len(listed), 2)]
    assert len(chunks) > 10
    counted = 0
    for sids in chunks:
        counted += await gather.set_aside(connection, listed_since=since, unchanged=skip, sids=sids)
    found = await put_aside(connection)
    assert counted == len(found)
    return found


async def test_the_users_sql_skips_are_those_the_planner_finds_unchanged(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, view: str
):
    await seed(engine, sync, fast_emulator)
    await touch(engine, fast_emulator)

    async with aiohttp.ClientSession() as session, engine.connect() as connection:
        client = target(fast_emulator, session).client
        everyone, skipped, ready = await sides_now(connection, client)

    assert skipped <= ready  # the model: SQL never skips a user the planner would act on
    assert skipped == {u["id"] for u in UNTOUCHED}
    assert not skipped & set(TOUCHED)
    assert set(TOUCHED) <= everyone


async def test_a_full_run_fixes_what_changed_and_then_only_lists(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, view: str
):
    await seed(engine, sync, fast_emulator)
    await touch(engine, fast_emulator)

    fixed = await sync(Scope.FULL, source_table=VIEW, max_deletes_percent=100)
    fast_emulator.emulator.reset_stats()
    again = await sync(Scope.FULL, source_table=VIEW, max_deletes_percent=100)

    assert fixed.counts["unchanged"] >= len(UNTOUCHED)
    assert remote_user(fast_emulator, "drift-name").friendly_name == "Mine"
    assert remote_user(fast_emulator, "drift-attrs-text").attributes == "{ }"  # equal as JSON
    assert remote_user(fast_emulator, "local-change").friendly_name == "New"
    agent = next(
        r for r in fast_emulator.emulator.service().roles.values() if r.friendly_name == "Agent"
    )
    assert remote_user(fast_emulator, "drift-role").role_sid == agent.sid
    remade = next(
        r for r in fast_emulator.emulator.service().roles.values() if r.friendly_name == "Remade"
    )
    assert remote_user(fast_emulator, "role-remade").role_sid == remade.sid
    calls = {k for k, v in fast_emulator.emulator.stats.items() if v}
    assert not calls & {"create_user", "update_user", "delete_user", "fetch_user"}, calls
    invalid = {"duplicate", "role-gone"}  # bad input stays planned (and reported) every run
    assert again.counts["invalid"] == len(invalid)
    everyone = len(UNTOUCHED) + len(TOUCHED)
    assert again.counts["unchanged"] == everyone - len(invalid)
    planned = {"inactive", "held-write"}  # deleted (its state says so), and a held row
    assert again.unplanned == everyone - len(invalid) - len(planned)
    assert json.loads(remote_user(fast_emulator, "exact").attributes)["n"] == 12345678901234567890


async def test_the_first_full_run_after_a_switch_of_attributes_mode_plans_everyone(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    merge, replace = {"attributes_mode": "merge"}, {"attributes_mode": "replace"}
    await insert_users(engine, [{"id": "u1", "attributes": {"ours": 1}}, {"id": "u2"}])
    await sync(Scope.FULL, **merge)
    service = fast_emulator.emulator.service()
    user = remote_user(fast_emulator, "u1")
    fast_emulator.emulator.directory.update_user(
        service, user, UserFields(attributes='{"ours": 1, "theirs": 2}')
    )
    kept = await sync(Scope.FULL, **merge)  # merge mode keeps "theirs" (and remembers it)
    assert (kept.counts["unchanged"], kept.unplanned) == (2, 1)  # u1 changed remotely: planned
    assert (await sync(Scope.FULL, **merge)).unplanned == 2

    switched = await sync(Scope.FULL, **replace)

    assert switched.unplanned == 0
    assert json.loads(remote_user(fast_emulator, "u1").attributes) == {"ours": 1}
    assert (await sync(Scope.FULL, **replace)).unplanned == 2


async def test_a_run_under_another_context_since_the_last_full_run_stops_the_skip(
    engine: AsyncEngine, sync: Any, fast_emulator: Any
):
    """Two replicas set differently (one in merge mode) share the Service: the users the
    other one wrote are planned again by the next full run of this one."""
    await insert_users(engine, [{"id": "u1"}, {"id": "u2"}])
    await sync(Scope.FULL)
    assert (await sync(Scope.FULL)).unplanned == 2
    await execute(engine, "UPDATE internal_users SET friendly_name = 'B' WHERE id = 'u2'")

    await sync(Scope.INCREMENTAL, attributes_mode="merge")

    assert (await sync(Scope.FULL)).unplanned == 0
    assert (await sync(Scope.FULL)).unplanned == 2
