"""Properties of the real engine (real Postgres, the emulator over HTTP) while calls fail.

For generated worlds (unicode identities, any JSON object as attributes, roles by name, inactive
users, renames between runs, remote users unknown locally, every delete mode), runs are repeated
with 5xx, 429 and dropped connections injected at random, before and after the API processed a
write, until a run succeeds. Then the remote side is exactly what the source says, no identity
exists twice, and no remote user outside the delete mode's reach was deleted.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from service.domain.runs import RunStatus, Scope
from service.reconcile.run import RunFailed
from service.wiring import ServiceUnresolved
from tests.e2e.conftest import execute, fetch_all, insert_users
from tests.properties.conftest import Reset
from tests.properties.world import (
    PROTECTED,
    World,
    expected_identities,
    remote_matches,
    worlds,
)

ENGINE = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WRITES = ("create_user", "update_user", "delete_user")
RUNS_WITH_FAULTS = 12
FAST_FAILURES = {
    "max_retries": 2,
    "failure_backoff_base": 0.001,
    "failure_backoff_max": 0.001,
    "max_deletes_percent": 100.0,
    "max_deletes_per_run": 1000,
    "protected_identity_pattern": PROTECTED,
}

faults = st.lists(
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(["status", "rate_limit", "drop"]),
            "fraction": st.floats(0.05, 0.3),
            "status": st.sampled_from([500, 502, 503]),
            "after_processing": st.booleans(),
        }
    ),
    min_size=1,
    max_size=3,
)


def inject(emulator: Any, chosen: list[dict[str, Any]]) -> None:
    for fault in chosen:
        after = fault["after_processing"] and fault["kind"] != "rate_limit"
        emulator.inject_fault(
            fault["kind"],
            fraction=fault["fraction"],
            status=fault["status"],
            retry_after=0.0 if fault["kind"] == "rate_limit" else None,
            operations=WRITES if after else None,
            after_processing=after,
        )


async def converge(sync: Any, emulator: Any, chosen: list[dict[str, Any]], **policy: Any) -> None:
    """Runs with faults until one succeeds with no failure; then (if need be) without."""
    inject(emulator, chosen)
    for _ in range(RUNS_WITH_FAULTS):
        try:
            run = await sync(Scope.FULL, **FAST_FAILURES, **policy)
        except RunFailed:  # a read failed past its retries: the run is recorded failed
            continue
        except ServiceUnresolved:  # so did the one read at start (GET /v1/Configuration)
            continue
        if run.status is RunStatus.SUCCEEDED and not run.failures:
            break
    emulator.clear_faults()
    run = await sync(Scope.FULL, **FAST_FAILURES, **policy)
    assert run.status is RunStatus.SUCCEEDED, (run.error, run.failures)
    assert not run.failures


def sids_by_identity(emulator: Any) -> dict[str, str]:
    return {u["identity"]: u["sid"] for u in emulator.users()}


@ENGINE
@given(world=worlds(), chosen=faults)
async def test_runs_repeated_through_random_failures_end_exactly_as_the_source_says(
    engine: AsyncEngine, sync: Any, fast_emulator: Any, reset_world: Reset, world: World, chosen
):
    await reset_world()
    control = fast_emulator.emulator
    control.seed_users([{"identity": i} for i in world.strangers + world.adoptable])
    strangers = {i: s for i, s in sids_by_identity(control).items() if i in world.strangers}
    await insert_users(engine, [r.as_insert() for r in world.first])
    policy = {"delete_mode": world.delete_mode}

    await converge(sync, control, chosen, **policy)
    after_first = sids_by_identity(control)
    await replace_source(engine, world)
    await converge(sync, control, chosen, **policy)

    remote = control.users()
    identities = Counter(u["identity"] for u in remote)
    assert [i for i, n in identities.items() if n > 1] == []
    assert set(identities) == expected_identities(world)
    role_sids = {r["friendly_name"]: r["sid"] for r in control.roles()}
    by_identity = {u["identity"]: u for u in remote}
    stored = await stored_attributes(engine)  # jsonb's numbers, as Postgres holds them
    for row in (replace(r, attributes=stored[r.id]) for r in world.second if r.active):
        assert remote_matches(row, by_identity[row.identity], role_sids) == [], row
    await assert_nothing_out_of_reach_was_deleted(control, world, strangers, after_first)
    await assert_states_link_one_remote_user_each(engine, by_identity)
    control.reset_stats()
    await sync(Scope.FULL, **FAST_FAILURES, **policy)
    assert sum(control.stats.get(op, 0) for op in WRITES) == 0  # converged: nothing left
    assert await fetch_all(engine, "SELECT id FROM sync_run WHERE status = 'running'") == []


async def stored_attributes(engine: AsyncEngine) -> dict[str, Any]:
    rows = await fetch_all(engine, "SELECT id, attributes::text AS a FROM internal_users")
    return {r["id"]: json.loads(r["a"]) for r in rows}


async def replace_source(engine: AsyncEngine, world: World) -> None:
    await execute(engine, "DELETE FROM internal_users")
    if world.second:
        await insert_users(engine, [r.as_insert() for r in world.second])


async def assert_nothing_out_of_reach_was_deleted(
    control: Any, world: World, strangers: dict[str, str], after_first: dict[str, str]
) -> None:
    now = set(sids_by_identity(control).values())
    for identity, sid in strangers.items():
        if world.delete_mode != "mirror" or identity.startswith("keep-"):
            assert sid in now, f"{identity!r} ({sid}) was deleted in {world.delete_mode} mode"
    if world.delete_mode == "never":
        kept = {i: s for i, s in after_first.items() if i not in world.renamed_from}
        assert set(kept.values()) <= now


async def assert_states_link_one_remote_user_each(
    engine: AsyncEngine, by_identity: dict[str, dict[str, Any]]
) -> None:
    states = await fetch_all(
        engine, "SELECT identity, remote_sid FROM sync_state WHERE remote_sid IS NOT NULL"
    )
    sids = [s["remote_sid"] for s in states]
    assert len(sids) == len(set(sids))
    for state in states:
        assert by_identity[state["identity"]]["sid"] == state["remote_sid"]


@ENGINE
@given(
    world=worlds(),
    fault=st.sampled_from(["status", "drop"]),
    fraction=st.sampled_from([None, 0.5]),
    padding=st.sampled_from([0, 120]),
)
async def test_a_listing_that_fails_past_its_retries_deletes_nothing(
    engine: AsyncEngine,
    sync: Any,
    fast_emulator: Any,
    reset_world: Reset,
    world: World,
    fault: str,
    fraction: float | None,
    padding: int,
):
    await reset_world()
    control = fast_emulator.emulator
    strangers = world.strangers + [f"pad-{n}" for n in range(padding)]  # pages 2 and 3
    control.seed_users([{"identity": i} for i in strangers + world.adoptable])
    await insert_users(engine, [r.as_insert() for r in world.first])
    policy = {**FAST_FAILURES, "delete_mode": world.delete_mode, "max_retries": 1}
    await sync(Scope.FULL, **policy)
    await replace_source(engine, world)
    before = set(sids_by_identity(control).values())
    control.reset_stats()
    control.inject_fault(fault, status=503, fraction=fraction, operations={"list_users"})

    try:
        run = await sync(Scope.FULL, **policy)
    except RunFailed as failed:  # the listing failed past its retries: recorded failed
        run = failed.report

    if run.status is not RunStatus.SUCCEEDED:
        assert control.stats.get("delete_user", 0) == 0
        assert set(sids_by_identity(control).values()) >= before
    runs = await fetch_all(engine, "SELECT status FROM sync_run ORDER BY id DESC LIMIT 1")
    assert runs[0]["status"] == run.status.value
