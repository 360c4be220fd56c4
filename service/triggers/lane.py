"""The bulk lane: full and incremental runs, one at a time, coalesced, never stacked.

Scheduled triggers are merged into one pending request (a full run covers an incremental one,
so full wins); however many fire while a run is going, at most one run follows it. An
on-demand run (`POST /sync`) starts only when the lane is idle, and its caller learns the run
id as soon as the runner has recorded the run. The Postgres run lock still decides in the end:
a run refused because another process holds it is counted and dropped (the next trigger
retries).
"""

from __future__ import annotations

import asyncio

import structlog

from service.domain.runs import Scope
from service.metrics import Metrics
from service.reconcile.run import RunFailed, RunInProgress, RunRequest
from service.reconcile.runner import Runner

log = structlog.get_logger(__name__)


class LaneClosed(Exception):
    """The lane takes no more work (the service is stopping or stepping down)."""


def merged(pending: RunRequest | None, new: RunRequest) -> RunRequest:
    """One request doing the work of both: the broader scope wins."""
    if pending is None or (new.scope is Scope.FULL and pending.scope is not Scope.FULL):
        return new
    return pending


class BulkLane:
    def __init__(self, runner: Runner, *, metrics: Metrics) -> None:
        self._runner = runner
        self._metrics = metrics
        self._scheduled: RunRequest | None = None
        self._on_demand: tuple[RunRequest, asyncio.Future[int]] | None = None
        self._running: RunRequest | None = None
        self._wake = asyncio.Event()
        self._accepting = True

    @property
    def running(self) -> RunRequest | None:
        return self._running

    def submit(self, request: RunRequest) -> None:
        """A scheduled trigger: run it when the lane is free, merged with any pending one."""
        if not self._accepting:
            return
        if self._scheduled is not None:
            self._metrics.coalesced.labels(request.trigger).inc()
            log.info("trigger coalesced", scope=request.scope.value, trigger=request.trigger)
        self._scheduled = merged(self._scheduled, request)
        self._wake.set()

    async def start(self, request: RunRequest) -> int:
        """Start a run now and return its id once recorded; RunInProgress if one is going."""
        if not self._accepting:
            raise LaneClosed("the service is stopping")
        if self._running is not None or self._on_demand is not None:
            raise RunInProgress("a full or incremental run is in progress")
        opened: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        opened.add_done_callback(_retrieved)
        self._on_demand = (request, opened)
        self._wake.set()
        return await asyncio.shield(opened)

    def stop_intake(self) -> None:
        """Take no more work; the run in progress (if any) goes on, `run()` then returns."""
        self._accepting = False
        self._scheduled = None
        if self._on_demand is not None:
            self._on_demand[1].set_exception(LaneClosed("the service is stopping"))
            self._on_demand = None
        self._wake.set()

    async def run(self) -> None:
        while self._accepting:
            await self._wake.wait()
            self._wake.clear()
            while (job := self._take()) is not None:
                await self._execute(*job)

    def _take(self) -> tuple[RunRequest, asyncio.Future[int] | None] | None:
        if not self._accepting:
            return None
        if self._on_demand is not None:
            job, self._on_demand = self._on_demand, None
            return job
        if self._scheduled is not None:
            request, self._scheduled = self._scheduled, None
            return request, None
        return None

    async def _execute(self, request: RunRequest, opened: asyncio.Future[int] | None) -> None:
        """Run `request`; a run once recorded is counted by the runner (`on_close`, with the
        status recorded), so only a run that never was is counted here."""
        recorded: list[int] = []

        def tell(run_id: int) -> None:
            recorded.append(run_id)
            if opened is not None and not opened.done():
                opened.set_result(run_id)

        self._running = request
        try:
            await self._runner.run(request, on_open=tell)
        except RunInProgress as e:
            self._refused(request, opened, e)
        except RunFailed as e:  # recorded (counted by status) and logged: its line says why
            _fail(opened, e)
        except Exception as e:  # not a run's failure: recording it (or its lock) failed
            log.exception("run crashed", trigger=request.trigger, scope=request.scope.value)
            if not recorded:
                self._metrics.observe_unrecorded_run(
                    trigger=request.trigger, scope=request.scope.value
                )
            _fail(opened, e)
        finally:
            self._running = None
            _fail(opened, LaneClosed("the run stopped before it was recorded"))

    def _refused(
        self, request: RunRequest, opened: asyncio.Future[int] | None, error: RunInProgress
    ) -> None:
        self._metrics.runs_refused.labels(request.trigger).inc()
        log.info("run not started: another holds the lock", trigger=request.trigger)
        _fail(opened, error)


def _fail(opened: asyncio.Future[int] | None, error: BaseException) -> None:
    if opened is not None and not opened.done():
        opened.set_exception(error)


def _retrieved(future: asyncio.Future[int]) -> None:
    """Mark the outcome seen, so a caller that went away leaves no 'never retrieved' noise."""
    if not future.cancelled():
        future.exception()
