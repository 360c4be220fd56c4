"""Retry spacing for failing users: exponential, capped, then quarantined."""

from __future__ import annotations

import pytest

from service.domain.backoff import is_quarantined, next_attempt_delay


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        pytest.param(0, 0.0, id="no failure means no wait"),
        pytest.param(1, 30.0, id="the first failure waits the base"),
        pytest.param(2, 60.0, id="the second waits twice as long"),
        pytest.param(5, 480.0, id="the fifth waits sixteen times the base"),
        pytest.param(8, 3600.0, id="later failures wait the cap"),
        pytest.param(10_000, 3600.0, id="an absurd count still waits the cap"),
    ],
)
def test_the_delay_doubles_per_failure_up_to_the_cap(attempts: int, expected: float) -> None:
    assert next_attempt_delay(attempts, base=30, cap=3600) == expected


@pytest.mark.parametrize(
    ("attempts", "quarantine_after", "expected"),
    [
        pytest.param(4, 5, False, id="fewer failures than the threshold are retried normally"),
        pytest.param(5, 5, True, id="reaching the threshold quarantines"),
        pytest.param(9, 5, True, id="past the threshold stays quarantined"),
        pytest.param(99, 0, False, id="a threshold of zero never quarantines"),
    ],
)
def test_a_user_is_quarantined_after_enough_failures(
    attempts: int, quarantine_after: int, expected: bool
) -> None:
    assert is_quarantined(attempts, quarantine_after=quarantine_after) is expected
