"""What a run learns, written as it goes: each user's outcome, in batches.

Outcomes are counted in the run's report and saved in batches (one transaction per batch of
outcomes: `sync_state` upserts, `sync_error` rows and the audit trail's entries). Only users
the run holds the lease of are written, and writing releases the lease; an unchanged user
whose state already says it all writes nothing. A dry run counts but saves no state.

Claims are exclusive in Postgres (unique indexes): if a batch would break that (a bug, or a
race the leases did not see), the batch is written user by user, and the user whose write is
refused gets an error row and its lease back, so nobody else's outcome is lost.

Opening a run prunes what is past its retention (errors, the guards' logs, the audit trail),
at most once per `PRUNE_EVERY` in a process: an event run opens every few hundred
milliseconds, and four statements a run only find rows a day old or more a minute later. A
late prune keeps rows longer, never shorter (the guards count their window in SQL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db import audit, deletions, leases, records, writes
from service.db.records import ErrorRecord
from service.domain.actions import Removal, removal_reason
from service.domain.audit import AuditEntry, AuditPolicy, invalid_entry
from service.domain.backoff import FailureBackoff
from service.domain.outcome import Failure, Outcome, Result, state_record
from service.domain.runs import RunStatus
from service.domain.users import SyncState
from service.reconcile.run import RunReport, RunRequest

log = structlog.get_logger(__name__)

PRUNE_EVERY = timedelta(minutes=1)
"""How often (at most) a process prunes at run open; retentions are a day or more."""


class Recorder:
    """Writes runs (opened, closed) and users' outcomes."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        backoff: FailureBackoff,
        clock: Callable[[], datetime],
        on_close: Callable[[RunReport], None] | None = None,
        audit: AuditPolicy | None = None,
        prune_every: timedelta = PRUNE_EVERY,
    ) -> None:
        """`audit`: the audit trail's settings (None: no trail is written); `prune_every`:
        the least time between two prunes at run open."""
        self._sessions = sessions
        self._backoff = backoff
        self._audit = audit
        self._clock = clock
        self._on_close = on_close
        self._prune_every = prune_every
        self._pruned_at: datetime | None = None
        """When this recorder last pruned (None: not yet, the first run it opens prunes)."""

    async def open_run(
        self,
        request: RunRequest,
        *,
        service_key: str,
        retention: timedelta,
        window: timedelta,
        plan_context: str | None = None,
    ) -> int:
        """Record the run `running`; close first the Service's runs whose process is gone, and
        (unless it is a dry run, which writes nothing, or this recorder pruned less than
        `prune_every` ago) forget errors past `retention`, the guards' logs past the longer of
        `retention` and their `window` (a log pruned inside its window would let more
        through), and the audit trail past its own retention."""
        opening = records.RunOpening(
            service_key=service_key,
            trigger=request.trigger,
            scope=request.scope.value,
            target=",".join(request.targets) or None,
            dry_run=request.dry_run,
            allow_deletes=request.allow_deletes,
            allow_writes=request.allow_writes,
            plan_context=plan_context,
        )
        now = self._clock()
        prune = not request.dry_run and self._prune_due(now)
        if self._audit is not None and prune:  # first: once the run is recorded, nothing waits
            before = now - self._audit.retention  # before its caller can close it if cancelled
            await audit.prune(self._sessions, before=before, service_key=service_key)
        async with self._sessions.begin() as session:
            aborted = await records.abort_stale_runs(session, service_key=service_key)
            if aborted:
                log.warning("closed runs left running by a stopped process", count=aborted)
            if prune:
                await records.prune_errors(session, before=now - retention)
                await deletions.prune(session, before=now - max(retention, window))
                await writes.prune(session, before=now - max(retention, window))
            run_id = await records.open_run(session, opening)
        if prune:
            self._pruned_at = now
        return run_id

    def _prune_due(self, now: datetime) -> bool:
        """Whether this run open prunes: the first of the recorder, then once per interval
        (a clock set back prunes at once)."""
        last = self._pruned_at
        return last is None or not last <= now < last + self._prune_every

    async def held(self, entries: Sequence[AuditEntry], report: RunReport) -> None:
        """What a guard held (deletions and suspensions, creates and updates): the audit
        trail's entries, each recorded once while it stays held."""
        if self._audit is None or not entries or report.request.dry_run:
            return
        async with self._sessions.begin() as session:
            await audit.save(session, entries, run_id=report.run_id, again=True)

    async def close_run(self, report: RunReport, *, bug: Exception | None = None) -> None:
        """Record how the run ended (`RunReport.close`d) and log its summary line, the
        run's one line about it: with its error when it failed or was aborted, and with the
        traceback of `bug`, the exception that failed it, if that was no known cause."""
        closing = records.RunClosing(
            status=report.status.value,
            counts=dict(report.counts),
            api_calls=report.api_calls,
            deletions_held=len(report.held),
            held_reason=report.held_reason,
            held_deletions=tuple(_held_row(d) for d in report.held[:1000]),
            users_written=report.users_written,
            writes_held=report.writes_held,
            write_held_reason=report.write_held_reason,
            held_writes=tuple({"user_id": u, "identity": i} for u, i in report.held_writes),
            error=report.error,
        )
        try:
            async with self._sessions.begin() as session:
                await records.close_run(session, report.run_id, closing)
        finally:
            if self._on_close is not None:
                self._on_close(report)
        ended = log.error if report.status is RunStatus.FAILED else log.info
        if report.status is RunStatus.ABORTED:
            ended = log.warning
        ended(
            "run finished",
            status=report.status.value,
            api_calls=report.api_calls,
            deletions_held=len(report.held),
            users_written=report.users_written,
            writes_held=report.writes_held,
            unplanned=report.unplanned,
            error=report.error,
            exc_info=bug or False,
            **{k: v for k, v in report.counts.items()},
        )

    async def outcomes(
        self, outcomes: Sequence[Outcome], report: RunReport, *, dry_run: bool
    ) -> None:
        now = self._clock()
        states: list[SyncState] = []
        released: list[str] = []
        errors: list[ErrorRecord] = []
        trail = _Trail()
        for outcome in outcomes:
            report.count(outcome)
            _logged(outcome)
            errors += _error_records(outcome)
            trail.add(outcome, on=self._audit is not None)
            if dry_run:
                continue
            if not outcome.leased or outcome.user_id is None:
                continue
            record = state_record(outcome, now=now, backoff=self._backoff)
            if record is None:
                released.append(outcome.user_id)
            else:
                states.append(record)
        if dry_run:  # shown, not stored
            report.would_do([], would_write=0, audit=trail.refused)
            trail = _Trail()
        if states or errors or released or trail:
            await to_the_end(
                self._save(states, errors, released, trail=trail, run_id=report.run_id)
            )

    async def _save(
        self,
        states: list[SyncState],
        errors: list[ErrorRecord],
        released: list[str],
        *,
        trail: _Trail,
        run_id: int,
    ) -> None:
        try:
            async with self._sessions.begin() as session:
                written = await records.save_states(session, states, run_id=run_id)
                await records.save_errors(session, run_id, errors)
                await trail.save(session, run_id=run_id)
                await leases.release(session, released, run_id=run_id)
        except IntegrityError:
            log.exception("a batch of outcomes broke a claim; writing it user by user")
            written = await self._save_each(states, run_id=run_id)
            async with self._sessions.begin() as session:
                await records.save_errors(session, run_id, errors)
                await trail.save(session, run_id=run_id)
                await leases.release(session, released, run_id=run_id)
        lost = {s.user_id for s in states} - written
        if lost:
            log.warning("outcomes not written: the run no longer held these users", users=len(lost))

    async def _save_each(self, states: list[SyncState], *, run_id: int) -> set[str]:
        written: set[str] = set()
        for state in states:
            try:
                async with self._sessions.begin() as session:
                    written |= await records.save_states(session, [state], run_id=run_id)
            except IntegrityError as e:
                await self._refused(state, run_id=run_id, error=e)
        return written

    async def _refused(self, state: SyncState, *, run_id: int, error: IntegrityError) -> None:
        message = (
            f"user {state.user_id}: its outcome was not recorded, it would claim a remote user"
            f" or identity another user holds ({type(error.orig).__name__}); it is planned again"
            " by the next run"
        )
        log.error("outcome refused", user_id=state.user_id)
        async with self._sessions.begin() as session:
            await records.save_errors(
                session,
                run_id,
                [
                    ErrorRecord(
                        user_id=state.user_id,
                        identity=state.identity,
                        action="record",
                        message=message,
                    )
                ],
            )
            await leases.release(session, [state.user_id], run_id=run_id)


@dataclass(slots=True)
class _Trail:
    """A batch's audit entries: the writes made, and the refusals of invalid users (recorded
    once while they stay refused)."""

    writes: list[AuditEntry] = field(default_factory=list)
    refused: list[AuditEntry] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.writes or self.refused)

    def add(self, outcome: Outcome, *, on: bool) -> None:
        if not on:
            return
        self.writes += outcome.audit
        if outcome.result is Result.INVALID:
            self.refused += [_invalid_entry(outcome, f) for f in outcome.failures]

    async def save(self, session: AsyncSession, *, run_id: int) -> None:
        await audit.save(session, self.writes, run_id=run_id)
        await audit.save(session, self.refused, run_id=run_id, again=True)


def _invalid_entry(outcome: Outcome, failure: Failure) -> AuditEntry:
    local = outcome.case.local
    return invalid_entry(
        user_id=outcome.user_id,
        identity=local.identity if local else outcome.identity,
        field_name=failure.field,
        message=failure.message,
    )


def _logged(outcome: Outcome) -> None:
    for f in outcome.failures:
        log.warning(
            "user failed",
            user_id=outcome.user_id,
            action=f.action,
            error=f.message,
            code=f.twilio_code,
        )


def _held_row(action: Removal) -> dict[str, str | None]:
    return {
        "user_id": action.user_id,
        "sid": action.sid,
        "identity": action.identity,
        "reason": removal_reason(action),
    }


def _error_records(outcome: Outcome) -> list[ErrorRecord]:
    g = outcome.case
    identity = g.local.identity if g.local else (g.state.identity if g.state else outcome.identity)
    return [
        ErrorRecord(
            user_id=outcome.user_id,
            identity=identity,
            action=f.action,
            message=f.message,
            field=f.field,
            http_status=f.http_status,
            twilio_code=f.twilio_code,
            request_id=f.request_id,
        )
        for f in outcome.failures
    ]


async def to_the_end(saving: Coroutine[Any, Any, None]) -> None:
    """Save to the end even if the run is stopped meanwhile (SIGTERM, its lock connection
    lost): the outcomes are counted in the run's report already, and their writes were made,
    so their states and audit entries must be stored too. The stop is raised once saved."""
    task = asyncio.ensure_future(saving)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise
