"""Applying users' plans concurrently, a bounded number at a time, across batches.

Gathering streams users in batches, but applying them batch by batch (`asyncio.gather` per
batch) stalls at every boundary: the last slow user of a batch holds back the first of the
next, and the write pace drops while the batch is recorded. `ApplyPool` keeps up to `size`
users in progress whatever batch they came from; the runner records outcomes as they finish.
Each finished user counts in the run's progress at once, before it is recorded.

An exception from the executor is a bug: the pool stops taking users and raises it at the next
`submit`, `finished` or `drain`; `close` cancels whatever is still running.
"""

from __future__ import annotations

import asyncio

from service.db.gather import Gathered
from service.domain.plan import Action
from service.reconcile.executor import Executor
from service.reconcile.outcome import Outcome
from service.reconcile.progress import RunProgress


class ApplyPool:
    def __init__(self, executor: Executor, *, size: int, progress: RunProgress) -> None:
        self.executor = executor
        self._progress = progress
        self._slots = asyncio.Semaphore(size)
        self._running: set[asyncio.Task[Outcome]] = set()
        self._finished: list[Outcome] = []
        self._error: BaseException | None = None

    async def submit(self, gathered: Gathered, actions: tuple[Action, ...]) -> None:
        """Start applying one user's actions, once fewer than `size` are in progress."""
        await self._slots.acquire()
        if self._error is not None:
            self._slots.release()
            raise self._error
        task = asyncio.create_task(self.executor.apply(gathered, actions))
        self._running.add(task)
        task.add_done_callback(self._done)

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

    async def close(self) -> None:
        """Cancel what is still in progress (the run is over: failed or cancelled)."""
        for task in self._running:
            task.cancel()
        if self._running:
            await asyncio.wait(set(self._running))

    def _done(self, task: asyncio.Task[Outcome]) -> None:
        self._running.discard(task)
        self._slots.release()
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._error = self._error or error
        else:
            self._finished.append(task.result())
            self._progress.done += 1
