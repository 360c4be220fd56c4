"""Both sides of the users a run looks at, batch by batch: the source and our state from
Postgres, and the remote users from the API.

A full run lists every remote user first, COPYing the pages into a snapshot table on the run's
own connection (read ahead, so paging never waits on Postgres), and lets Postgres join the three;
incremental and targeted runs select only their users and fetch each one's remote side (and the
user it replaces, for a rename) by sid or identity. The progress of a run moves here: the
listing, then the count of users it will look at (only when someone watches).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from service.conversations import errors as api
from service.conversations.client import ConversationsClient
from service.db import gather
from service.db.gather import Gathered
from service.domain.users import UNCONFIRMED, RemoteUser, SyncState, SyncStatus
from service.reconcile.progress import Phase, RunProgress
from service.reconcile.readahead import read_ahead
from service.reconcile.run import RunReport, RunRequest, Scope

log = structlog.get_logger(__name__)

READ_AHEAD = 64
"""List pages read ahead of the COPY into Postgres (64 pages of 50 or 100 users)."""


class Sides:
    def __init__(
        self,
        client: ConversationsClient,
        *,
        source_table: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._source_table = source_table
        self._clock = clock

    async def batches(
        self, connection: AsyncConnection, report: RunReport
    ) -> AsyncIterator[list[Gathered]]:
        """The users of `report.request`'s scope with both sides read, in batches."""
        request, progress = report.request, report.progress
        if request.scope is Scope.FULL:
            report.remote_total = await self._snapshot_remote(connection, progress)
        selection = self._selection(request)
        progress.phase = Phase.RECONCILING
        if progress.watched:
            progress.total = await gather.count(connection, selection)
        async for batch in gather.stream(connection, selection):
            yield batch if request.scope is Scope.FULL else await self._read_remote(batch)

    def _selection(self, request: RunRequest) -> gather.Selection:
        source = self._source_table
        if request.scope is Scope.FULL:
            return gather.full(source_table=source)
        if request.scope is Scope.INCREMENTAL:
            return gather.incremental(source_table=source, now=self._clock())
        return gather.named(source_table=source, targets=request.targets)

    async def _snapshot_remote(self, connection: AsyncConnection, progress: RunProgress) -> int:
        progress.phase = Phase.LISTING
        await gather.create_remote_snapshot(connection)
        pages = read_ahead(self._client.iter_user_pages(), rows=gather.BATCH, depth=READ_AHEAD)
        async with contextlib.aclosing(pages) as chunks:
            async for chunk in chunks:
                await gather.copy_remote_page(connection, chunk)
                progress.listed += len(chunk)
        total = await gather.index_remote_snapshot(connection)
        log.info("remote users listed", count=total)
        return total

    async def _read_remote(self, batch: list[Gathered]) -> list[Gathered]:
        """Incremental and targeted runs fetch each user's remote side (reads are not limited)."""
        return list(await asyncio.gather(*(self._fetch_sides(g) for g in batch)))

    async def _fetch_sides(self, g: Gathered) -> Gathered:
        linked = _linked_key(g.state)
        current = await self._fetch(g.local.identity if g.local else linked)
        previous = None
        for key in (linked, g.state.retired_sid if g.state else None):
            known = current is not None and key in (current.sid, current.identity)
            if key and not known and previous is None:
                previous = await self._fetch(key)
        return replace(g, remote=current, previous=previous)

    async def _fetch(self, sid_or_identity: str | None) -> RemoteUser | None:
        if not sid_or_identity:
            return None
        try:
            return await self._client.fetch_user(sid_or_identity)
        except api.NotFound:
            return None


def _linked_key(state: SyncState | None) -> str | None:
    """How to fetch the remote user our state refers to: its sid, or the identity of a create
    that may have happened unrecorded."""
    if state is None or state.status is SyncStatus.DELETED:
        return None
    if state.remote_sid is None and state.status in UNCONFIRMED:
        return state.identity
    return state.remote_sid
