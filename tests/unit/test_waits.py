"""Which user of a cycle of waits lets go first."""

from __future__ import annotations

import pytest

from service.domain.waits import cycle_breakers


@pytest.mark.parametrize(
    ("waits", "breakers"),
    [
        pytest.param({}, {}, id="nobody waits"),
        pytest.param({"u2": "u1"}, {}, id="a wait on a user that waits for nobody"),
        pytest.param({"u3": "u2", "u2": "u1"}, {}, id="a chain ends"),
        pytest.param({"u1": "u2", "u2": "u1"}, {"u1": 2}, id="a swap: the lowest id lets go"),
        pytest.param({"b": "c", "c": "a", "a": "b"}, {"a": 3}, id="a rotation of three"),
        pytest.param({"x": "u1", "u1": "u2", "u2": "u1"}, {"u1": 2}, id="a tail into a cycle"),
        pytest.param(
            {"a": "b", "b": "a", "c": "d", "d": "c"}, {"a": 2, "c": 2}, id="two cycles, one each"
        ),
        pytest.param({"a": "a"}, {"a": 1}, id="a user waiting on itself"),
    ],
)
def test_each_cycle_has_exactly_one_user_that_lets_go(
    waits: dict[str, str], breakers: dict[str, int]
) -> None:
    assert cycle_breakers(waits) == breakers
