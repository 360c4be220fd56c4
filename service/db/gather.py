"""Reading both sides for a reconcile, set-based, in Postgres.

A full run COPYs every remote user into a temporary table on the run's own connection, then
one query joins the source (one row per id, `db.source.per_id`), `sync_state` and the remote
users and streams per-user rows in batches: memory stays bounded by the batch, not by the user
count. Incremental and targeted runs select only the users that need looking at and fetch their
remote sides; `owners` then says which of those remote users another user's state holds.

Ownership, the rule every query here follows: a remote user belongs to the state that links it
(`remote_sid`), else to the state that retires it (`retired_sid`), else to the state that claims
its identity for a create that may have happened unrecorded (`status` pending, failed or
quarantined, no sid yet). Claims are exclusive (unique indexes on `sync_state`), so a remote user
has at most one owner. For a local user, `holder` is another user owning the remote user with
its identity, or claiming that identity: the user must wait, never adopt.

Each user comes back as a `domain.cases.Case`. A full run's snapshot is as old as its listing:
a user whose state was written after the listing began (another run applied it meanwhile) is
marked `stale`, and its remote side is fetched again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db import rows
from service.db import unchanged as unchanged_sql
from service.db.source import Source, per_id
from service.db.unchanged import Unchanged
from service.db.vocabulary import (
    DELETED,
    RETRYING,
    UNCONFIRMED,
    claims_identity,
    held_here,
    sql,
)
from service.domain.cases import Case
from service.domain.runs import RunStatus
from service.domain.users import RemoteUser, SyncStatus, UserId

BATCH = 1000
REMOTE_TABLE = "remote_users_snapshot"


async def database_now(connection: AsyncConnection) -> datetime:
    """The database's clock: `sync_state.updated_at` is written by it."""
    now = await connection.scalar(text("SELECT clock_timestamp()"))
    assert isinstance(now, datetime)
    return now


async def others_since(
    connection: AsyncConnection, *, service_key: str, run_id: int, since: datetime
) -> bool:
    """Whether another run of the Service was running at any moment since `since`."""
    found = await connection.scalar(
        text(
            "SELECT EXISTS (SELECT 1 FROM sync_run WHERE service_key = :key AND id <> :me"
            f" AND (status = {sql(RunStatus.RUNNING)} OR finished_at >= :since))"
        ),
        {"key": service_key, "me": run_id, "since": since},
    )
    return bool(found)


async def create_remote_snapshot(connection: AsyncConnection) -> None:
    """An empty snapshot table, indexed already: each page's COPY keeps the index as the
    listing comes, which costs nothing once the listing is over (building it then did)."""
    await connection.execute(
        text(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {REMOTE_TABLE} ("
            " sid text PRIMARY KEY, identity text NOT NULL, friendly_name text,"
            " role_sid text, attributes text) ON COMMIT PRESERVE ROWS"
        )
    )
    await connection.execute(
        text(f"CREATE INDEX IF NOT EXISTS {REMOTE_TABLE}_identity ON {REMOTE_TABLE} (identity)")
    )
    await connection.execute(text(f"TRUNCATE {REMOTE_TABLE}"))


async def copy_remote_page(connection: AsyncConnection, page: Sequence[RemoteUser]) -> None:
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_records_to_table(
        REMOTE_TABLE,
        records=[(u.sid, u.identity, u.friendly_name, u.role_sid, u.attributes) for u in page],
        columns=list(rows.REMOTE_COLUMNS),
    )


async def finish_remote_snapshot(connection: AsyncConnection) -> int:
    """The listing is in: the statistics the selection is planned from (of the columns it
    joins on: the others' cost most, wide attributes) and how many users were listed."""
    await connection.execute(text(f"ANALYZE {REMOTE_TABLE} (sid, identity)"))
    count = await connection.scalar(text(f"SELECT count(*) FROM {REMOTE_TABLE}"))
    return int(count or 0)


@dataclass(frozen=True, slots=True)
class Selection:
    """The users one run looks at: a query over the source and `sync_state` (and, for a full
    run, the remote snapshot) yielding one row per user, with its parameters."""

    query: str
    params: dict[str, object]


_COLUMNS = f"""
        {rows.select_list("l", rows.LOCAL_COLUMNS, "l_")},
        {rows.select_list("s", rows.STATE_COLUMNS, "s_")},
        s.version AS s_version, l.fingerprint AS fingerprint, l.copies AS copies,
        l.holders AS holders, COALESCE(s.delete_after <= clock_timestamp(), false) AS due"""


def _local_and_state(users: str) -> str:
    return f"{_COLUMNS} FROM ({users}) l FULL JOIN sync_state s ON s.user_id = l.id"


_FULL_JOINS = f"""
        LEFT JOIN {REMOTE_TABLE} r1 ON r1.identity = l.identity
        LEFT JOIN {REMOTE_TABLE} r2 ON r2.sid = s.remote_sid
        LEFT JOIN {REMOTE_TABLE} r4 ON s.remote_sid IS NULL AND s.status IN {UNCONFIRMED}
            AND r4.identity = s.identity
            AND NOT EXISTS (SELECT 1 FROM sync_state x
                WHERE x.remote_sid = r4.sid AND x.user_id <> s.user_id)
            AND NOT EXISTS (SELECT 1 FROM sync_state x
                WHERE x.retired_sid = r4.sid AND x.user_id <> s.user_id)
        LEFT JOIN {REMOTE_TABLE} r3 ON r3.sid = s.retired_sid
        LEFT JOIN sync_state o1 ON o1.remote_sid = r1.sid AND o1.user_id <> l.id
        LEFT JOIN sync_state o2 ON o2.retired_sid = r1.sid AND o2.user_id <> l.id
        LEFT JOIN sync_state o3 ON o3.identity = l.identity AND o3.user_id <> l.id
            AND {claims_identity("o3")}
        CROSS JOIN LATERAL (SELECT COALESCE(r2.sid, r4.sid) AS sid) k
        CROSS JOIN LATERAL (SELECT
            CASE WHEN l.id IS NULL THEN k.sid ELSE r1.sid END AS cur,
            CASE WHEN l.id IS NOT NULL AND k.sid IS DISTINCT FROM r1.sid
                 THEN COALESCE(k.sid, r3.sid) ELSE r3.sid END AS prev) pick
        LEFT JOIN {REMOTE_TABLE} r ON r.sid = pick.cur
        LEFT JOIN {REMOTE_TABLE} p ON p.sid = pick.prev"""


_FULL_WHERE = f"NOT (l.id IS NULL AND s.status = {DELETED} AND k.sid IS NULL AND r3.sid IS NULL)"


def full(*, source: Source, listed_since: datetime, set_aside: bool = False) -> Selection:
    """Every internal user (and every state of a removed one) with its remote users; with
    `set_aside`, but for the users `set_aside` put aside (left out on both sides of
    the join before any other, so they cost nothing more)."""
    users, states = per_id(source), "sync_state"
    if set_aside:
        users = f"SELECT * FROM ({users}) x WHERE NOT EXISTS ({_ASIDE.format(id='x.id')})"
        states = f"(SELECT * FROM sync_state y WHERE NOT EXISTS ({_ASIDE.format(id='y.user_id')}))"
    query = f"""
        SELECT {rows.select_list("r", rows.REMOTE_COLUMNS, "r_")},
            {rows.select_list("p", rows.REMOTE_COLUMNS, "p_")},
            COALESCE(o1.user_id, o2.user_id, o3.user_id) AS holder,
            COALESCE(s.updated_at >= :listed_since, false) AS stale,
            {_COLUMNS} FROM ({users}) l FULL JOIN {states} s ON s.user_id = l.id
        {_FULL_JOINS}
        WHERE {_FULL_WHERE}
    """
    return Selection(query, {"listed_since": listed_since})


ASIDE_TABLE = "unplanned_users"
_ASIDE = f"SELECT 1 FROM {ASIDE_TABLE} a WHERE a.id = {{id}}"
LOCAL_TABLE = "local_users_snapshot"
"""The source as `db.source.per_id` reads it when a full run begins listing: the rows
`unchanged_sql.CONDITION` reads of it, so that the users it leaves aside can be found page by
page while the listing runs, each chunk joined by identity to the users it lists."""
_CANDIDATES = f"""
        JOIN sync_state s ON s.user_id = l.id
        JOIN {REMOTE_TABLE} r1 ON r1.identity = l.identity {{listed}}
        LEFT JOIN sync_state o1 ON o1.remote_sid = r1.sid AND o1.user_id <> l.id
        LEFT JOIN sync_state o2 ON o2.retired_sid = r1.sid AND o2.user_id <> l.id
        LEFT JOIN sync_state o3 ON o3.identity = l.identity AND o3.user_id <> l.id
            AND {claims_identity("o3")}"""
"""The joins `unchanged_sql.CONDITION` reads, as `_FULL_JOINS` makes them: the rows it keeps
have a local user, a state and a listed remote user with the local identity."""


async def begin_set_aside(connection: AsyncConnection, *, source: Source) -> None:
    """Ready the run's connection to put users aside as the listing comes (`set_aside`): the
    source read once into `LOCAL_TABLE`, and an empty `ASIDE_TABLE`."""
    for table, columns in (
        (
            LOCAL_TABLE,
            "id text, identity text, role text, active boolean, copies bigint, fingerprint text",
        ),
        (ASIDE_TABLE, "id text PRIMARY KEY"),
    ):
        await connection.execute(
            text(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({columns}) ON COMMIT PRESERVE ROWS"
            )
        )
        await connection.execute(text(f"TRUNCATE {table}"))
    await connection.execute(
        text(
            f"INSERT INTO {LOCAL_TABLE} SELECT l.id, l.identity, l.role, l.active, l.copies,"
            f" l.fingerprint FROM ({per_id(source)}) l"
        )
    )
    await connection.execute(
        text(f"CREATE INDEX IF NOT EXISTS {LOCAL_TABLE}_identity ON {LOCAL_TABLE} (identity)")
    )
    await connection.execute(text(f"ANALYZE {LOCAL_TABLE}"))


async def set_aside(
    connection: AsyncConnection,
    *,
    listed_since: datetime,
    unchanged: Unchanged,
    sids: Sequence[str] | None = None,
) -> int:
    """Put the users `db.unchanged` leaves to Postgres, among those whose listed remote user
    is one of `sids` (None: every listed one), in `ASIDE_TABLE` (`full(set_aside=True)` leaves
    them out); how many more. The condition is evaluated per joined row, so chunk by chunk it
    puts aside exactly the users one evaluation over the whole listing would."""
    listed, params = "", {"listed_since": listed_since, **unchanged.params}
    if sids is not None:
        listed, params["sids"] = "AND r1.sid = ANY(CAST(:sids AS text[]))", list(sids)
    found = await connection.execute(
        text(
            f"INSERT INTO {ASIDE_TABLE} SELECT l.id FROM {LOCAL_TABLE} l"
            f" {_CANDIDATES.format(listed=listed)}"
            f" WHERE {unchanged_sql.CONDITION} ON CONFLICT DO NOTHING"
        ),
        params,
    )
    return max(0, found.rowcount)


async def end_set_aside(connection: AsyncConnection) -> None:
    """The users put aside are all in: planned over as `full(set_aside=True)` reads them."""
    await connection.execute(text(f"ANALYZE {ASIDE_TABLE}"))


def incremental(*, source: Source, now: datetime) -> Selection:
    """Users whose source row changed since last applied, removed ones (suspended ones once
    their grace period is over), due retries, users waiting for an identity, and users a
    guard holds: one whose row was put back is planned as unchanged, and the pass drops its
    hold (`reconcile.gate`), which would otherwise stay until a full run and keep holding
    the user's next change in every one-user run."""
    query = f"""
        SELECT {_local_and_state(per_id(source))}
        WHERE (l.id IS NOT NULL AND s.user_id IS NULL)
           OR (l.id IS NOT NULL AND l.fingerprint IS DISTINCT FROM s.fingerprint
               AND s.status NOT IN {RETRYING})
           OR (l.id IS NOT NULL AND s.status IN {RETRYING}
               AND l.fingerprint IS DISTINCT FROM s.attempted_fingerprint)
           OR (l.id IS NULL AND s.status <> {DELETED} AND s.delete_after IS NULL)
           OR s.delete_after <= :now
           OR (s.status IN {UNCONFIRMED} AND s.next_attempt_at <= :now)
           OR s.status = {sql(SyncStatus.WAITING)}
           OR s.retired_sid IS NOT NULL
           OR {held_here("s.user_id")}
    """
    return Selection(query, {"now": now})


@dataclass(frozen=True, slots=True)
class Named:
    ids: list[str]
    """The internal ids the targets name, in the source or in state."""
    nobody: list[str]
    """The targets that name nobody: no id nor identity of the source or of state."""


async def named_ids(
    connection: AsyncConnection, *, source: Source, targets: Sequence[str]
) -> Named:
    """Whom `targets` (ids or identities) name, in the source or in state."""
    query = f"""
        SELECT l.id::text, l.identity::text FROM {source.relation} l
        WHERE l.id::text = ANY(:targets) OR l.identity::text = ANY(:targets)
        UNION SELECT user_id, identity FROM sync_state
        WHERE user_id = ANY(:targets) OR identity = ANY(:targets)
    """
    found = (await connection.execute(text(query), {"targets": list(targets)})).all()
    named = {id_ for id_, _ in found} | {identity for _, identity in found}
    nobody = [t for t in dict.fromkeys(targets) if t not in named]
    return Named(sorted({id_ for id_, _ in found}), nobody)


def named(*, source: Source, ids: Sequence[str]) -> Selection:
    """The users with these internal ids (present in the source or only in state)."""
    users = per_id(source, where=source.ids_match("ids"))
    query = f"""
        SELECT {_COLUMNS} FROM unnest(CAST(:ids AS text[])) AS t(id)
        LEFT JOIN ({users}) l ON l.id = t.id LEFT JOIN sync_state s ON s.user_id = t.id
        WHERE l.id IS NOT NULL OR s.user_id IS NOT NULL
    """
    return Selection(query, {"ids": list(ids)})


async def stream(connection: AsyncConnection, selection: Selection) -> AsyncIterator[list[Case]]:
    """The selected users in batches of `BATCH`, in user id order."""
    ordered = f"{selection.query} ORDER BY COALESCE(l.id, s.user_id)"
    result = await connection.stream(text(ordered), selection.params)
    try:
        layout = _Layout.of(list(result.keys()))
        async for partition in result.partitions(BATCH):
            yield [layout.case(row) for row in partition]
    finally:  # the cursor goes with the last row: its tables can be truncated on this connection
        await result.close()


async def count(connection: AsyncConnection, selection: Selection) -> int:
    """How many users `stream` will yield (for a progress display; costs one more query)."""
    total = await connection.scalar(
        text(f"SELECT count(*) FROM ({selection.query}) selected"), selection.params
    )
    return int(total or 0)


@dataclass(frozen=True, slots=True)
class Probe:
    """Who else owns the remote user `sid` (or claims `identity`), other than user `me`?"""

    me: str
    sid: str | None
    identity: str | None


_OWNERS = text(
    f"""
    SELECT u.n, o.user_id FROM unnest(CAST(:me AS text[]), CAST(:sids AS text[]),
        CAST(:identities AS text[])) WITH ORDINALITY AS u(me, sid, identity, n)
    CROSS JOIN LATERAL (
        SELECT min(user_id) AS user_id FROM (
            SELECT o.user_id FROM sync_state o WHERE o.remote_sid = u.sid
            UNION ALL SELECT o.user_id FROM sync_state o WHERE o.retired_sid = u.sid
            UNION ALL SELECT o.user_id FROM sync_state o
                WHERE o.identity = u.identity AND {claims_identity("o")}
        ) found WHERE found.user_id <> u.me) o
    WHERE o.user_id IS NOT NULL
    """
)
"""Three lookups by index (remote_sid, retired_sid, the claimed identity): an `OR` of them
would read the whole table for every probe."""


async def owners(connection: AsyncConnection, probes: Sequence[Probe]) -> list[UserId | None]:
    """For each probe, the other user that owns that remote user or claims that identity."""
    if not probes:
        return []
    params = {
        "me": [p.me for p in probes],
        "sids": [p.sid for p in probes],
        "identities": [p.identity for p in probes],
    }
    found = {int(n): UserId(user_id) for n, user_id in await connection.execute(_OWNERS, params)}
    return [found.get(n) for n in range(1, len(probes) + 1)]


async def stream_orphans(
    connection: AsyncConnection, *, source: Source
) -> AsyncIterator[list[RemoteUser]]:
    """Remote users no internal user has the identity of and no state owns."""
    query = f"""
        SELECT {rows.select_list("r", rows.REMOTE_COLUMNS, "r_")} FROM {REMOTE_TABLE} r
        WHERE NOT EXISTS (SELECT 1 FROM {source.relation} l WHERE l.identity::text = r.identity)
          AND NOT EXISTS (SELECT 1 FROM sync_state s WHERE s.remote_sid = r.sid)
          AND NOT EXISTS (SELECT 1 FROM sync_state s WHERE s.retired_sid = r.sid)
          AND NOT EXISTS (SELECT 1 FROM sync_state s WHERE s.identity = r.identity
                          AND {claims_identity("s")})
        ORDER BY r.identity
    """
    result = await connection.stream(text(query))
    async for partition in result.partitions(BATCH):
        yield [u for u in (rows.remote_user(row, 0) for row in partition) if u is not None]


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each group of columns starts in the rows of one result (remote ones are optional)."""

    local: int
    state: int
    tail: int
    remote: int | None
    previous: int | None
    holder: int | None

    @classmethod
    def of(cls, keys: Sequence[str]) -> _Layout:
        at = {key: position for position, key in enumerate(keys)}
        return cls(
            local=at["l_id"],
            state=at["s_user_id"],
            tail=at["s_version"],
            remote=at.get("r_sid"),
            previous=at.get("p_sid"),
            holder=at.get("holder"),
        )

    def case(self, row: rows.Values) -> Case:
        remote, previous, holder = self.remote, self.previous, self.holder
        version, fingerprint, copies, holders, due = row[self.tail : self.tail + 5]
        return Case(
            local=rows.local_user(row, self.local),
            state=rows.sync_state(row, self.state),
            remote=None if remote is None else rows.remote_user(row, remote),
            previous=None if previous is None else rows.remote_user(row, previous),
            fingerprint=fingerprint,
            version=version,
            copies=int(copies or 1),
            holders=1 if holders is None else int(holders),
            holder=None if holder is None or row[holder] is None else UserId(row[holder]),
            stale=bool(row[holder + 1]) if holder is not None else False,
            due=bool(due),
        )
