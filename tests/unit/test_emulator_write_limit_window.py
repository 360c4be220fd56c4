"""The emulator's sliding one-second window, driven by a fake clock."""

from __future__ import annotations

import pytest

from service.emulator.write_limit import WriteLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_pacing_at_exactly_the_limit_is_never_refused() -> None:
    clock = FakeClock()
    limiter = WriteLimiter(30, clock=clock)
    for i in range(300):
        clock.now = 1000.0 + i / 30
        assert limiter.try_acquire("IS1"), f"write {i} refused"


def test_thirty_one_writes_in_any_one_second_window_are_refused() -> None:
    clock = FakeClock()
    limiter = WriteLimiter(30, clock=clock)
    clock.now = 1000.5
    assert limiter.try_acquire("IS1")
    for i in range(29):
        clock.now = 1001.0 + i * 0.001
        assert limiter.try_acquire("IS1")
    clock.now = 1001.49  # within one second of the first write
    assert not limiter.try_acquire("IS1")
    clock.now = 1001.5  # the first write has left the window
    assert limiter.try_acquire("IS1")


def test_refused_writes_do_not_use_up_the_window() -> None:
    clock = FakeClock()
    limiter = WriteLimiter(1, clock=clock)
    assert limiter.try_acquire("IS1")
    for _ in range(10):
        assert not limiter.try_acquire("IS1")
    clock.now += 1.0
    assert limiter.try_acquire("IS1")


def test_a_fractional_limit_spreads_its_capacity() -> None:
    clock = FakeClock()
    limiter = WriteLimiter(0.5, clock=clock)  # one write every two seconds
    assert limiter.try_acquire("IS1")
    clock.now += 1.9
    assert not limiter.try_acquire("IS1")
    clock.now += 0.1
    assert limiter.try_acquire("IS1")


def test_no_limit_admits_everything() -> None:
    limiter = WriteLimiter(None, clock=FakeClock())
    assert all(limiter.try_acquire("IS1") for _ in range(10_000))


@pytest.mark.parametrize("bad", [0, -1])
def test_a_limit_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        WriteLimiter(bad)
