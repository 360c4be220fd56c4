"""Reading both sides for a reconcile, set-based, in Postgres.

A full run COPYs every remote user into a temporary table on the run's own connection, then
one query joins the source, `sync_state` and the remote users and streams per-user rows in
batches: memory stays bounded by the batch, not by the user count. Incremental and targeted
runs select only the users that need looking at; the fingerprint of each source row is
computed here, in SQL, from the same row the planner sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.db import rows
from service.domain.users import LocalUser, RemoteUser, SyncState

BATCH = 1000
FINGERPRINT = (
    "md5(jsonb_build_array(l.identity, l.friendly_name, l.role, l.attributes, l.active)::text)"
)
REMOTE_TABLE = "remote_users_snapshot"
UNCONFIRMED = "('pending', 'failed', 'quarantined')"
"""States whose create may have happened unrecorded (see `domain.users.claims`)."""


@dataclass(frozen=True, slots=True)
class Gathered:
    """One internal user as both sides and our state see it (remote sides may be unread)."""

    local: LocalUser | None
    state: SyncState | None
    remote: RemoteUser | None
    previous: RemoteUser | None
    fingerprint: str | None


def _source(source_table: str) -> str:
    """Settings validated the name; quote each part so a view name is taken literally."""
    return ".".join(f'"{part}"' for part in source_table.split("."))


def _local_and_state(source_table: str) -> str:
    return f"""
        {rows.select_list("l", rows.LOCAL_COLUMNS, "l_")},
        {rows.select_list("s", rows.STATE_COLUMNS, "s_")},
        CASE WHEN l.id IS NULL THEN NULL ELSE {FINGERPRINT} END AS fingerprint
        FROM {_source(source_table)} l FULL JOIN sync_state s ON s.user_id = l.id"""


async def create_remote_snapshot(connection: AsyncConnection) -> None:
    await connection.execute(
        text(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {REMOTE_TABLE} ("
            " sid text PRIMARY KEY, identity text NOT NULL, friendly_name text,"
            " role_sid text, attributes text) ON COMMIT PRESERVE ROWS"
        )
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


async def index_remote_snapshot(connection: AsyncConnection) -> int:
    await connection.execute(
        text(f"CREATE INDEX IF NOT EXISTS {REMOTE_TABLE}_identity ON {REMOTE_TABLE} (identity)")
    )
    await connection.execute(text(f"ANALYZE {REMOTE_TABLE}"))
    count = await connection.scalar(text(f"SELECT count(*) FROM {REMOTE_TABLE}"))
    return int(count or 0)


@dataclass(frozen=True, slots=True)
class Selection:
    """The users one run looks at: a query over the source and `sync_state` (and, for a full
    run, the remote snapshot) yielding one row per user, with its parameters."""

    query: str
    params: dict[str, object]


def full(*, source_table: str) -> Selection:
    """Every internal user (and every state of a removed one) with its remote users."""
    query = f"""
        SELECT {_local_and_state(source_table)}
        LEFT JOIN {REMOTE_TABLE} r1 ON r1.identity = l.identity
        LEFT JOIN {REMOTE_TABLE} r2 ON r2.sid = s.remote_sid
        LEFT JOIN {REMOTE_TABLE} r4 ON s.remote_sid IS NULL
            AND s.status IN {UNCONFIRMED} AND r4.identity = s.identity
        LEFT JOIN {REMOTE_TABLE} r3 ON r3.sid = s.retired_sid
        CROSS JOIN LATERAL (SELECT COALESCE(r2.sid, r4.sid) AS sid) k
        CROSS JOIN LATERAL (SELECT
            CASE WHEN l.id IS NULL THEN k.sid ELSE r1.sid END AS cur,
            CASE WHEN l.id IS NOT NULL AND k.sid IS DISTINCT FROM r1.sid
                 THEN COALESCE(k.sid, r3.sid) ELSE r3.sid END AS prev) pick
        LEFT JOIN {REMOTE_TABLE} r ON r.sid = pick.cur
        LEFT JOIN {REMOTE_TABLE} p ON p.sid = pick.prev
        WHERE NOT (l.id IS NULL AND s.status = 'deleted' AND k.sid IS NULL AND r3.sid IS NULL)
    """
    query = query.replace(
        "SELECT ",
        f"SELECT {rows.select_list('r', rows.REMOTE_COLUMNS, 'r_')}, "
        f"{rows.select_list('p', rows.REMOTE_COLUMNS, 'p_')}, ",
        1,
    )
    return Selection(query, {})


def incremental(*, source_table: str, now: datetime) -> Selection:
    """Users whose source row changed since last applied, removed ones, and due retries."""
    query = f"""
        SELECT {_local_and_state(source_table)}
        WHERE (l.id IS NOT NULL AND s.user_id IS NULL)
           OR (l.id IS NOT NULL AND {FINGERPRINT} IS DISTINCT FROM s.fingerprint
               AND (s.status NOT IN ('failed', 'quarantined')
                    OR {FINGERPRINT} IS DISTINCT FROM s.attempted_fingerprint))
           OR (l.id IS NULL AND s.status <> 'deleted')
           OR (s.status IN ('failed', 'quarantined', 'pending') AND s.next_attempt_at <= :now)
           OR s.retired_sid IS NOT NULL
    """
    return Selection(query, {"now": now})


def named(*, source_table: str, targets: Sequence[str]) -> Selection:
    """The users named by internal id or identity (present in the source or only in state)."""
    query = f"""
        SELECT {_local_and_state(source_table)}
        WHERE l.id = ANY(:targets) OR l.identity = ANY(:targets)
           OR s.user_id = ANY(:targets)
           OR (l.id IS NULL AND s.identity = ANY(:targets))
    """
    return Selection(query, {"targets": list(targets)})


async def stream(
    connection: AsyncConnection, selection: Selection
) -> AsyncIterator[list[Gathered]]:
    """The selected users in batches of `BATCH`, in user id order."""
    ordered = f"{selection.query} ORDER BY COALESCE(l.id, s.user_id)"
    result = await connection.stream(text(ordered), selection.params)
    layout = _Layout.of(list(result.keys()))
    async for partition in result.partitions(BATCH):
        yield [layout.gathered(row) for row in partition]


async def count(connection: AsyncConnection, selection: Selection) -> int:
    """How many users `stream` will yield (for a progress display; costs one more query)."""
    total = await connection.scalar(
        text(f"SELECT count(*) FROM ({selection.query}) selected"), selection.params
    )
    return int(total or 0)


async def stream_orphans(
    connection: AsyncConnection, *, source_table: str
) -> AsyncIterator[list[RemoteUser]]:
    """Remote users no internal user has the identity of and no state links."""
    query = f"""
        SELECT {rows.select_list("r", rows.REMOTE_COLUMNS, "r_")} FROM {REMOTE_TABLE} r
        WHERE NOT EXISTS (SELECT 1 FROM {_source(source_table)} l WHERE l.identity = r.identity)
          AND NOT EXISTS (SELECT 1 FROM sync_state s WHERE s.remote_sid = r.sid)
          AND NOT EXISTS (SELECT 1 FROM sync_state s WHERE s.retired_sid = r.sid)
          AND NOT EXISTS (SELECT 1 FROM sync_state s WHERE s.remote_sid IS NULL
                          AND s.status IN {UNCONFIRMED} AND s.identity = r.identity)
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
    fingerprint: int
    remote: int | None
    previous: int | None

    @classmethod
    def of(cls, keys: Sequence[str]) -> _Layout:
        at = {key: position for position, key in enumerate(keys)}
        return cls(
            local=at["l_id"],
            state=at["s_user_id"],
            fingerprint=at["fingerprint"],
            remote=at.get("r_sid"),
            previous=at.get("p_sid"),
        )

    def gathered(self, row: rows.Values) -> Gathered:
        remote, previous = self.remote, self.previous
        return Gathered(
            local=rows.local_user(row, self.local),
            state=rows.sync_state(row, self.state),
            remote=None if remote is None else rows.remote_user(row, remote),
            previous=None if previous is None else rows.remote_user(row, previous),
            fingerprint=row[self.fingerprint],
        )
