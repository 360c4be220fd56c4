"""The write guard: an initial sync, or a sane number of users written, or none at all."""

from __future__ import annotations

import pytest

from service.domain.policy import Policy
from service.domain.writes import exceeds, guard_writes, initial_sync

LIMITS = Policy(max_writes_per_run=5, max_writes_percent=10, max_writes_percent_floor=0)


@pytest.mark.parametrize(
    ("count", "linked", "recent", "allow", "allowed", "guarded", "words"),
    [
        pytest.param(3, 100, 0, False, True, True, None,
                     id="a few writes out of many linked users go ahead, counted"),
        pytest.param(5, 50, 0, False, True, True, None,
                     id="exactly at both limits goes ahead"),
        pytest.param(6, 1000, 0, False, False, True, "6 users to write exceed max_writes_per_run",
                     id="one over the absolute limit holds them all"),
        pytest.param(3, 20, 0, False, False, True, "15.0% of the 20 users in reach",
                     id="over the percent limit holds them all"),
        pytest.param(2, 1000, 4, False, False, True, "(and 4 earlier in the window)",
                     id="the window's earlier writes count with the run's"),
        pytest.param(1, 1000, 4, False, True, True, None,
                     id="the window's last write goes ahead"),
        pytest.param(100_000, 100_000, 0, False, False, True, "active user this month",
                     id="a mass update says what it would cost"),
        pytest.param(100_000, 100_000, 0, True, True, False, None,
                     id="allow_writes releases writes over the limits, spending no budget"),
        pytest.param(100_000, 0, 0, False, True, False, None,
                     id="an initial sync is never held and spends no budget"),
        pytest.param(0, 10, 9, False, True, True, None,
                     id="a run writing nobody is never held"),
    ],
)  # fmt: skip
def test_the_guard_allows_or_holds_a_runs_writes_together(
    count: int,
    linked: int,
    recent: int,
    allow: bool,
    allowed: bool,
    guarded: bool,
    words: str | None,
) -> None:
    verdict = guard_writes(
        count, policy=LIMITS, linked=linked, allow_writes=allow, written_recently=recent
    )
    assert (verdict.allowed, verdict.guarded) == (allowed, guarded)
    if words is None:
        assert verdict.reason is None
    else:
        assert verdict.reason is not None and words in verdict.reason
        assert "allow_writes" in verdict.reason


def test_an_initial_sync_is_a_service_with_no_linked_user_yet() -> None:
    assert initial_sync(linked=0)
    assert not initial_sync(linked=1)


@pytest.mark.parametrize(
    ("count", "linked", "over"),
    [(5, 50, False), (6, 1000, True), (3, 20, True), (10**6, 0, False)],
)
def test_exceeds_holds_as_soon_as_the_run_alone_is_over_a_limit(
    count: int, linked: int, over: bool
) -> None:
    assert exceeds(count, policy=LIMITS, linked=linked) is over


def test_a_zero_limit_holds_every_write_outside_an_initial_sync() -> None:
    none = Policy(max_writes_per_run=0, max_writes_percent=100)
    assert not guard_writes(1, policy=none, linked=10, allow_writes=False).allowed
    assert guard_writes(1, policy=none, linked=0, allow_writes=False).allowed


def test_a_small_service_takes_its_everyday_edits_under_the_percent_floor() -> None:
    small = Policy(max_writes_per_run=1000, max_writes_percent=10, max_writes_percent_floor=10)
    one_edit_of_five = guard_writes(1, policy=small, linked=5, allow_writes=False)
    assert one_edit_of_five.allowed and one_edit_of_five.guarded
    ten_in_the_window = guard_writes(4, policy=small, linked=5, allow_writes=False,
                                     written_recently=6)  # fmt: skip
    assert ten_in_the_window.allowed
    eleven = guard_writes(5, policy=small, linked=5, allow_writes=False, written_recently=6)
    assert (
        not eleven.allowed and eleven.reason is not None and "max_writes_percent" in eleven.reason
    )
