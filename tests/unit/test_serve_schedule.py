"""The schedule, stepped through hours and days with an injected clock: nothing sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain.runs import Scope
from service.reconcile.run import RunRequest
from service.triggers.scheduler import Cadence, Scheduler, first_due

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


class Stop(Exception):
    pass


class FakeTime:
    def __init__(self, start: datetime, *, until: datetime) -> None:
        self.current = start
        self.until = until

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)
        if self.current > self.until:
            raise Stop


async def fired(
    cadence: dict[Scope, Cadence], *, hours: float, last_full: datetime | None = None
) -> list[tuple[Scope, datetime]]:
    time = FakeTime(T0, until=T0 + timedelta(hours=hours))
    submitted: list[tuple[Scope, datetime]] = []

    def submit(request: RunRequest) -> None:
        assert request.trigger == "schedule"
        submitted.append((request.scope, time.now()))

    async def last_success(scope: Scope) -> datetime | None:
        return last_full if scope is Scope.FULL else None

    scheduler = Scheduler(
        submit=submit,
        cadence=cadence,
        last_success=last_success,
        clock=time.now,
        sleep=time.sleep,
    )
    with pytest.raises(Stop):
        await scheduler.run()
    return submitted


async def test_full_runs_hourly_and_incremental_every_ten_minutes_starting_at_once():
    submitted = await fired({Scope.FULL: Cadence(3600), Scope.INCREMENTAL: Cadence(600)}, hours=2)
    full = [t for s, t in submitted if s is Scope.FULL]
    incremental = [t for s, t in submitted if s is Scope.INCREMENTAL]
    assert full == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert incremental == [T0 + timedelta(minutes=10 * n) for n in range(13)]


async def test_the_first_full_run_waits_one_interval_after_the_last_success():
    submitted = await fired(
        {Scope.FULL: Cadence(3600), Scope.INCREMENTAL: Cadence(3600)},
        hours=1,
        last_full=T0 - timedelta(minutes=15),
    )
    assert [t for s, t in submitted if s is Scope.FULL] == [T0 + timedelta(minutes=45)]


async def test_a_cron_schedule_catches_up_a_missed_slot_once_then_keeps_to_its_times():
    cron = Cadence(3600, cron="0 3 * * *")
    submitted = await fired(
        {Scope.FULL: cron, Scope.INCREMENTAL: Cadence(3600)},
        hours=48,
        last_full=T0 - timedelta(days=1, hours=6),  # 2025-12-31 04:00: missed 2026-01-01 03:00
    )
    full = [t for s, t in submitted if s is Scope.FULL]
    assert full == [T0, datetime(2026, 1, 2, 3, tzinfo=UTC), datetime(2026, 1, 3, 3, tzinfo=UTC)]


@pytest.mark.parametrize(
    ("cadence", "after", "expected"),
    [
        (Cadence(90), T0, T0 + timedelta(seconds=90)),
        (Cadence(1, cron="*/15 * * * *"), T0 + timedelta(minutes=1), T0 + timedelta(minutes=15)),
        (Cadence(1, cron="0 3 * * 1"), T0, datetime(2026, 1, 5, 3, tzinfo=UTC)),
    ],
    ids=["interval", "every quarter hour", "mondays at 3"],
)
def test_cadence_steps_to_the_next_time(cadence: Cadence, after: datetime, expected: datetime):
    assert cadence.next_after(after) == expected


def test_first_due_is_now_without_a_previous_success():
    assert first_due(Cadence(60), last_success=None, now=T0) == T0
