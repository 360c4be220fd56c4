"""Both sides of the users a run looks at, batch by batch: the source and our state from
Postgres, and the remote users from the API.

A full run lists every remote user first, COPYing the pages into a snapshot table on the run's
own connection (read ahead, so paging never waits on Postgres; the CLI's full sync starts that
listing before the run opens, `service.headstart`), and lets Postgres join the three;
incremental and targeted runs select only their users and fetch each one's remote side (and the
user it replaces, for a rename) by sid or identity, then ask Postgres which of those remote users
another user owns (`gather.owners`). A full run does the same for the users its snapshot may
be too old for (`Case.stale`: their state was written after the listing began), and always
reads them: finding drift is what a full run is for. Outside full runs, a linked user whose
state remembers its remote user as we last left it (`users.remembered`) is not read (when
`plan_from_state` is on): the answer of its write (a 404 if it is gone) tells the rest, and
drift on users that do not change is found by full runs. The
progress of a run moves here: the listing, then the count of users it will look at (only when
someone watches).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import cast

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from service.conversations import errors as api
from service.conversations.client import ConversationsClient
from service.db import gather
from service.db import unchanged as unchanged_sql
from service.db.gather import Probe
from service.db.source import Source
from service.db.unchanged import Unchanged
from service.domain.cases import Case
from service.domain.roles import RoleDirectory, names_a_role
from service.domain.runs import Scope
from service.domain.users import (
    UNCONFIRMED,
    RemoteUser,
    SyncState,
    SyncStatus,
    UserId,
    remembered,
)
from service.reconcile.progress import Phase, RunProgress
from service.reconcile.readahead import ReadAhead
from service.reconcile.run import RunReport, RunRequest

log = structlog.get_logger(__name__)

Listing = ReadAhead[RemoteUser]
"""The pages of a full run's listing, read ahead (`reconcile.readahead`)."""


class Sides:
    def __init__(
        self,
        client: ConversationsClient,
        *,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime],
        service_key: str,
        plan_from_state: bool = False,
        plan_context: str | None = None,
    ) -> None:
        """`plan_from_state`: outside full runs, plan a linked user from what its state
        remembers of the remote user instead of reading it (`users.remembered`).
        `plan_context`: what this process plans under (`domain.policy.plan_context`); full
        runs leave unchanged users to Postgres when every recent run planned under it too
        (`db.unchanged`). None: they never do."""
        self._plan_from_state = plan_from_state
        self._plan_context = plan_context
        self._client = client
        self._sessions = sessions
        self._clock = clock
        self._service_key = service_key

    async def batches(
        self,
        connection: AsyncConnection,
        report: RunReport,
        *,
        source: Source,
        request: RunRequest | None = None,
        roles: Callable[[], Awaitable[RoleDirectory]] | None = None,
        listing: Listing | None = None,
    ) -> AsyncIterator[list[Case]]:
        """The users of `request`'s scope (default: the report's) with both sides read; a
        full run's unchanged users are only counted (`db.unchanged`; `roles` reads the
        Service's roles if the source names any). `listing`: a full run's listing, started
        before the run opened (`service.headstart`); None: the run starts its own here."""
        request, progress = request or report.request, report.progress
        listed_since, set_aside = None, False
        if request.scope is Scope.FULL:
            listed_since, set_aside = await self._listed(connection, report, source, roles, listing)
        selection = await self._selection(
            connection, request, source, listed_since, set_aside, report=report
        )
        progress.phase = Phase.RECONCILING
        if progress.watched and progress.total is None:
            progress.total = await gather.count(connection, selection) + progress.done
        async for rows in gather.stream(connection, selection):
            batch = await self._completed(rows, full=listed_since is not None)
            if listed_since is not None and await self._overlapped(report, listed_since):
                batch = [replace(g, confirm=True) for g in batch]
            yield batch

    @property
    def plans_from_state(self) -> bool:
        """Whether runs may plan a linked user from what its state remembers."""
        return self._plan_from_state

    async def remembered_sides(self, selection: gather.Selection, *, limit: int) -> list[Case]:
        """The selected users (the first `limit`) whose state remembers their remote user,
        with that memory as their remote side, not read (`_remembered`), and the ownership
        rule applied; the others are left out (the caller's run reads them as usual). One
        pool connection at a time (the selection's, then the owners')."""
        found: list[Case] = []
        async with self._sessions() as session:
            rows = gather.stream(await session.connection(), selection)
            async with contextlib.aclosing(cast(AsyncGenerator[list[Case]], rows)) as batches:
                async for batch in batches:
                    found += [
                        replace(g, remote=m, previous=None, holder=None, remembered=True)
                        for g in batch
                        if (m := self._remembered(g)) is not None
                    ]
                    if len(found) >= limit:
                        break
        return await self._owned(found[:limit])

    async def named_batches(
        self, connection: AsyncConnection, *, source: Source, ids: list[UserId]
    ) -> AsyncIterator[list[Case]]:
        """The users with these internal ids, both sides read as a run of named users reads
        them (by exact id: an identity equal to one of them names nobody here)."""
        async for rows in gather.stream(connection, gather.named(source=source, ids=ids)):
            yield await self._completed(rows, full=False)

    async def _overlapped(self, report: RunReport, since: datetime) -> bool:
        async with self._sessions() as session:
            connection = await session.connection()
            return await gather.others_since(
                connection, service_key=self._service_key, run_id=report.run_id, since=since
            )

    async def _selection(
        self,
        connection: AsyncConnection,
        request: RunRequest,
        source: Source,
        listed_since: datetime | None,
        set_aside: bool,
        *,
        report: RunReport,
    ) -> gather.Selection:
        if listed_since is not None:
            return gather.full(source=source, listed_since=listed_since, set_aside=set_aside)
        if request.scope is Scope.INCREMENTAL:
            return gather.incremental(source=source, now=self._clock())
        named = await gather.named_ids(connection, source=source, targets=request.targets)
        if request is report.request:  # the run's own names, not a follow-up pass's ids
            report.named_nobody = named.nobody
        return gather.named(source=source, ids=named.ids)

    async def _unchanged(
        self,
        connection: AsyncConnection,
        source: Source,
        roles: Callable[[], Awaitable[RoleDirectory]] | None,
    ) -> Unchanged | None:
        """What lets a full run skip unchanged users, if it may (`db.unchanged`)."""
        context = self._plan_context
        if context is None or roles is None:
            return None
        if not await unchanged_sql.may_skip(
            connection, service_key=self._service_key, context=context
        ):
            return None
        names = await unchanged_sql.role_names(connection, source=source)
        named = any(names_a_role(n) for n in names)
        return Unchanged.resolving(names, await roles() if named else RoleDirectory.unread())

    async def _listed(
        self,
        connection: AsyncConnection,
        report: RunReport,
        source: Source,
        roles: Callable[[], Awaitable[RoleDirectory]] | None,
        listing: Listing | None,
    ) -> tuple[datetime, bool]:
        """A full run's listing in the snapshot table, and its unchanged users put aside as
        it comes (if the run may): when the listing began, and whether users were put aside."""
        if listing is None:  # the run lists from now on
            listed_since = await gather.database_now(connection)
            listing = ReadAhead(self._client.iter_user_pages())
        else:
            listed_since = await _began(connection, listing=listing)
        try:
            aside = await self._aside(connection, source, roles, listed_since)
            listed = await self._snapshot_remote(connection, report.progress, listing, aside)
        except BaseException:  # the listing's own failure is raised where it is taken
            await listing.close()
            raise
        report.listed(listed)
        if aside is None:
            return listed_since, False
        await gather.end_set_aside(connection)
        report.left_unchanged(aside.found)
        return listed_since, True

    async def _aside(
        self,
        connection: AsyncConnection,
        source: Source,
        roles: Callable[[], Awaitable[RoleDirectory]] | None,
        listed_since: datetime,
    ) -> _Aside | None:
        """While the listing runs: whether this run leaves unchanged users to Postgres and, if
        it does, the source read for it (`gather.begin_set_aside`)."""
        unchanged = await self._unchanged(connection, source, roles)
        if unchanged is None:
            return None
        await gather.begin_set_aside(connection, source=source)
        return _Aside(unchanged, listed_since)

    async def _snapshot_remote(
        self,
        connection: AsyncConnection,
        progress: RunProgress,
        listing: Listing,
        aside: _Aside | None,
    ) -> int:
        """COPY the listing into the snapshot table chunk by chunk, and put each chunk's
        unchanged users aside as it comes (off the critical path: the listing reads ahead
        meanwhile), so that only the last chunk's are left once the listing ends."""
        progress.phase = Phase.LISTING
        await gather.create_remote_snapshot(connection)
        async with contextlib.aclosing(listing.chunks(rows=gather.BATCH)) as chunks:
            async for chunk in chunks:
                await gather.copy_remote_page(connection, chunk)
                if aside is not None:
                    await aside.chunk(connection, [u.sid for u in chunk])
                progress.listed += len(chunk)
        total = await gather.finish_remote_snapshot(connection)
        log.info("remote users listed", count=total)
        return total

    async def _completed(self, batch: list[Case], *, full: bool) -> list[Case]:
        """Fetch the remote sides a batch lacks (all of them outside full runs, the stale
        users' in full runs; reads are not rate limited), then ask who owns what was fetched."""
        todo = [n for n, g in enumerate(batch) if not full or g.stale]
        if not todo:
            return batch
        fetched = await asyncio.gather(*(self._fetch_sides(batch[n], full=full) for n in todo))
        owned = await self._owned(fetched)
        done = list(batch)
        for n, g in zip(todo, owned, strict=True):
            done[n] = g
        return done

    async def _fetch_sides(self, g: Case, *, full: bool) -> Case:
        if not full and (memory := self._remembered(g)) is not None:
            return replace(g, remote=memory, previous=None, holder=None, remembered=True)
        linked = _linked_key(g.state)
        current = await self._fetch(g.local.identity if g.local else linked)
        previous = None
        for key in (linked, g.state.retired_sid if g.state else None):
            known = current is not None and key in (current.sid, current.identity)
            if key and not known and previous is None:
                previous = await self._fetch(key)
        return replace(g, remote=current, previous=previous, holder=None)

    def _remembered(self, g: Case) -> RemoteUser | None:
        """The remote user to plan from without reading it: what our state remembers, for a
        user that keeps its identity (a rename reads both sides). Whether runs may plan from
        memory at all (`plan_from_state`) is the caller's choice (`app`: never in merge mode,
        where only a read knows the keys others set)."""
        if not self._plan_from_state:
            return None
        known = remembered(g.state)
        if known is None or (g.local is not None and g.local.identity != known.identity):
            return None
        return known

    async def _owned(self, batch: list[Case]) -> list[Case]:
        """Apply the ownership rule to fetched sides: the holder of a local user's remote user,
        and no remote user found through an identity claim that another user owns by sid."""
        probes = [_probes(g) for g in batch]
        async with self._sessions() as session:
            connection = await session.connection()
            found = iter(await gather.owners(connection, [p for ps in probes for p in ps]))
        return [_owning(g, [next(found) for _ in ps]) for g, ps in zip(batch, probes, strict=True)]

    async def holder_of(self, me: UserId, remote: RemoteUser) -> UserId | None:
        """The other user that owns `remote` or claims its identity (`executor.HolderOf`)."""
        async with self._sessions() as session:
            connection = await session.connection()
            probe = Probe(me=me, sid=remote.sid, identity=remote.identity)
            return (await gather.owners(connection, [probe]))[0]

    async def _fetch(self, sid_or_identity: str | None) -> RemoteUser | None:
        if not sid_or_identity:
            return None
        try:
            return await self._client.fetch_user(sid_or_identity)
        except api.NotFound:
            return None


@dataclass(slots=True)
class _Aside:
    """A full run's users put aside so far (`db.unchanged`), chunk by chunk of its listing."""

    unchanged: Unchanged
    listed_since: datetime
    found: int = 0

    async def chunk(self, connection: AsyncConnection, sids: list[str]) -> None:
        self.found += await gather.set_aside(
            connection, listed_since=self.listed_since, unchanged=self.unchanged, sids=sids
        )


async def _began(connection: AsyncConnection, *, listing: Listing) -> datetime:
    """When `listing`, started before the run, began, in the database's clock (which writes
    `sync_state.updated_at`): its clock now, less the time since the listing began measured
    after the answer, so never later than the listing's first request: the users whose state
    was written since are read again (`Case.stale`), as in a run that lists after this."""
    now = await gather.database_now(connection)
    return now - timedelta(seconds=time.monotonic() - listing.started)


def _probes(g: Case) -> list[Probe]:
    """What to ask about `g`: for a local user, who else holds the remote user with its
    identity (or the identity itself); then, for a user reached only through our state's
    identity claim (`_linked_key`), whether another user owns it by sid."""
    asked = []
    if g.local is not None:
        sid = g.remote.sid if g.remote else None
        asked.append(Probe(me=g.local.id, sid=sid, identity=g.local.identity))
    claimed = _claimed_by_identity(g)
    if claimed is not None and g.state is not None:
        asked.append(Probe(me=g.state.user_id, sid=claimed.sid, identity=None))
    return asked


def _claimed_by_identity(g: Case) -> RemoteUser | None:
    state = g.state
    if state is None or state.remote_sid is not None or state.status not in UNCONFIRMED:
        return None
    found = g.previous if g.local is not None else g.remote
    return found if found is not None and found.identity == state.identity else None


def _owning(g: Case, owners: list[UserId | None]) -> Case:
    if g.local is not None:
        g = replace(g, holder=owners.pop(0))
    if owners and owners[0] is not None:  # another user owns what our claim found: not ours
        return replace(g, previous=None) if g.local is not None else replace(g, remote=None)
    return g


def _linked_key(state: SyncState | None) -> str | None:
    """How to fetch the remote user our state refers to: its sid, or the identity of a create
    that may have happened unrecorded."""
    if state is None or state.status is SyncStatus.DELETED:
        return None
    if state.remote_sid is None and state.status in UNCONFIRMED:
        return state.identity
    return state.remote_sid
