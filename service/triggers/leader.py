"""Leader election: one replica per Service schedules runs and makes API writes.

The lock is named for the Service itself (`user-sync:leader:<IS… sid>`, the key `run()` is
given), never for the credentials a replica holds, so replicas of one Service always compete for
the same lock; the composition root learns the Service before a replica may compete at all.
Each replica keeps one dedicated database session (`db.channel`). A standby tries the leader
advisory lock every `leader_retry_interval` seconds; the replica that gets it LISTENs for events
on the same session and runs its `Duties`. The lock lives exactly as long as the session, so a
leader that is killed (even with SIGKILL) or cut off from Postgres releases it, and a standby
takes over within one retry interval of Postgres noticing. The leader pings its session every
`leader_check_interval` seconds and steps down at once (cancelling its duties) when the session
is gone, then reconnects with jittered backoff. LISTEN shares the leader's session on purpose:
events matter only to the leader, and losing one means losing the other, so there is one thing
to watch and one recovery path.

Before competing, each new session proves that it stays one Postgres session (`db.affinity`):
behind a pooler in transaction mode the lock and the LISTEN would silently stay on a backend
other clients use. A replica whose session fails the proof refuses to lead, says why in one
log line (naming `USERSYNC_LEADER_DATABASE_URL`) and in `/readyz`, and tries again every
`REFUSED_RETRY` seconds or so (a pooler taken out of the path is noticed; a new URL needs a
restart, like any setting).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from enum import StrEnum

import structlog

from service.db import affinity, channel
from service.metrics import Metrics
from service.reconcile.run import RunRequest
from service.triggers.duties import Duties
from service.wiring import LEADER_URL

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT = 5.0
BACKOFF_BASE, BACKOFF_MAX = 0.2, 5.0
STEADY_TERM = 30.0
"""Seconds a term must have lasted for the backoff to start over: terms that end as they begin
(duties that fail at once, on a database never migrated, say) back off as failures do."""
REFUSED_RETRY = 30.0
"""Seconds (at most; jittered down to half) before a refused session is tried again."""


class Standing(StrEnum):
    """A replica's part in leader election (`Leadership.role`); not a Twilio Role."""

    LEADER = "leader"
    STANDBY = "standby"


class Standby(Exception):
    """This replica does not lead now: only the leader starts runs."""


class Leadership:
    def __init__(
        self,
        *,
        database_url: str,
        main_url: str | None = None,
        metrics: Metrics,
        retry_interval: float,
        check_interval: float,
        application_name: str = "user-sync-leader",
    ) -> None:
        self._url = database_url
        self._main_url = main_url
        """The main URL when the session URL is another one: both must reach one database."""
        self._metrics = metrics
        self._retry = retry_interval
        self._check = check_interval
        self._application_name = application_name
        self.role = Standing.STANDBY
        self.duties: Duties | None = None
        self._work: asyncio.Task[None] | None = None
        self._stopping = False
        self._failures = 0
        self._led_at: float | None = None
        self.terms = 0
        """Terms this replica has led (began as the leader)."""
        self.problem: str | None = None
        """Why this replica cannot lead, if so: its session cannot connect, does not stay one
        session, or reaches another database than the main URL."""

    async def run(self, *, key: str, duties: Callable[[], Duties]) -> None:
        """Stand by, lead, step down, again, until `stop()`; never raises for a lost database.

        `key` is the leader lock; `duties` makes a fresh `Duties` for each term as leader."""
        while not self._stopping:
            try:
                connection = await channel.connect(
                    self._url,
                    application_name=self._application_name,
                    connect_timeout=CONNECT_TIMEOUT,
                )
            except channel.CONNECTION_ERRORS as e:
                self.problem = self._unreachable(e)
                await self._back_off(self.problem)
                continue
            try:
                problem = await self._term(connection, key=key, duties=duties)
            except channel.CONNECTION_ERRORS as e:
                problem = f"database session lost: {_describe(e)}"
            except Exception as e:  # a bug: keep the replica alive, say so loudly, try again
                log.exception("leadership failed")
                problem = f"leadership failed: {_describe(e)}"
            finally:
                channel.drop(connection)
            if problem is not None and not self._stopping:
                await (self._refused() if problem is self.problem else self._back_off(problem))

    async def start_run(self, request: RunRequest) -> int:
        """Start an on-demand run on this leader's lane: its id once recorded; `Standby` when
        this replica does not lead (and what the lane raises: RunInProgress, LaneClosed)."""
        if self.duties is None:
            raise Standby("this replica is a standby; the leader starts runs")
        return await self.duties.start_run(request)

    def stop_intake(self) -> None:
        """Stop taking work: no new term, no new runs or claims; runs in flight go on."""
        self._stopping = True
        if self.duties is not None:
            self.duties.stop_intake()

    async def stop(self, *, grace: float) -> None:
        """Stop intake and give runs in flight `grace` seconds to finish; cancel the task next."""
        self.stop_intake()
        if self._work is not None:
            await asyncio.wait({self._work}, timeout=grace)

    async def _term(
        self, connection: channel.Connection, *, key: str, duties: Callable[[], Duties]
    ) -> str | None:
        """Prove the session, wait for the lock, then lead; returns why the term ended badly
        (`self.problem` itself when the session failed the proof), if it did."""
        self.problem = await self._session_refused(connection)
        if self.problem is not None:
            return self.problem
        while not await self._try_lock(connection, key):
            if self._stopping:
                return None
            await asyncio.sleep(self._retry)
        return None if self._stopping else await self._lead(connection, key=key, duties=duties())

    def _unreachable(self, error: BaseException) -> str:
        """Why this replica cannot lead now: its session cannot connect (shown by `/readyz`
        until a session connects and passes its checks)."""
        setting = "USERSYNC_DATABASE_URL" if self._main_url is None else LEADER_URL
        return f"the leader's database session cannot connect ({_describe(error)}): check {setting}"

    async def _session_refused(self, connection: channel.Connection) -> str | None:
        """Why this session must not lead: it does not stay one session, or it reached another
        database than the main URL's."""
        refused = await affinity.session_problem(
            connection, url=self._url, application_name=self._application_name
        )
        if refused is not None:
            return affinity.refusal(refused)
        if self._main_url is None:
            return None
        return await affinity.other_database(connection, main_url=self._main_url)

    async def _try_lock(self, connection: channel.Connection, key: str) -> bool:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await channel.try_lock(connection, key)

    async def _lead(
        self, connection: channel.Connection, *, key: str, duties: Duties
    ) -> str | None:
        lost = asyncio.Event()
        channel.on_lost(connection, lost.set)
        await channel.listen(connection, duties.wake)
        work = asyncio.create_task(duties.run(), name="duties")
        watch = asyncio.create_task(self._watch(connection, lost), name="leader-watch")
        self._become(Standing.LEADER, duties, work, key=key)
        try:
            done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
            return self._why_ended(work, done)
        finally:
            self._become(Standing.STANDBY, None, None, key=key)
            work.cancel()
            watch.cancel()
            await asyncio.wait({work, watch})

    async def _watch(self, connection: channel.Connection, lost: asyncio.Event) -> None:
        """Return as soon as the session is gone (noticed by the driver or by a failed ping)."""
        while not lost.is_set():
            try:
                async with asyncio.timeout(self._check):
                    await lost.wait()
            except TimeoutError:
                try:
                    async with asyncio.timeout(max(self._check, 1.0)):
                        await channel.ping(connection)
                except channel.CONNECTION_ERRORS as e:
                    log.warning("leader session failed its check", error=str(e))
                    return
        log.warning("leader session closed")

    def _why_ended(self, work: asyncio.Task[None], done: set[asyncio.Task[None]]) -> str | None:
        if work not in done:
            return "stepped down: the leader's database session is gone"
        if not work.cancelled() and (error := work.exception()) is not None:
            return f"stepped down: duties failed: {_describe(error)}"
        return None if self._stopping else "stepped down: duties ended unexpectedly"

    def _become(
        self, role: Standing, duties: Duties | None, work: asyncio.Task[None] | None, *, key: str
    ) -> None:
        self.role, self.duties, self._work = role, duties, work
        self._metrics.is_leader.set(1 if role is Standing.LEADER else 0)
        if role is Standing.LEADER:
            self._led_at, self.terms = time.monotonic(), self.terms + 1
        log.info("leader" if role is Standing.LEADER else "standby", role=role.value, key=key)

    async def _refused(self) -> None:
        delay = random.uniform(REFUSED_RETRY / 2, REFUSED_RETRY)
        log.error(f"refusing to lead: {self.problem}", retry_in=round(delay, 2))
        await asyncio.sleep(delay)

    async def _back_off(self, problem: str) -> None:
        led_at, self._led_at = self._led_at, None
        if led_at is not None and time.monotonic() - led_at >= STEADY_TERM:
            self._failures = 0  # a real term ended: its failure is the first of a new series
        self._failures += 1
        cap = min(BACKOFF_MAX, BACKOFF_BASE * 2**self._failures)
        delay = random.uniform(cap / 2, cap)
        log.warning(problem, retry_in=round(delay, 2))
        await asyncio.sleep(delay)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
