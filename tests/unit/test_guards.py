"""The deletion guard: whole reads, sane counts, or no deletion at all."""

from __future__ import annotations

import pytest

from service.domain.actions import DeleteReason, DeleteUser
from service.domain.guards import guard_deletions
from service.domain.policy import DeleteMode, Policy
from service.domain.users import UserId
from tests.unit.factories import user_sid

MANAGED = Policy(delete_mode=DeleteMode.MANAGED, max_deletes_per_run=5, max_deletes_percent=10)
MIRROR = Policy(delete_mode=DeleteMode.MIRROR, max_deletes_per_run=5, max_deletes_percent=10)
NEVER = Policy(delete_mode=DeleteMode.NEVER)


def deletions(count: int, reason: DeleteReason = DeleteReason.REMOVED) -> list[DeleteUser]:
    offset = 1000 if reason is DeleteReason.RENAME else 0
    return [
        DeleteUser(
            user_id=UserId(f"u{n}"), sid=user_sid(offset + n), identity=f"user{n}", reason=reason
        )
        for n in range(count)
    ]


@pytest.mark.parametrize(
    ("policy", "count", "total", "source", "remote", "allow", "allowed", "words"),
    [
        pytest.param(MANAGED, 3, 100, True, True, False, True, None,
                     id="a few deletions out of many go ahead"),
        pytest.param(MANAGED, 5, 50, True, True, False, True, None,
                     id="exactly at both limits goes ahead"),
        pytest.param(MANAGED, 6, 1000, True, True, False, False, "max_deletes_per_run",
                     id="one over the absolute limit holds them all"),
        pytest.param(MANAGED, 3, 20, True, True, False, False, "15.0% of the 20 remote users",
                     id="over the percent limit holds them all"),
        pytest.param(MANAGED, 6, 20, True, True, False, False, "per_run (5); 6 deletions are 30",
                     id="over both limits says both"),
        pytest.param(MANAGED, 1, 0, True, True, False, False, "100.0% of the 1",
                     id="deleting from an unknown total counts the deletions as the total"),
        pytest.param(MANAGED, 6, 20, True, True, True, True, None,
                     id="allow_deletes releases deletions over the limits"),
        pytest.param(MANAGED, 1, 100, False, True, False, False, "source read",
                     id="an incomplete source read deletes nothing"),
        pytest.param(MANAGED, 1, 100, False, True, True, False, "does not override",
                     id="allow_deletes never releases an incomplete source read"),
        pytest.param(MANAGED, 1, 100, True, False, False, True, None,
                     id="managed mode does not need the remote listing"),
        pytest.param(MIRROR, 1, 100, True, False, False, True, None,
                     id="mirror mode deletes users we link without the remote listing"),
        pytest.param(MIRROR, 1, 100, False, True, False, False, "source read",
                     id="mirror mode needs the complete source read too"),
        pytest.param(NEVER, 1, 100, True, True, True, False, "never",
                     id="never mode holds any deletion handed to it"),
    ],
)  # fmt: skip
def test_the_guard_allows_or_holds_a_runs_deletions_together(
    policy: Policy,
    count: int,
    total: int,
    source: bool,
    remote: bool,
    allow: bool,
    allowed: bool,
    words: str | None,
) -> None:
    proposed = deletions(count)

    verdict = guard_deletions(
        proposed,
        policy=policy,
        remote_total=total,
        source_complete=source,
        remote_complete=remote,
        allow_deletes=allow,
    )

    assert verdict.allowed == (tuple(proposed) if allowed else ())
    assert verdict.held == (() if allowed else tuple(proposed))
    if words is None:
        assert verdict.reason is None
    else:
        assert verdict.reason is not None
        assert words in verdict.reason


@pytest.mark.parametrize(
    ("source", "remote"),
    [
        pytest.param(True, True, id="with complete reads"),
        pytest.param(False, False, id="even with incomplete reads"),
    ],
)
def test_rename_retirements_are_never_guarded(source: bool, remote: bool) -> None:
    renames = deletions(50, DeleteReason.RENAME)
    removals = deletions(50)

    verdict = guard_deletions(
        removals + renames,
        policy=MIRROR,
        remote_total=60,
        source_complete=source,
        remote_complete=remote,
        allow_deletes=False,
    )

    assert verdict.allowed == tuple(renames)
    assert verdict.held == tuple(removals)


def test_nothing_to_delete_is_never_held() -> None:
    verdict = guard_deletions(
        [],
        policy=MIRROR,
        remote_total=0,
        source_complete=False,
        remote_complete=False,
        allow_deletes=False,
    )

    assert (verdict.allowed, verdict.held, verdict.reason) == ((), (), None)


def unknown_remote(count: int) -> list[DeleteUser]:
    return [
        DeleteUser(
            user_id=None,
            sid=user_sid(5000 + n),
            identity=f"x{n}",
            reason=DeleteReason.UNKNOWN_REMOTE,
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("allow", [False, True])
def test_unknown_remote_users_are_deleted_only_after_the_complete_listing(allow: bool) -> None:
    proposed = unknown_remote(1) + deletions(1)

    verdict = guard_deletions(
        proposed,
        policy=MIRROR,
        remote_total=100,
        source_complete=True,
        remote_complete=False,
        allow_deletes=allow,
    )

    assert verdict.held == tuple(proposed)
    assert verdict.reason is not None
    assert "remote user listing" in verdict.reason


@pytest.mark.parametrize(
    ("count", "earlier", "allowed", "words"),
    [
        pytest.param(1, 4, True, None, id="within the window's budget goes ahead"),
        pytest.param(1, 5, False, "1 deletions (and 5 earlier in the window) exceed",
                     id="one more than the window allows is held"),
    ],
)  # fmt: skip
def test_deletions_earlier_in_the_window_count_against_the_limits(
    count: int, earlier: int, allowed: bool, words: str | None
) -> None:
    proposed = deletions(count)

    verdict = guard_deletions(
        proposed,
        policy=MANAGED,
        remote_total=1000,
        source_complete=True,
        remote_complete=True,
        allow_deletes=False,
        deleted_recently=earlier,
    )

    assert verdict.allowed == (tuple(proposed) if allowed else ())
    assert (verdict.reason is None) == allowed
    if words is not None:
        assert verdict.reason is not None and words in verdict.reason


def test_the_percent_limit_counts_the_windows_earlier_deletions() -> None:
    verdict = guard_deletions(
        deletions(1),
        policy=MANAGED,
        remote_total=20,
        source_complete=True,
        remote_complete=True,
        allow_deletes=False,
        deleted_recently=2,
    )

    assert verdict.reason is not None
    assert "(and 2 earlier in the window) are 15.0% of the 20 remote users" in verdict.reason
