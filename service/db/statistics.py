"""The planner's picture of `sync_state`, kept current while a run grows it.

The statements a run repeats for a batch of users at a time (the lease, `gather.named`) look
the users' state up by key, and Postgres picks how from its statistics of the table. A first
run grows `sync_state` from nothing to every user. Autovacuum analyzes a table a minute or more
after it grew, or never where it is off; until then the plans (the generic plans a connection
caches too) are those of an empty table: a scan of the whole table per batch, which makes the
run quadratic (a first, linking run over 100,000 users with autovacuum off spent 69 % of its
time in the lease statement, 45 ms a batch at the end).

So a run that adds state rows analyzes the table each time it has added as many as the
statistics knew of (at least `AT_LEAST`): about ten ANALYZEs over a first run of a million
users, each of which also makes Postgres plan the cached statements again. ANALYZE reads a
sample and blocks no reader or writer. Only the table's owner may analyze it: a database user
that is not says so in the log (`sync_state not analyzed`) each time it would have, and the
run goes on with the plans it has.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = structlog.get_logger(__name__)

AT_LEAST = 1_000
"""Rows a run adds before it analyzes the table, however small the table was."""


@dataclass(slots=True)
class StateGrowth:
    """The rows one run added to `sync_state` since the table was last analyzed."""

    known: int | None = None
    """The rows the statistics describe (read at the first growth)."""
    added: int = 0

    async def grew(self, sessions: async_sessionmaker[AsyncSession], rows: int) -> None:
        """`rows` new state rows were committed; analyze once they outgrow the statistics."""
        if rows <= 0:
            return
        known = self.known if self.known is not None else await described_rows(sessions)
        self.known, self.added = known, self.added + rows
        if self.added < max(AT_LEAST, known):
            return
        if not await analyze(sessions):
            log.warning(
                "sync_state not analyzed: the database user does not own it",
                hint="run the service as the role that ran `user-sync migrate` (the tables'"
                " owner), or keep autovacuum on: without fresh statistics a first run slows"
                " down as it grows the table",
            )
            self.known, self.added = known + self.added, 0  # said again as the table doubles
            return
        self.known, self.added = await described_rows(sessions), 0


async def described_rows(sessions: async_sessionmaker[AsyncSession]) -> int:
    """The rows of `sync_state` its statistics describe (0: never analyzed)."""
    async with sessions() as session:
        rows = await session.scalar(
            text("SELECT reltuples FROM pg_class WHERE oid = 'sync_state'::regclass")
        )
    return max(0, int(rows or 0))


MAY_ANALYZE = """
    SELECT pg_has_role(current_user, c.relowner, 'USAGE')
        OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
    FROM pg_class c WHERE c.oid = 'sync_state'::regclass
"""
"""Whether Postgres lets this user analyze `sync_state` (its owner, a member of the owning
role, or a superuser); otherwise ANALYZE only warns, and nobody would see it."""


async def analyze(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """ANALYZE `sync_state`; False if this database user may not."""
    async with sessions.begin() as session:
        if not await session.scalar(text(MAY_ANALYZE)):
            return False
        await session.execute(text("ANALYZE sync_state"))
    return True
