"""The SQL join full runs use (`db.gather.full`) equals its in-memory reference (`match_cases`).

Generated worlds load a source table (no constraints: ids and identities may repeat), states
(exclusive claims, as Postgres keeps them: linked, retired and unconfirmed ones) and a remote
snapshot; both readings must pair every user with the same remote users, holder and counts,
and find the same orphans. The unit properties plan over `match_cases`; this keeps it honest.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import gather
from service.db.source import Source
from service.domain.cases import Case, match_cases
from service.domain.users import LocalUser, RemoteUser, SyncState, SyncStatus, UserId, UserSid
from tests.e2e.conftest import execute

REFERENCE = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
IDENTITIES = ("a", "b", "c", "d", "e", "f")
IDS = ("u1", "u2", "u3", "u4", "u5")
SOURCE = Source(name="reference_users")


def sid(n: int) -> UserSid:
    return UserSid(f"US{n:032x}")


rows = st.lists(
    st.builds(
        LocalUser,
        id=st.sampled_from(IDS).map(UserId),
        identity=st.sampled_from(IDENTITIES),
        friendly_name=st.none(),
        role=st.none(),
        attributes=st.just({}),
        active=st.booleans(),
    ),
    max_size=6,
)
remotes = st.lists(st.sampled_from(IDENTITIES), unique=True, max_size=6)
state_specs = st.lists(
    st.tuples(
        st.sampled_from(IDS),
        st.sampled_from(list(SyncStatus)),
        st.none() | st.integers(0, 8),
        st.none() | st.integers(0, 8),
        st.none() | st.sampled_from(IDENTITIES),
    ),
    max_size=5,
    unique_by=lambda spec: spec[0],
)


def exclusive(specs: list[Any], by_sid: dict[int, str]) -> list[SyncState]:
    """States whose claims do not overlap (what the unique indexes let into `sync_state`)."""
    states: list[SyncState] = []
    sids: set[int] = set()
    claimed: set[str] = set()
    for user_id, status, linked, retired, named in specs:
        # a linked state names its remote user's identity
        identity = by_sid.get(linked, named) if linked is not None else named
        state = SyncState(
            user_id=UserId(user_id),
            remote_sid=sid(linked) if linked is not None else None,
            identity=identity,
            fingerprint=None,
            status=status,
            retired_sid=sid(retired) if retired is not None else None,
        )
        taken = {n for n in (linked, retired) if n is not None}
        claims = status is not SyncStatus.DELETED and (
            linked is not None
            or status in (SyncStatus.PENDING, SyncStatus.FAILED, SyncStatus.QUARANTINED)
        )
        if taken & sids or (claims and identity is not None and identity in claimed):
            continue
        if linked is not None and linked == retired:
            continue
        sids |= taken
        if claims and identity is not None:
            claimed.add(identity)
        states.append(state)
    return states


async def load(engine: AsyncEngine, local: list[LocalUser], states: list[SyncState]) -> None:
    await execute(engine, "TRUNCATE sync_state")
    await execute(engine, "DROP TABLE IF EXISTS reference_users")
    await execute(
        engine,
        "CREATE TABLE reference_users (id text, identity text, friendly_name text, role text,"
        " attributes jsonb, active boolean, updated_at timestamptz)",
    )
    for u in local:
        await execute(
            engine,
            "INSERT INTO reference_users VALUES (:id, :identity, NULL, NULL, '{}', :active, now())",
            id=u.id,
            identity=u.identity,
            active=u.active,
        )
    for s in states:
        await execute(
            engine,
            "INSERT INTO sync_state (user_id, remote_sid, identity, status, retired_sid)"
            " VALUES (:u, :r, :i, :s, :t)",
            u=s.user_id,
            r=s.remote_sid,
            i=s.identity,
            s=s.status.value,
            t=s.retired_sid,
        )


def comparable(case: Case) -> tuple[Any, ...]:
    """What both readings must agree on (which row of a repeated id is kept is unspecified)."""
    local, one = case.local, case.copies == 1
    row = None if local is None else (local.id, local.identity if one else None)
    return (
        case.user_id,
        row,
        case.state.user_id if case.state else None,
        case.remote.sid if case.remote and one else None,
        case.previous.sid if case.previous and one else None,  # depends on the row kept
        case.holder if one else None,
        case.copies,
        case.holders if local is not None and case.copies == 1 else None,
    )


@REFERENCE
@given(local=rows, remote_identities=remotes, specs=state_specs)
async def test_the_sql_join_pairs_users_exactly_as_the_reference_does(
    engine: AsyncEngine, db: Any, local: list[LocalUser], remote_identities: list[str], specs
) -> None:
    remote = [
        RemoteUser(sid=sid(n), identity=i, friendly_name=None, role_sid=None, attributes="{}")
        for n, i in enumerate(remote_identities)
    ]
    by_sid = {n: i for n, i in enumerate(remote_identities)}
    states = exclusive(specs, by_sid)
    note(f"local={local!r}\nremote={remote_identities!r}\nstates={states!r}")
    await load(engine, local, states)
    expected, orphans = match_cases(local, remote, states)

    async with engine.connect() as connection:
        await gather.create_remote_snapshot(connection)
        await gather.copy_remote_page(connection, remote)
        await gather.finish_remote_snapshot(connection)
        since = await gather.database_now(connection)
        selection = gather.full(source=SOURCE, listed_since=since)
        found = [g async for batch in gather.stream(connection, selection) for g in batch]
        sql_orphans = [
            r.sid async for page in gather.stream_orphans(connection, source=SOURCE) for r in page
        ]

    await execute(engine, "DROP TABLE reference_users")
    assert [comparable(g) for g in found] == [comparable(c) for c in expected]
    assert sorted(sql_orphans) == sorted(r.sid for r in orphans)
