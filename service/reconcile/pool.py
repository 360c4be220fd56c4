"""Applying users' plans concurrently, a bounded number at a time, across batches.

Gathering streams users in batches, but applying them batch by batch (`asyncio.gather` per
batch) stalls at every boundary: the last slow user of a batch holds back the first of the
next, and the write pace drops while the batch is recorded. `ApplyPool` keeps up to `size`
users in progress whatever batch they came from; the runner records outcomes as they finish.
Each finished user counts in the run's progress at once, before it is recorded.

A user is leased (`db.leases`) just before its work starts, not when it was planned: the pool
leases a few users ahead of its free slots, in one statement (see `submit`), so the plan a call
is made from is checked against the database a moment before the call. A user refused a lease
finishes at once as `deferred`.

An exception from the executor is a bug: the pool stops taking users and raises it at the next
`submit`, `finished` or `drain`; `close` cancels whatever is still running and hands over what
had finished.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

from service.conversations.transport import Calls, watching
from service.db.leases import Claim, Lease, LeaseRequest, OrphanCheck
from service.domain.actions import Action, CreateUser, LinkUser, UpdateUser
from service.domain.cases import Case
from service.domain.outcome import Outcome, deferred
from service.reconcile.executor import Executor
from service.reconcile.progress import RunProgress

TakeLeases = Callable[[Sequence[Lease]], Awaitable[set[str]]]
"""Take the leases that can be taken now; the keys leased."""


@dataclass(frozen=True, slots=True)
class Work:
    """One user's actions, and the lease to take before applying them (for a remote user
    nobody here knows: the check that it is still so)."""

    case: Case
    actions: tuple[Action, ...]
    lease: Lease | None

    @classmethod
    def of(cls, case: Case, actions: tuple[Action, ...]) -> Work:
        return cls(case, actions, lease_for(case, actions))


class ApplyPool:
    def __init__(
        self,
        executor: Executor,
        *,
        size: int,
        progress: RunProgress,
        lease: TakeLeases,
        keeps_started: bool = False,
    ) -> None:
        self.executor = executor
        self._progress = progress
        self._lease = lease
        self._slots = asyncio.Semaphore(size)
        self._chunk = max(1, size)
        self._low = size // 2
        self._running: dict[asyncio.Task[Outcome], Calls] = {}
        self._finished: list[Outcome] = []
        self._keeps_started = keeps_started
        self._started: list[tuple[Case, Calls]] = []
        """With `keeps_started` (a pool of deletions, which the guard bounds): the users whose
        work started, each with whether a write of it was sent. A pass's pool keeps none: it
        holds a pool's worth of users whatever the size of the source."""
        self._error: BaseException | None = None

    async def submit(self, work: Sequence[Work]) -> None:
        """Start applying these users, each once a slot is free and its lease is taken.

        Leases are taken a little ahead, a pool's worth in one statement, whenever fewer than
        half the pool's size are leased and waiting for a slot: leasing costs one statement per
        pool of users, off the write path at high throughput (bench/sync.py ceiling), while a
        user waits at most for one pool of users to start between its lease and its call.
        """
        pending, ready = deque(work), deque[Work]()
        while pending or ready:
            if pending and len(ready) <= self._low:
                await self._lease_ahead(pending, ready)
                continue
            await self._take_slot()
            self._start(ready.popleft())

    async def _lease_ahead(self, pending: deque[Work], ready: deque[Work]) -> None:
        chosen = [pending.popleft() for _ in range(min(self._chunk, len(pending)))]
        requests = [w.lease for w in chosen if w.lease is not None]
        leased = await self._lease(requests) if requests else set()
        for item in chosen:
            if item.lease is None or item.lease.key in leased:
                ready.append(item)
            else:
                self._finish(deferred(item.case))

    async def _take_slot(self) -> None:
        await self._slots.acquire()
        if self._error is not None:
            self._slots.release()
            raise self._error

    @property
    def started(self) -> list[Case]:
        """With `keeps_started`: the users a write was sent for (its call may have been made,
        even if cancelled since); a user whose work waited for its pacer's slot when it was
        cancelled made no call."""
        return [case for case, calls in self._started if calls.sent]

    def _start(self, work: Work) -> None:
        calls = Calls()
        if self._keeps_started:
            self._started.append((work.case, calls))
        task = asyncio.create_task(self._apply(work, calls))
        self._running[task] = calls
        leased = isinstance(work.lease, LeaseRequest)
        task.add_done_callback(partial(self._done, leased=leased))

    async def _apply(self, work: Work, calls: Calls) -> Outcome:
        with watching(calls):
            return await self.executor.apply(work.case, work.actions)

    def finished(self) -> list[Outcome]:
        """The outcomes finished since the last call."""
        if self._error is not None:
            raise self._error
        outcomes, self._finished = self._finished, []
        return outcomes

    async def drain(self) -> list[Outcome]:
        """Wait for every user in progress; the outcomes not taken yet."""
        while self._running:
            await asyncio.wait(set(self._running))
        return self.finished()

    async def close(self) -> list[Outcome]:
        """The run is over (failed or stopped): no further call is sent. The users whose
        write is on its way are waited for (its answer is recorded, not lost while the call
        may have been made); the others are cancelled. The outcomes that finished and were
        not taken yet, which must be recorded all the same, whatever the run ended with."""
        for task, calls in self._running.items():
            calls.stopped = True
            if not calls.sent:
                task.cancel()
        if self._running:
            await asyncio.wait(set(self._running))
        outcomes, self._finished = self._finished, []
        return outcomes

    def _done(self, task: asyncio.Task[Outcome], *, leased: bool) -> None:
        self._running.pop(task, None)
        self._slots.release()
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._error = self._error or error
        else:
            self._finish(replace(task.result(), leased=leased))

    def _finish(self, outcome: Outcome) -> None:
        self._finished.append(outcome)
        self._progress.done += 1


def lease_for(g: Case, actions: Sequence[Action]) -> Lease | None:
    """The lease to take before applying `actions` (for a remote user nobody here knows, the
    check that nobody knows it yet)."""
    user_id = g.user_id
    if user_id is None:
        remote = g.remote
        return None if remote is None else OrphanCheck(sid=remote.sid, identity=remote.identity)
    return LeaseRequest(
        user_id=user_id,
        fingerprint=g.fingerprint,
        version=g.version,
        claim=_claim(g, actions[0]) if actions else None,
    )


def _claim(g: Case, action: Action) -> Claim | None:
    """What the user's state must hold before the first call: a create's identity (with the
    renamed user's old sid to retire), or a remote user it adopts."""
    if isinstance(action, CreateUser):
        return Claim(identity=action.identity, sid=None, retired_sid=action.retires)
    linked = g.state.remote_sid if g.state is not None else None
    if isinstance(action, UpdateUser | LinkUser) and action.sid != linked:
        return Claim(identity=action.identity, sid=action.sid, retired_sid=action.retires)
    return None
