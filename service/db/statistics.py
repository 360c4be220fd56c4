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
sample, blocks no reader or writer, and where the role may not analyze the table Postgres only
warns (the run goes on with the plans it has).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
        if self.known is None:
            self.known = await described_rows(sessions)
        self.added += rows
        if self.added < max(AT_LEAST, self.known):
            return
        await analyze(sessions)
        self.known, self.added = await described_rows(sessions), 0


async def described_rows(sessions: async_sessionmaker[AsyncSession]) -> int:
    """The rows of `sync_state` its statistics describe (0: never analyzed)."""
    async with sessions() as session:
        rows = await session.scalar(
            text("SELECT reltuples FROM pg_class WHERE oid = 'sync_state'::regclass")
        )
    return max(0, int(rows or 0))


async def analyze(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        await session.execute(text("ANALYZE sync_state"))
