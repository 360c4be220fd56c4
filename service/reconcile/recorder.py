"""What a run learns, written as it goes: intents before creates, then each user's outcome.

Outcomes are counted in the run's report and saved in batches (one transaction per batch of
outcomes: `sync_state` upserts and `sync_error` rows); a run with nothing to change writes
nothing per user. A dry run counts but saves no state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db import records
from service.db.gather import Gathered
from service.domain.plan import Action, CreateUser
from service.reconcile.outcome import Outcome, Result, RetryPolicy, error_records, state_record
from service.reconcile.run import RunReport

log = structlog.get_logger(__name__)


class Recorder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        retry: RetryPolicy,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._retry = retry
        self._clock = clock

    async def intents(self, planned: Sequence[tuple[Gathered, tuple[Action, ...]]]) -> None:
        """Before creating, remember whom we are about to create: if this process dies before
        the outcome is recorded, the next run still knows the remote user is ours."""
        intents = _intents(planned)
        if intents:
            async with self._sessions.begin() as session:
                await records.save_intents(session, intents)

    async def outcomes(
        self, outcomes: Sequence[Outcome], report: RunReport, *, dry_run: bool
    ) -> None:
        now = self._clock()
        states, errors = [], []
        for outcome in outcomes:
            _count(outcome, report)
            errors += error_records(outcome)
            record = None if dry_run else state_record(outcome, now=now, retry=self._retry)
            if record is not None:
                states.append(record)
        if states or errors:
            async with self._sessions.begin() as session:
                await records.save_states(session, states)
                await records.save_errors(session, report.run_id, errors)


def _count(outcome: Outcome, report: RunReport) -> None:
    failed = outcome.failures and outcome.result is not Result.INVALID
    report.counts[Result.FAILED if failed else outcome.result] += 1
    for f in outcome.failures:
        report.failures.append((outcome.user_id or outcome.identity or "?", f))
        log.warning(
            "user failed",
            user_id=outcome.user_id,
            action=f.action,
            error=f.message,
            code=f.twilio_code,
        )


def _intents(planned: Sequence[tuple[Gathered, tuple[Action, ...]]]) -> list[tuple[str, str]]:
    """(user id, identity) of every create about to be made."""
    return [
        (a.user_id, a.identity)
        for _, actions in planned
        for a in actions
        if isinstance(a, CreateUser)
    ]
