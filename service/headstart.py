"""A full sync's head start: the remote listing begins while the application loads.

`user-sync sync --full` (the default scope) used to spend about a second before its first list
request: the imports (SQLAlchemy alone a third of a second), the engine, the migration check,
opening the run. Yet a full run is mostly its listing: sequential pages, read-only. So this
command builds its client as soon as the settings and aiohttp are loaded, learns the Service
(if `USERSYNC_SERVICE_SID` does not name it) and starts the listing (`reconcile.readahead`:
pages read ahead into a bounded queue, at most `READ_AHEAD` pages, then the listing waits),
then imports the rest of the application in a thread while the event loop pages, and runs the
command as any other (`service.commands`), handing the run that listing. Other commands, and
runs of changed or named users, which list nothing, start as before.

What does not change:
- nothing is written, remote or local, before the run is opened and holds its lock: the
  listing only reads, and its pages wait in memory until the run's own connection COPYs them;
- the run plans from one whole listing, begun for it by this command and taken once; its
  `listed_since` is when that listing began, in the database's clock (`reconcile.sides`), so
  users whose state another run wrote since then are read again, as in any full run;
- a failure of the database side ends the command with the error and exit code it always had:
  the listing is cancelled; a failure of the listing (or of learning the Service) waits for the
  database side and is raised where it always was: in the run, recorded, or `ServiceUnresolved`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from service.cli import loaded
from service.config import Settings
from service.conversations.client import ConversationsClient
from service.conversations.ratelimit import WriteLimiter
from service.domain.users import RemoteUser
from service.logs import configure_logging
from service.reconcile.readahead import ReadAhead
from service.remote import conversations_client, write_limiter
from service.shutdown import Shutdown


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The full sync, under its `Shutdown` like any command (`service.commands.run`)."""
    configure_logging(settings)
    shutdown = Shutdown(deadline=settings.shutdown_grace)
    try:
        return asyncio.run(shutdown.run(_sync(args, settings)))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # named as any command's failure (commands is loaded by then)
        from service import commands  # noqa: PLC0415

        return commands.failed(args.command, e)


async def _sync(args: argparse.Namespace, settings: Settings) -> int:
    async with HeadStart.begun(settings) as head:
        commands = await asyncio.to_thread(importlib.import_module, "service.commands")
        loaded()  # the collector, off while modules load (`service.cli`)
        code: int = await commands.sync(args, settings, head_start=head)
        return code


@dataclass(frozen=True, slots=True)
class Listed:
    """The Service the head start learnt, its client and the listing it began with it."""

    service_sid: str
    client: ConversationsClient
    listing: ReadAhead[RemoteUser]


class HeadStart:
    """The session, the pacer and, in a task, the Service's client and listing (see the
    module doc); `begun` makes one and closes what its run did not take."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.session = session
        self.limiter: WriteLimiter = write_limiter(settings)
        self._task = asyncio.create_task(self._begin(), name="head-start")

    @classmethod
    @asynccontextmanager
    async def begun(cls, settings: Settings) -> AsyncIterator[HeadStart]:
        settings.credentials()  # fail early, naming the settings, before any call
        async with aiohttp.ClientSession() as session:
            head = cls(settings, session)
            try:
                yield head
            finally:
                await head._close()

    async def listed(self) -> Listed | None:
        """What `_begin` found: None if the account names no default Service; raises what
        asking for it raised (a `ConversationsError`: the caller names it, `service.wiring`)."""
        return await self._task

    async def _begin(self) -> Listed | None:
        sid = self.settings.service_sid
        if sid is None:
            default = conversations_client(self.session, self.settings, limiter=self.limiter)
            sid = await default.fetch_default_service_sid()
            if sid is None:
                return None
        client = conversations_client(
            self.session, self.settings, service_sid=sid, limiter=self.limiter
        )
        listing = ReadAhead(client.iter_user_pages(), calls_before=client.stats.total)
        return Listed(sid, client, listing)

    async def _close(self) -> None:
        """Cancel what is still going: the learning of the Service, or the listing."""
        self._task.cancel()
        await asyncio.wait([self._task])
        if self._task.cancelled() or self._task.exception() is not None:
            return
        if (listed := self._task.result()) is not None:
            await listed.listing.close()
